"""Ce que les routes partagent : réglages, prédicteur, historique (:class:`ApiState`), et sa dépendance FastAPI.

Une route le reçoit par ``state: AppState`` (``Annotated[ApiState, Depends(get_state)]``) ; l'état est
rangé dans ``app.state.atelier`` par :func:`atelier.api.create_app`. Les deux routes rapides
(``/predict``, ``/health``) le lisent par :func:`state_of` sans passer par l'injection de dépendances de
FastAPI : mesuré, elle coûte environ 0,1 ms de processeur par requête, un quart d'un ``GET /health``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Request
from PIL import Image

from .. import metrics
from ..explanation import Explanation, explain_image
from ..history import History
from ..image_store import store_image
from ..inference import LoopTarget, Prediction, Predictor, PredictorUnavailableError, deliver, shutting_down
from ..model_follower import ModelFollower
from ..model_io import ModelFileError
from ..preprocessing import DecodeBudget, load_image, quick_to_decode, read_header
from .explanation_pool import ExplanationPool
from .settings import ApiSettings

#: Threads that decode uploaded images. As many as cores: the decoding itself is C (Pillow), and the
#: bound keeps large images from all being decoded at once.
DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))

#: JPEG uploads up to this size, sequential (not progressive) and whose header announces at most
#: :data:`BATCHER_DECODE_PIXELS` pixels are decoded by the batcher's thread, just before their batch (the
#: workshop's tiles: 64×64, ≈ 2 KB; a 256×256 JPEG decodes in ≈ 0.5 ms). Every other upload goes to the
#: decoding threads, so that a batch never waits for a long decoding (:func:`atelier.preprocessing.quick_to_decode`).
BATCHER_DECODE_BYTES = 64 * 1024
BATCHER_DECODE_PIXELS = 256 * 256
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_DECODER_LOCK = threading.Lock()


class NonFiniteOutputError(ValueError):
    """Le modèle a renvoyé des valeurs non finies pour cette image (422) : rien n'est enregistré."""


class ModelNotReadyError(PredictorUnavailableError):
    """Aucun modèle n'est encore en service dans ce processus (dépôt sans version valide) : 503."""


@dataclass
class ApiState:
    """Les réglages, le prédicteur (modèle en service), l'historique et, avec un dépôt, son suivi.

    ``predictor`` est ``None`` tant qu'un dépôt de modèles (``model_dir``) n'a aucune version valide.
    """

    settings: ApiSettings
    predictor: Predictor | None
    history: History
    follower: ModelFollower | None = None
    explanations: ExplanationPool = field(default_factory=ExplanationPool)
    #: Bounds the pixels of large images decoding at the same time (memory), see atelier.preprocessing.
    decode_budget: DecodeBudget = field(default_factory=DecodeBudget)
    _decode_pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    #: Set by :meth:`close_decoder` (the app stops), cleared by :meth:`open_decoder` (it serves again): while set,
    #: no decoding thread is created and an image still arriving gets a 503 instead.
    _closing: bool = field(default=False, repr=False)

    def serving_predictor(self) -> Predictor:
        """Le prédicteur, ou :class:`ModelNotReadyError` (503, en français) s'il n'y a pas encore de modèle."""
        predictor = self.predictor
        if predictor is None:
            raise ModelNotReadyError(
                "Aucun modèle en service pour l'instant : le dépôt de modèles n'a pas encore de version "
                "valide (publiez-en une avec « python -m atelier publish »). Réessayez dans un instant."
            )
        return predictor

    @property
    def served_version(self) -> str | None:
        """La version du modèle en service dans ce processus (``None`` s'il n'y en a pas encore)."""
        predictor = self.predictor
        return None if predictor is None else predictor.current.version

    async def predict_bytes(self, data: bytes, filename: str | None, key_label: str | None = None) -> dict[str, Any]:
        """Décodage (fil de décodage) + réseau (fil du regroupement) + historique ; le JSON de ``POST /predict``.

        La boucle d'événements n'attend aucun fil : un petit JPEG part encore encodé vers le fil du
        regroupement, qui le décode juste avant son lot (un changement de fil de moins par requête, mesuré :
        + 12 à + 23 % de débit selon la concurrence) ; toute autre image part dans un fil de décodage, qui la
        passe ensuite au regroupement. Le résultat revient sur la boucle (une fois par lot).
        Lève :class:`~atelier.preprocessing.ImageError` ou :class:`PredictorUnavailableError`.

        ``key_label`` : l'étiquette de la clé d'API de la requête, notée dans l'historique (jamais la clé).
        """
        start = time.perf_counter()
        predictor = self.serving_predictor()
        self._check_open()
        loop = asyncio.get_running_loop()
        target = LoopTarget(loop, loop.create_future())
        metrics.QUEUE_DEPTH.inc()
        try:
            if predictor.batching and len(data) <= BATCHER_DECODE_BYTES and data.startswith(_JPEG_SIGNATURE):
                predictor.submit_encoded_to_loop(functools.partial(self._decode_small, predictor, data, target), target)
            else:
                self._hand_to_decoder(predictor, data, target)
            prediction: Prediction = await target.future
        finally:
            metrics.QUEUE_DEPTH.dec()
        if not np.all(np.isfinite(prediction.probabilities)):
            raise NonFiniteOutputError(
                "Le modèle n'a pas pu classer cette image : ses sorties ne sont pas des nombres finis. "
                "Essayez une autre image ; signalez-le à la personne qui a entraîné le modèle."
            )
        return self._record(prediction, data, filename, start, key_label)

    def _check_open(self) -> None:
        if self._closing:
            raise shutting_down()

    def _decoder(self) -> ThreadPoolExecutor:
        pool = self._decode_pool
        if pool is None:
            with _DECODER_LOCK:
                self._check_open()  # never a new pool once the app stops: nobody would close it
                if self._decode_pool is None:
                    self._decode_pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="atelier-decodage")
                pool = self._decode_pool
        return pool

    def _hand_to_decoder(self, predictor: Predictor, data: bytes | Image.Image, target: LoopTarget) -> None:
        try:
            self._decoder().submit(self._decode_and_submit, predictor, data, target)
        except RuntimeError:  # the pool shut down between _decoder() and submit(): the app is stopping
            self._check_open()
            raise

    def open_decoder(self) -> None:
        """Au démarrage de l'application : les fils de décodage seront créés à la demande."""
        with _DECODER_LOCK:
            self._closing = False

    def close_decoder(self) -> None:
        """Arrête les fils de décodage après leurs images en cours ; jusqu'au prochain :meth:`open_decoder`, une
        image qui arrive encore (ou que le fil du regroupement voudrait leur confier) reçoit un 503."""
        with _DECODER_LOCK:
            self._closing = True
            pool, self._decode_pool = self._decode_pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _decode_small(self, predictor: Predictor, data: bytes, target: LoopTarget, size: int) -> np.ndarray | None:
        """In the batcher's thread: the image decoded for a batch of a model of ``size`` pixels, or ``None`` if it
        is not quick to decode (:func:`~atelier.preprocessing.quick_to_decode`): then a decoding thread takes it."""
        settings = self.settings
        image = read_header(data, size, max_pixels=settings.max_pixels, formats=settings.formats)
        # Never waits for the decoding budget here: a batch must not wait for anything but its own pixels.
        if not quick_to_decode(image, min(BATCHER_DECODE_PIXELS, self.decode_budget.small_pixels)):
            self._hand_to_decoder(predictor, image, target)
            return None
        return self._decode(image, size)

    def _decode_and_submit(self, predictor: Predictor, data: bytes | Image.Image, target: LoopTarget) -> None:
        """In a decoding thread: the image → the batcher; an image error goes back to the waiting request."""
        try:
            image = self._decode(data, predictor.current.image_size)
        except Exception as exc:
            deliver([(target, exc)])
            return
        predictor.submit_to_loop(image, target)

    def _record(
        self, prediction: Prediction, data: bytes, filename: str | None, start: float, key_label: str | None
    ) -> dict[str, Any]:
        """The history row (written behind, its id valid at once) and the JSON answer."""
        settings = self.settings
        probabilities = prediction.as_dict()
        label = prediction.label
        # The hash is the writer thread's job, unless the image is kept (its file is named by the hash).
        digest = None if settings.store_images_dir is None else hashlib.sha256(data).hexdigest()
        duration_ms = (time.perf_counter() - start) * 1000
        prediction_id = self.history.add(
            label=label,
            probabilities=probabilities,
            model_version=prediction.model_version,
            image_sha256=digest,
            image=data if digest is None else None,
            filename=filename,
            duration_ms=duration_ms,
            key_label=key_label,
        )
        if settings.store_images_dir is not None and digest is not None:
            # After the row: the retention never sees this image without a row that refers to it.
            store_image(settings.store_images_dir, digest, data)
        return {
            "label": label,
            "probabilities": probabilities,
            "model_version": prediction.model_version,
            "prediction_id": prediction_id,
            "confidence": probabilities[label],
            "duration_ms": round(duration_ms, 3),
            "image_stored": digest is not None,
            **self._uncertainty(probabilities[label]),
        }

    def _decode(self, data: bytes | Image.Image, size: int) -> Any:
        """The workshop's preprocessing (:func:`atelier.preprocessing.load_image`) with the API's limits."""
        settings = self.settings
        return load_image(
            data, size, max_pixels=settings.max_pixels, formats=settings.formats, budget=self.decode_budget
        )

    def explain_bytes(self, data: bytes) -> Explanation:
        """Prédiction + Grad-CAM d'une image, dans le fil des explications (:mod:`atelier.api.explanation_pool`).

        Un seul modèle (celui en service au début du calcul) donne la prédiction et la carte, avec le
        prétraitement de ``/predict``.
        """
        serving = self.serving_predictor().current
        return explain_image(serving, self._decode(data, serving.image_size))

    def _uncertainty(self, confidence: float) -> dict[str, Any]:
        """Optional « je ne sais pas » signal: only when a threshold is configured (chapter 6)."""
        threshold = self.settings.uncertainty_threshold
        if threshold is None:
            return {}
        if confidence >= threshold:
            return {"uncertain": False}
        return {
            "uncertain": True,
            "message": (
                f"Je ne sais pas : le modèle n'est sûr qu'à {100 * confidence:.0f} %, sous le seuil de "
                f"{100 * threshold:.0f} %. La classe la plus probable est donnée à titre indicatif."
            ),
        }

    def replace_model(self, path: Path | None) -> dict[str, Any]:
        """Charge, vérifie et chauffe le modèle de *path*, puis le met en service (JSON de ``PUT /model``).

        ``None`` : le fichier configuré au démarrage, qui n'existe pas pour un serveur sur un dépôt.
        """
        if path is None:
            raise ModelFileError("Aucun fichier de modèle configuré à recharger : ce serveur suit un dépôt de modèles.")
        old, serving = self.serving_predictor().replace(path)
        metrics.SWAPS.inc()
        metrics.set_model_version(serving.version)
        return {
            "status": "remplacé",
            "previous_version": old.version,
            "model_version": serving.version,
            "metadata": serving.public_metadata,
        }


def state_of(request: Request) -> ApiState:
    """L'état de l'application qui reçoit *request*."""
    state: ApiState = request.app.state.atelier
    return state


async def get_state(request: Request) -> ApiState:
    """La dépendance des routes (``async`` : résolue sur la boucle, sans passer par le pool de threads)."""
    return state_of(request)


AppState = Annotated[ApiState, Depends(get_state)]
