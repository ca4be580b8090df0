"""Ce que les routes partagent : réglages, prédicteur, historique (:class:`ApiState`), et sa dépendance FastAPI.

Une route le reçoit par ``state: AppState`` (``Annotated[ApiState, Depends(get_state)]``) ; l'état est
rangé dans ``app.state.atelier`` par :func:`atelier.api.create_app`. Les deux routes rapides
(``/predict``, ``/health``) le lisent par :func:`state_of` sans passer par l'injection de dépendances de
FastAPI : mesuré, elle coûte environ 0,1 ms de processeur par requête, un quart d'un ``GET /health``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Request

from .. import metrics
from ..explanation import Explanation, explain_image
from ..history import History
from ..image_store import store_image
from ..inference import Predictor, PredictorUnavailableError
from ..model_follower import ModelFollower
from ..model_io import ModelFileError
from ..preprocessing import DecodeBudget, load_image
from .explanation_pool import ExplanationPool
from .settings import ApiSettings


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

    def predict_bytes(self, data: bytes, filename: str | None) -> dict[str, Any]:
        """Décodage + réseau + historique, dans un thread du pool (jamais sur la boucle d'événements).

        Renvoie le JSON de ``POST /predict`` (forme :class:`atelier.api.schemas.PredictionOut`).
        """
        start = time.perf_counter()
        settings = self.settings
        predictor = self.serving_predictor()
        image = self._decode(data, predictor.current.image_size)
        metrics.QUEUE_DEPTH.inc()
        try:
            prediction = predictor.predict_array(image)
        finally:
            metrics.QUEUE_DEPTH.dec()
        if not np.all(np.isfinite(prediction.probabilities)):
            raise NonFiniteOutputError(
                "Le modèle n'a pas pu classer cette image : ses sorties ne sont pas des nombres finis. "
                "Essayez une autre image ; signalez-le à la personne qui a entraîné le modèle."
            )
        probabilities = prediction.as_dict()
        label = prediction.label
        digest = hashlib.sha256(data).hexdigest()
        duration_ms = (time.perf_counter() - start) * 1000
        prediction_id = self.history.add(
            label=label,
            probabilities=probabilities,
            model_version=prediction.model_version,
            image_sha256=digest,
            filename=filename,
            duration_ms=duration_ms,
        )
        if settings.store_images_dir is not None:
            # After the row: the retention never sees this image without a row that refers to it.
            store_image(settings.store_images_dir, digest, data)
        return {
            "label": label,
            "probabilities": probabilities,
            "model_version": prediction.model_version,
            "prediction_id": prediction_id,
            "confidence": probabilities[label],
            "duration_ms": round(duration_ms, 3),
            **self._uncertainty(probabilities[label]),
        }

    def _decode(self, data: bytes, size: int) -> Any:
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
