"""``POST /predictions/{id}/feedback`` : la prédiction était-elle juste, sinon quelle était la vraie classe."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ...history import FeedbackError, UnknownPredictionError
from ..access import refuse_if_not_own
from ..errors import documented, error_response
from ..schemas import FeedbackIn, FeedbackOut, PredictionId
from ..state import AppState
from ..stored_image import RESTART_WITH_STORE_IMAGES, stored_image

router = APIRouter(tags=["explication"])

_CANNOT = "de corriger ou de confirmer {}, car un retour sert à réentraîner le modèle sur son image"
_NO_STORE = (
    f"{_CANNOT.format('une prédiction')}. {RESTART_WITH_STORE_IMAGES}, puis envoyez de nouveau l'image à "
    "POST /predict et donnez votre retour sur cette nouvelle prédiction."
)
_MISSING = (
    f"{_CANNOT.format('cette prédiction')} : envoyez de nouveau l'image à POST /predict et donnez votre retour sur "
    "la nouvelle prédiction."
)


@router.post(
    "/predictions/{prediction_id}/feedback",
    summary="Corriger ou confirmer une prédiction",
    description=(
        "La vraie classe de l'image : la classe prédite si la réponse était juste (« C'est juste »), une autre "
        "sinon (« C'est faux : c'était … »). Le retour est rangé avec la prédiction, avec la date et, si l'API "
        "a des clés, le nom de la clé qui l'a envoyé ; un nouveau retour remplace le précédent. Les prédictions "
        "corrigées servent au réentraînement (`python -m atelier retrain`) : il faut donc que le serveur garde "
        "les images (`python -m atelier serve --store-images DOSSIER`, ce que dit le champ `image_stored` de "
        "`POST /predict`) ; sinon la réponse est 409.\n\n"
        "Exemple : `curl -H 'Content-Type: application/json' -d '{\"label\": \"forêt\"}' "
        "http://127.0.0.1:8000/predictions/42/feedback`"
    ),
    response_model=FeedbackOut,
    responses=documented(
        {
            403: "Une clé d'inférence ne corrige que ses propres prédictions.",
            404: "Aucune prédiction n'a ce numéro.",
            409: "L'image de cette prédiction n'est pas gardée (serveur sans --store-images, image reçue avant, ou "
            "effacée par la rétention) : le retour ne pourrait pas servir au réentraînement.",
            422: "Classe inconnue (la réponse donne les classes acceptées), commentaire trop long ou corps invalide.",
        }
    ),
)
async def feedback(
    state: AppState,
    request: Request,
    prediction_id: PredictionId,
    body: FeedbackIn,
) -> Any:
    by = getattr(request.state, "key_label", None)  # set by the API-key middleware when keys have names
    row = await run_in_threadpool(state.history.get, prediction_id)
    if row is None:
        return error_response(404, f"Aucune prédiction numéro {prediction_id} dans l'historique.")
    refused = refuse_if_not_own(request, row)
    if refused is not None:
        return refused
    image = await stored_image(state, row, no_store=_NO_STORE, missing=_MISSING)
    if isinstance(image, JSONResponse):
        return image
    try:
        return await run_in_threadpool(state.history.set_feedback, prediction_id, body.label, body.comment, by)
    except UnknownPredictionError as exc:
        return error_response(404, str(exc))
    except FeedbackError as exc:
        return error_response(422, str(exc))
