"""``POST /explain`` et ``GET /predictions/{id}/explanation`` : la prédiction et sa carte Grad-CAM."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ...explain import ExplainError
from ...explanation import Explanation
from ...preprocessing import ImageError
from ..access import refuse_if_not_own
from ..errors import documented, error_response, image_error_status
from ..response_headers import MODEL_VERSION_HEADER
from ..schemas import ExplanationOut, PredictionId
from ..state import ApiState, AppState
from ..stored_image import RESTART_WITH_STORE_IMAGES, missing_image, stored_image

router = APIRouter(tags=["explication"])

Format = Annotated[
    Literal["json", "png", "carte"],
    Query(
        description="`json` (défaut) : la prédiction et les cartes en base64 ; `png` : seulement l'image de la "
        "carte superposée ; `carte` : seulement la carte brute (PNG en niveaux de gris à la taille d'entrée du "
        "réseau). Pour les deux images, la version du modèle est dans l'en-tête X-Model-Version."
    ),
]
_PNG_200: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "L'explication : JSON (forme ci-dessous) ou, avec `?format=png`, la carte superposée "
        "(`?format=carte` : la carte brute).",
        "content": {"image/png": {}},
    }
}
_NOT_EXPLAINABLE = "Le modèle en service ne se prête pas à Grad-CAM (POST /predict fonctionne toujours) :"
_BUSY = "Trop d'explications en cours : réessayez dans un instant (en-tête Retry-After). /predict n'est pas concerné."


def _answer(explanation: Explanation, fmt: str, **extra: Any) -> Response:
    headers = {MODEL_VERSION_HEADER: explanation.model_version}
    if fmt in ("png", "carte"):
        image = explanation.overlay_png if fmt == "png" else explanation.map_png
        return Response(image, media_type="image/png", headers=headers)
    return JSONResponse({**explanation.as_json(), **extra}, headers=headers)


async def _explain(state: ApiState, data: bytes, fmt: str, **extra: Any) -> Response:
    try:
        explanation = await state.explanations.run(state.explain_bytes, data)
    except ImageError as exc:
        return error_response(image_error_status(exc), str(exc))
    except ExplainError as exc:  # a model Grad-CAM cannot walk through (one with branches, not a chain of layers)
        return error_response(501, f"{_NOT_EXPLAINABLE} {exc}")
    return _answer(explanation, fmt, **extra)


@router.post(
    "/explain",
    summary="Expliquer une image : prédiction et carte Grad-CAM",
    description=(
        "Comme `POST /predict` (même champ **file**, même prétraitement), plus la carte Grad-CAM : **où** le "
        "réseau a regardé pour choisir sa classe. La prédiction et la carte viennent du même modèle, dont la "
        "version est dans la réponse. Rien n'est ajouté à l'historique.\n\n"
        "Une explication coûte bien plus qu'une prédiction : elles sont calculées une à la fois, à part, et "
        "ne ralentissent pas `/predict` ; quand trop sont en attente, la réponse est 503.\n\n"
        'Exemple : `curl -F "file=@image.jpg" "http://127.0.0.1:8000/explain?format=png" -o carte.png`'
    ),
    response_model=ExplanationOut,
    responses={
        **_PNG_200,
        **documented(
            {
                400: "Fichier vide ou formulaire mal formé.",
                413: "Requête trop volumineuse, ou image aux dimensions trop grandes.",
                415: "Le contenu n'est pas une image dans un format accepté.",
                422: "Champ « file » absent, image illisible, ou paramètre « format » invalide.",
                501: _NOT_EXPLAINABLE.removesuffix(" :") + ".",
                503: _BUSY,
            }
        ),
    },
)
async def explain(
    state: AppState,
    file: Annotated[UploadFile, File(description="L'image à expliquer (JPEG, PNG, WebP, BMP ou TIFF).")],
    format: Format = "json",
) -> Response:
    return await _explain(state, await file.read(), format, prediction_id=None, recorded_model_version=None)


@router.get(
    "/predictions/{prediction_id}/explanation",
    summary="Expliquer une prédiction de l'historique",
    description=(
        "La carte Grad-CAM d'une prédiction passée, recalculée sur son image : il faut que le serveur garde "
        "les images (`python -m atelier serve --store-images DOSSIER`). Si le modèle a changé depuis, "
        "l'explication est celle du modèle en service (`model_version`) et `recorded_model_version` donne "
        "celle de la prédiction.\n\n"
        'Exemple : `curl "http://127.0.0.1:8000/predictions/42/explanation?format=png" -o carte.png`'
    ),
    response_model=ExplanationOut,
    responses={
        **_PNG_200,
        **documented(
            {
                403: "Une clé d'inférence n'explique que ses propres prédictions.",
                404: "Aucune prédiction n'a ce numéro.",
                409: "L'image de cette prédiction n'est pas gardée (serveur sans --store-images, image reçue "
                "avant, ou effacée par la rétention) : envoyez-la à POST /explain.",
                422: "Numéro de prédiction ou paramètre « format » invalide.",
                501: _NOT_EXPLAINABLE.removesuffix(" :") + ".",
                503: _BUSY,
            }
        ),
    },
)
async def prediction_explanation(
    request: Request,
    state: AppState,
    prediction_id: PredictionId,
    format: Format = "json",
) -> Response:
    row = await run_in_threadpool(state.history.get, prediction_id)
    if row is None:
        return error_response(404, f"Aucune prédiction numéro {prediction_id} dans l'historique.")
    refused = refuse_if_not_own(request, row)
    if refused is not None:
        return refused
    missing = "d'expliquer cette prédiction : envoyez l'image à POST /explain."
    path = await stored_image(
        state,
        row,
        no_store=f"d'expliquer une prédiction passée. {RESTART_WITH_STORE_IMAGES}, ou envoyez l'image à POST /explain.",
        missing=missing,
    )
    if isinstance(path, Response):
        return path
    try:
        data = await run_in_threadpool(path.read_bytes)
    except FileNotFoundError:  # erased by the retention between finding and reading it
        return missing_image(row, missing)
    return await _explain(state, data, format, prediction_id=prediction_id, recorded_model_version=row["model_version"])
