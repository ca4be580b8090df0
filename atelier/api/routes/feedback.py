"""``POST /predictions/{id}/feedback`` : la prédiction était-elle juste, sinon quelle était la vraie classe."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from ...history import FeedbackError, UnknownPredictionError
from ...image_store import find_image
from ..errors import documented, error_response
from ..schemas import FeedbackIn, FeedbackOut
from ..state import ApiState, AppState

router = APIRouter(tags=["explication"])


def _store_feedback(state: ApiState, prediction_id: int, body: FeedbackIn, by: str | None) -> dict[str, Any]:
    row = state.history.set_feedback(prediction_id, body.label, comment=body.comment, by=by)
    stored = find_image(state.settings.store_images_dir, row["image_sha256"]) is not None
    return {**row, "image_stored": stored}


@router.post(
    "/predictions/{prediction_id}/feedback",
    summary="Corriger ou confirmer une prédiction",
    description=(
        "La vraie classe de l'image : la classe prédite si la réponse était juste (« C'est juste »), une autre "
        "sinon (« C'est faux : c'était … »). Le retour est rangé avec la prédiction, avec la date et, si l'API "
        "a des clés, le nom de la clé qui l'a envoyé ; un nouveau retour remplace le précédent. Les prédictions "
        "corrigées dont l'image est gardée (`--store-images`) servent au réentraînement "
        "(`python -m atelier retrain`).\n\n"
        "Exemple : `curl -H 'Content-Type: application/json' -d '{\"label\": \"forêt\"}' "
        "http://127.0.0.1:8000/predictions/42/feedback`"
    ),
    response_model=FeedbackOut,
    responses=documented(
        {
            404: "Aucune prédiction n'a ce numéro.",
            422: "Classe inconnue (la réponse donne les classes acceptées), commentaire trop long ou corps invalide.",
        }
    ),
)
async def feedback(
    state: AppState,
    request: Request,
    prediction_id: Annotated[int, Path(ge=1, description="Le numéro de la prédiction (prediction_id).")],
    body: FeedbackIn,
) -> Any:
    by = getattr(request.state, "key_label", None)  # set by the API-key middleware when keys have names
    try:
        return await run_in_threadpool(_store_feedback, state, prediction_id, body, by)
    except UnknownPredictionError as exc:
        return error_response(404, str(exc))
    except FeedbackError as exc:
        return error_response(422, str(exc))
