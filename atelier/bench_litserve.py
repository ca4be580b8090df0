"""Le pair de ``bench --peers`` : le modèle de l'atelier servi par LitServe (lancé dans l'environnement du pair).

``python -m atelier.bench_litserve MODELE PORT`` — réglages « LitServe optimisé » du tableau du README :
lots de 16 au plus, 1 ms d'attente pour les remplir, ``fast_queue`` (ZeroMQ entre HTTP et inférence) ;
le même :func:`~atelier.preprocessing.load_image` que l'API ; le réseau appelé par une ``tf.function`` à
signature fixe ``[None, taille, taille, 3]``, chauffée pour chaque taille de lot de 1 à 16 (comme
:class:`atelier.inference.ServingModel`). Ce module n'est importé par rien d'autre dans l'atelier.
"""

import os
import sys
from typing import Any

import litserve as ls  # only in the peer's environment
import numpy as np
from starlette.requests import Request

from atelier.preprocessing import load_image

MAX_BATCH_SIZE = 16
BATCH_TIMEOUT_S = 0.001


class AtelierLitAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        import tensorflow as tf

        from atelier.model_io import load_model

        info = load_model(os.environ["ATELIER_BENCH_MODEL"])
        model, size = info.model, info.image_size
        self.classes = list(info.classes)
        self.size = size

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], reduce_retracing=True)
        def call(images):
            return model(images, training=False)

        for n in range(1, MAX_BATCH_SIZE + 1):
            call(np.zeros((n, size, size, 3), np.float32))
        self.call = call

    def decode_request(self, request: Request) -> np.ndarray:
        # Annotated Request: LitServe hands over the parsed form (another annotation would be read as a
        # query parameter); _bytes_of_the_form made it {"file": bytes} in the HTTP process.
        form: Any = request
        return load_image(form["file"], self.size)

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs).astype(np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.call(images).numpy()

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        best = int(np.argmax(output))
        return {"label": self.classes[best], "probabilities": dict(zip(self.classes, map(float, output), strict=True))}


def _bytes_of_the_form() -> None:
    """LitServe pickles the parsed form to its inference process, and Starlette's ``UploadFile`` does not
    pickle (« Pickling an AuthenticationString object is disallowed »): read the file in the HTTP process."""
    from litserve.server import BaseRequestHandler

    prepare = BaseRequestHandler._prepare_request

    async def prepare_with_bytes(self: Any, request: Any, request_type: Any) -> Any:
        payload = await prepare(self, request, request_type)
        upload = payload.get("file") if hasattr(payload, "get") else None
        if upload is not None and hasattr(upload, "read"):
            return {"file": await upload.read()}
        return payload

    BaseRequestHandler._prepare_request = prepare_with_bytes


# At import: LitServe's HTTP servers are spawned processes, which import this module (as __mp_main__).
_bytes_of_the_form()


def main(argv: list[str]) -> None:
    model, port = argv[0], int(argv[1])
    os.environ["ATELIER_BENCH_MODEL"] = model  # read by setup(), in LitServe's inference process
    api = AtelierLitAPI(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT_S)
    server = ls.LitServer(api, accelerator="cpu", fast_queue=True)
    server.run(host="127.0.0.1", port=port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
