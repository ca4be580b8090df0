"""Le pair de ``bench --peers`` : le modèle de l'atelier servi par LitServe (lancé dans l'environnement du pair).

``python -m atelier.bench_litserve MODELE PORT`` — réglages « LitServe optimisé » du tableau du README :
lots de 16 au plus, 1 ms d'attente pour les remplir, ``fast_queue`` (ZeroMQ entre HTTP et inférence) ;
le même :func:`~atelier.preprocessing.load_image` que l'API ; le réseau appelé par une ``tf.function`` à
signature fixe ``[None, taille, taille, 3]``, chauffée pour chaque taille de lot de 1 à 16 (comme
:class:`atelier.inference.ServingModel`). Ce module n'est importé par rien d'autre dans l'atelier.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import litserve as ls  # only in the peer's environment
import numpy as np

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

    def decode_request(self, request: Any) -> np.ndarray:
        return load_image(request["file"].file.read(), self.size)

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs).astype(np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.call(images).numpy()

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        best = int(np.argmax(output))
        return {"label": self.classes[best], "probabilities": dict(zip(self.classes, map(float, output), strict=True))}


def main(argv: list[str]) -> None:
    model, port = argv[0], int(argv[1])
    os.environ["ATELIER_BENCH_MODEL"] = model  # read by setup(), in LitServe's inference process
    api = AtelierLitAPI(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT_S)
    server = ls.LitServer(api, accelerator="cpu", fast_queue=True)
    server.run(host="127.0.0.1", port=port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
