"""``GET /predictions`` (historique, le plus récent d'abord, filtré sur les retours), ``DELETE /predictions/{id}``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from ...image_store import find_image
from ...keys import API_KEY_LABEL
from ..access import own_label, refuse_if_not_own
from ..errors import documented, error_response
from ..schemas import DeletedOut, HistoryOut, PredictionId
from ..state import ApiState, AppState

router = APIRouter(tags=["prédiction"])

#: Largest offset accepted (SQLite's OFFSET is a 64-bit integer: a larger one would overflow, a 500).
MAX_OFFSET = 1_000_000_000


@router.get(
    "/predictions",
    summary="Historique des prédictions",
    description=(
        "Les prédictions enregistrées, les plus récentes d'abord, par pages (`limit`, `offset`), avec le retour "
        "de l'utilisateur s'il y en a un (`feedback_label`…). `feedback=wrong` : seulement celles jugées fausses, "
        "`right` : jugées justes, `none` : sans retour ; `total` compte les prédictions du filtre.\n\n"
        "Avec une clé d'inférence, seulement les prédictions faites avec cette clé ; avec la clé de gestion (ou "
        "sans clé configurée), tout l'historique.\n\n"
        'Exemple : `curl "http://127.0.0.1:8000/predictions?feedback=wrong"`'
    ),
    response_model=HistoryOut,
    responses=documented({422: "Paramètre invalide."}),
)
async def predictions(
    request: Request,
    state: AppState,
    limit: Annotated[int, Query(ge=1, le=500, description="Nombre de prédictions par page (1 à 500).")] = 50,
    offset: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_OFFSET,
            description="Nombre de prédictions à sauter (0 pour la plus récente ; au plus 1 000 000 000).",
        ),
    ] = 0,
    feedback: Annotated[
        Literal["wrong", "right", "none"] | None,
        Query(description="Filtrer sur le retour : `wrong` (faux), `right` (juste) ou `none` (sans retour)."),
    ] = None,
) -> dict[str, Any]:
    own = own_label(request)  # an inference key reads only its own rows; management reads them all
    total, items = await run_in_threadpool(lambda: state.history.page(limit, offset, feedback, key_label=own))
    return {"total": total, "limit": limit, "offset": offset, "items": items}  # validated by HistoryOut


def _delete(state: ApiState, prediction_id: int) -> dict[str, Any] | None:
    row = state.history.get(prediction_id)
    if row is None:
        return None
    directory = state.settings.store_images_dir
    had_image = find_image(directory, row["image_sha256"]) is not None
    if not state.history.delete(prediction_id):  # erased meanwhile by another request or the retention
        return None
    gone = had_image and find_image(directory, row["image_sha256"]) is None
    return {"status": "effacée", "prediction_id": prediction_id, "image_deleted": gone}


@router.delete(
    "/predictions/{prediction_id}",
    summary="Effacer une prédiction et son image",
    description=(
        "Droit à l'effacement : la prédiction quitte l'historique, avec son retour, et son image gardée "
        "(`--store-images`) est effacée du disque — sauf si une autre prédiction de l'historique a exactement la "
        "même image : elle est alors effacée avec la dernière. Une clé d'inférence personnelle (fichier de clés) "
        "n'efface que ses propres prédictions (403 sinon) ; la clé partagée de --api-key n'efface rien ; la clé "
        "de gestion efface n'importe laquelle.\n\n"
        "Exemple : `curl -X DELETE http://127.0.0.1:8000/predictions/42`"
    ),
    response_model=DeletedOut,
    responses=documented(
        {
            403: "Une clé d'inférence n'efface que ses propres prédictions ; la clé partagée de --api-key, aucune.",
            404: "Aucune prédiction n'a ce numéro.",
            422: "Numéro de prédiction invalide.",
        }
    ),
)
async def delete_prediction(
    request: Request,
    state: AppState,
    prediction_id: PredictionId,
) -> Any:
    if own_label(request) == API_KEY_LABEL:
        return error_response(
            403,
            "Effacement refusé : la clé de --api-key est partagée (ses prédictions sont celles de tous ceux qui "
            "l'ont). Demandez l'effacement à qui a la clé de gestion, ou utilisez une clé personnelle "
            "(python -m atelier cle).",
        )
    row = await run_in_threadpool(state.history.get, prediction_id)
    refused = refuse_if_not_own(request, row)
    if refused is not None:
        return refused
    deleted = await run_in_threadpool(_delete, state, prediction_id)
    if deleted is None:
        return error_response(404, f"Aucune prédiction numéro {prediction_id} dans l'historique.")
    return deleted
