"""Les erreurs de l'API, toujours ``{"detail": "<message en français>"}`` et jamais une trace.

* :data:`IMAGE_ERROR_STATUS` : le code HTTP de chaque problème d'image (400 vide, 413 trop grande,
  415 format refusé, 422 illisible) ;
* :func:`install_error_handlers` : les messages anglais de FastAPI et Starlette (validation, 404, 405…)
  remplacés par des messages français ;
* :func:`documented` : les réponses d'erreur d'une route pour ``/docs`` (le 401 de la clé d'API, écrit ici
  une seule fois, s'y ajoute toujours).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..inference import PredictorUnavailableError
from ..preprocessing import (
    CorruptImageError,
    DecodeBusyError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    UnsupportedImageFormatError,
)
from .schemas import ErrorOut

log = logging.getLogger("atelier.api")

#: HTTP status of each image problem (documented in /docs).
IMAGE_ERROR_STATUS: dict[type[ImageError], int] = {
    EmptyImageError: 400,
    ImageTooLargeError: 413,
    UnsupportedImageFormatError: 415,
    CorruptImageError: 422,
}

#: The 401 of every protected route, for /docs (the middleware words the real answer).
UNAUTHORIZED = "Clé d'API manquante ou invalide (quand l'API est protégée par une clé)."
#: The 403 of every management route (an inference key is not enough).
FORBIDDEN = "Clé d'inférence : cette route demande la clé de gestion (quand l'API a des rôles)."

#: Said after every refused model replacement.
OLD_MODEL_KEPT = "L'ancien modèle reste en service."


def error_response(status: int, detail: str) -> JSONResponse:
    """La réponse d'erreur de l'API : ``{"detail": detail}`` avec le code *status*."""
    return JSONResponse({"detail": detail}, status_code=status)


def image_error_status(exc: ImageError) -> int:
    return next((code for cls, code in IMAGE_ERROR_STATUS.items() if isinstance(exc, cls)), 422)


def documented(
    errors: dict[int, str], *, protected: bool = True, management: bool = False
) -> dict[int | str, dict[str, Any]]:
    """Les réponses d'erreur d'une route pour ``/docs`` ; ``protected`` ajoute le 401 de la clé d'API,
    ``management`` le 403 d'une clé d'inférence sur une route de gestion."""
    if protected:
        errors = {401: UNAUTHORIZED, **errors}
    if management:
        errors = {403: FORBIDDEN, **errors}
    return {code: {"model": ErrorOut, "description": text} for code, text in sorted(errors.items())}


_FIELD_EXPECTATIONS = {
    "limit": "un entier entre 1 et 500",
    "offset": "un entier entre 0 et 1 000 000 000",
    "reload": "true ou false",
    "feedback": "wrong, right ou none",
    "format": "json, png ou carte",
}


def _validation_message(errors: list[dict[str, Any]]) -> str:
    messages = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if not isinstance(part, int)]
        where, name = (loc[0], loc[-1]) if len(loc) >= 2 else ("body", loc[-1] if loc else "")
        kind = err.get("type", "")
        if where == "body" and name == "file":
            if kind == "missing":
                messages.append(
                    "Champ « file » manquant : envoyez l'image dans un formulaire multipart/form-data, "
                    'sous le nom de champ « file » (par exemple curl -F "file=@image.jpg" …/predict).'
                )
            else:
                messages.append("Le champ « file » doit contenir un fichier image, pas du texte.")
        elif where == "path":
            messages.append(f"Paramètre « {name} » invalide dans l'adresse : un entier positif est attendu.")
        elif where == "body" and kind == "string_too_long":
            limit = err.get("ctx", {}).get("max_length")
            messages.append(f"Champ « {name} » trop long : {limit} caractères au plus.")
        elif where == "query":
            expected = _FIELD_EXPECTATIONS.get(name, "une valeur valide")
            messages.append(f"Paramètre « {name} » invalide : {expected} est attendu.")
        elif where == "body" and kind == "json_invalid":
            messages.append("Corps JSON illisible.")
        else:
            messages.append(f"Valeur invalide ou manquante : « {name} » ({where}).")
    return " ".join(dict.fromkeys(messages)) or "Requête invalide."


_HTTP_FRENCH = {
    400: "Requête mal formée.",
    401: "Authentification requise.",
    403: "Accès refusé.",
    413: "Requête trop volumineuse.",
    415: "Type de contenu non pris en charge.",
    422: "Requête invalide.",
    429: "Trop de requêtes.",
}


def _flat_routes(routes: Iterable[Any]) -> Iterator[Any]:
    for route in routes:
        included = getattr(route, "original_router", None)  # recent FastAPI keeps included routers whole
        yield from _flat_routes(included.routes) if included is not None else (route,)


def _allowed_methods(request: Request) -> str:
    """Every method of every route of this path (the ``Allow`` header of a 405)."""
    methods: set[str] = set()
    for route in _flat_routes(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(list(exc.errors()))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        status = exc.status_code
        if status == 404 and detail == "Not Found":
            detail = f"Adresse introuvable : {request.url.path}. Les routes sont décrites dans /docs."
        elif status == 405:
            detail = f"Méthode {request.method} non autorisée pour {request.url.path} (voir /docs)."
            # Starlette lists the methods of the first route of this path only (GET /model, not PUT /model).
            return JSONResponse({"detail": detail}, status_code=405, headers={"Allow": _allowed_methods(request)})
        elif status == 400:
            # FastAPI/Starlette raise 400 only while parsing the body ("Invalid multipart data.",
            # "There was an error parsing the body"…).
            detail = "Corps de la requête illisible : formulaire multipart/form-data mal formé."
        else:
            # Our routes answer with JSONResponse directly: an HTTPException comes from Starlette or
            # FastAPI, whose messages are English; give the French one for its status instead.
            detail = _HTTP_FRENCH.get(
                status, "Erreur dans la requête." if status < 500 else "Erreur interne du serveur."
            )
        return JSONResponse({"detail": detail}, status_code=status, headers=getattr(exc, "headers", None))

    @app.exception_handler(PredictorUnavailableError)
    @app.exception_handler(DecodeBusyError)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        # No model yet (empty model repository), queue full, shutting down, or too many large images decoding
        # (POST /explain…): come back in a moment.
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        # A deeply nested JSON body (thousands of levels) that reached a recursive parser: bad input, not a bug.
        return JSONResponse(
            {"detail": "Données trop imbriquées (JSON de milliers de niveaux) : requête refusée."}, status_code=422
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - bugs only
        log.exception("Erreur interne sur %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "Erreur interne du serveur."}, status_code=500)
