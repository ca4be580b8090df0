"""Le dépôt de modèles et l'état du service : ``GET /models``, l'épinglage, ``/health/ready``, ``/metrics``.

``PUT /model {"version": N}`` (dans :mod:`.model`) appelle :func:`pin_version` ; ``DELETE /model/pin``
revient à la plus récente version valide. L'épinglage est écrit dans le dossier du dépôt : tous les
processus et toutes les répliques qui le lisent suivent (au plus ``poll_seconds`` plus tard ; celui qui
reçoit la requête, tout de suite).
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ... import metrics
from ...model_follower import ModelFollower
from ...model_repository import RepositoryError, UnknownVersionError
from ..errors import documented, error_response
from ..schemas import ModelsOut, ReadyOut
from ..state import ApiState, AppState

router = APIRouter()

NO_REPOSITORY = (
    "Ce serveur sert un seul fichier de modèle (--model) : il n'a pas de dépôt de versions. Lancez-le avec "
    "--model-dir DOSSIER pour choisir ou épingler une version."
)


def _single_file_status(state: ApiState) -> dict[str, Any]:
    """Un serveur lancé sur un fichier : un « dépôt » d'une seule version, celle en service."""
    predictor = state.predictor
    metadata = predictor.current.public_metadata if predictor is not None else {}
    return {
        "model_dir": None,
        "served_version": state.served_version,
        "pid": os.getpid(),
        "pin": None,
        "policy": "un seul fichier",
        "poll_seconds": None,
        "min_accuracy": None,
        "last_error": None,
        "versions": [
            {
                "version": metadata.get("version"),
                "pinned": False,
                "source_version": metadata.get("declared_version"),
                "published": metadata.get("created"),
                "classes": metadata.get("classes"),
                "image_size": metadata.get("image_size"),
                "accuracy": None,
                "metrics": metadata.get("metrics") or {},
                "status": "valide",
                "error": None,
            }
        ],
    }


@router.get(
    "/models",
    tags=["modèle"],
    summary="Les versions du dépôt de modèles",
    description="Chaque version du dépôt (état `valide`, `invalide` avec son erreur, ou `non vérifiée`, "
    "métriques), la version servie **par ce processus**, l'épinglage et la dernière erreur de chargement.",
    response_model=ModelsOut,
    responses=documented({}),
)
async def models(state: AppState) -> JSONResponse:
    if state.follower is None:
        return JSONResponse(_single_file_status(state))
    status = await run_in_threadpool(state.follower.status)
    return JSONResponse(status)


def _unwritable(follower: ModelFollower, exc: OSError) -> JSONResponse:
    """The repository folder is read-only for this server (a volume mounted without write access)."""
    return error_response(
        500,
        f"Impossible d'écrire l'épinglage dans {follower.repository.root} ({exc.strerror or exc}) : "
        "donnez au serveur le droit d'écrire dans le dépôt, ou écrivez le numéro de version dans le fichier "
        "pin du dépôt.",
    )


async def pin_version(state: ApiState, version: Any) -> JSONResponse:
    """``PUT /model {"version": N}`` : vérifier la version, l'épingler, la servir tout de suite ici."""
    if state.follower is None:
        return error_response(409, NO_REPOSITORY)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return error_response(
            400, 'Corps JSON inattendu : « version » doit être un entier positif, par exemple {"version": 2}.'
        )
    previous = state.served_version
    try:
        await run_in_threadpool(state.follower.pin, version)
    except RepositoryError as exc:
        status = 404 if isinstance(exc, UnknownVersionError) else 409
        return error_response(status, f"{exc} La version en service ne change pas.")
    except OSError as exc:
        return _unwritable(state.follower, exc)
    return JSONResponse(
        {
            "status": "épinglée",
            "pin": version,
            "previous_version": previous,
            "model_version": state.served_version,
        }
    )


@router.delete(
    "/model/pin",
    tags=["modèle"],
    summary="Retirer l'épinglage",
    description="Revient à la plus récente version valide du dépôt, pour tous les processus qui le lisent.",
    responses=documented({409: "Pas de dépôt de modèles (serveur lancé avec --model)."}),
)
async def unpin(state: AppState) -> JSONResponse:
    if state.follower is None:
        return error_response(409, NO_REPOSITORY)
    previous = state.served_version
    try:
        removed = await run_in_threadpool(state.follower.unpin)
    except OSError as exc:
        return _unwritable(state.follower, exc)
    return JSONResponse(
        {
            "status": "désépinglée" if removed else "aucun épinglage",
            "pin": None,
            "previous_version": previous,
            "model_version": state.served_version,
        }
    )


@router.get(
    "/health/ready",
    tags=["service"],
    summary="Le service est-il prêt ?",
    description="200 quand un modèle est chargé, vérifié et chauffé dans ce processus ; 503 sinon (par "
    "exemple un dépôt de modèles encore vide). Pour un équilibreur de charge ; sans clé d'API.",
    response_model=ReadyOut,
    responses=documented({503: "Pas encore de modèle en service."}, protected=False),
)
async def ready(state: AppState) -> JSONResponse:
    version = state.served_version
    if version is None:
        return JSONResponse(
            {"ready": False, "model_version": None, "detail": "Aucun modèle en service pour l'instant."},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    return JSONResponse({"ready": True, "model_version": version, "detail": None})


@router.get(
    "/metrics",
    tags=["service"],
    summary="Métriques Prometheus",
    description="Requêtes par route et code, durées, tailles de lot, file d'attente, version servie, "
    "remplacements et refus de modèles, au format texte de Prometheus (voir `atelier.metrics`).",
    response_class=Response,
    responses=documented({}),
)
async def metrics_text() -> Response:
    body, content_type = await run_in_threadpool(metrics.render)
    return Response(body, media_type=content_type)
