"""``POST /predict`` : classer une image satellite."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import JSONResponse

from ...inference import PredictorUnavailableError
from ...preprocessing import DecodeBusyError, ImageError
from ..errors import documented, error_response, image_error_status
from ..schemas import PredictionOut
from ..state import ApiState, NonFiniteOutputError, state_of
from ..version_header import ModelVersionHeaderMiddleware

router = APIRouter(tags=["prédiction"])


@router.post(
    "/predict",
    summary="Classer une image satellite",
    description=(
        "Envoyez l'image dans un formulaire `multipart/form-data`, champ **file**. Le format est "
        "reconnu d'après le contenu du fichier (JPEG, PNG, WebP, BMP, TIFF), jamais d'après son nom. "
        "L'image est recadrée au centre et redimensionnée comme pendant l'entraînement.\n\n"
        'Exemple : `curl -F "file=@image.jpg" http://127.0.0.1:8000/predict`'
    ),
    response_model=PredictionOut,
    responses=documented(
        {
            400: "Fichier vide ou formulaire mal formé.",
            413: "Requête trop volumineuse, ou image aux dimensions trop grandes.",
            415: "Le contenu n'est pas une image dans un format accepté.",
            422: "Champ « file » absent ou pas un fichier, image illisible (tronquée), ou sorties du modèle "
            "non finies pour cette image.",
            503: "Service surchargé ou en cours d'arrêt : réessayez dans un instant.",
        }
    ),
)
async def predict(
    request: Request,
    file: Annotated[UploadFile, File(description="L'image à classer (JPEG, PNG, WebP, BMP ou TIFF).")],
) -> JSONResponse:
    # The usual form never gets here (atelier.api.fast_predict answers it); other shapes are parsed here.
    return await answer(state_of(request), await file.read(), file.filename)


async def answer(state: ApiState, data: bytes, filename: str | None) -> JSONResponse:
    """The answer of ``POST /predict`` for an uploaded file (the route and its short path share it)."""
    try:
        result = await state.predict_bytes(data, filename)
    except ImageError as exc:
        return error_response(image_error_status(exc), str(exc))
    except NonFiniteOutputError as exc:
        return error_response(422, str(exc))
    except (PredictorUnavailableError, DecodeBusyError) as exc:
        response = error_response(503, str(exc))
        response.headers["Retry-After"] = "1"
        return response
    # Built by hand (faster than Pydantic on the hot path); its shape is PredictionOut (contract tests).
    # The version that really answered (a swap may happen between the computation and this response).
    return JSONResponse(result, headers={ModelVersionHeaderMiddleware.HEADER: result["model_version"]})
