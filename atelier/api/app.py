"""L'application : réglages → prédicteur et historique → FastAPI, routeurs et middlewares."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware

from ..history import History
from ..inference import Predictor
from ..security import API_KEY_HEADER, ApiKeyMiddleware, BodySizeLimitMiddleware
from . import openapi
from .errors import install_error_handlers
from .routes import history, model, predict, web
from .settings import ApiSettings
from .state import ApiState


def create_app(settings: ApiSettings | str | Path | None = None, /, **overrides: Any) -> FastAPI:
    """Construit l'API pour un modèle : ``create_app("cnn.keras", api_key=…)`` ou ``create_app(ApiSettings(…))``.

    Les mots-clés sont les réglages de :class:`~atelier.api.settings.ApiSettings` (liste, défauts et
    variables d'environnement : ``help(ApiSettings)``). Le modèle est chargé, vérifié, compilé et chauffé
    ici, une seule fois : une erreur de modèle (:class:`~atelier.model_io.ModelFileError`) ou de réglage
    (``ValueError``), en français, apparaît tout de suite.
    """
    if isinstance(settings, ApiSettings):
        settings = settings.replace(**overrides)
    else:
        settings = ApiSettings.from_values(settings, **overrides)
    predictor = Predictor.from_path(
        settings.model_path,
        batching=settings.batching,
        max_batch_size=settings.max_batch_size,
        batch_wait_ms=settings.batch_wait_ms,
        max_queued=settings.max_queued,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        predictor.close()  # stops the batching thread (restarted on demand if the app is reused)

    # FastAPIOffline: /docs and /redoc load Swagger UI / ReDoc from the fastapi-offline package, not a CDN.
    app = FastAPIOffline(
        static_url=openapi.DOCS_STATIC_URL,
        title=openapi.TITLE,
        version=openapi.VERSION,
        description=openapi.description(protected=bool(settings.api_key)),
        openapi_tags=openapi.TAGS,
        lifespan=lifespan,
    )
    app.state.atelier = ApiState(settings=settings, predictor=predictor, history=History(settings.db_path))
    install_error_handlers(app)
    for router in (web.router, model.router, predict.router, history.router):
        app.include_router(router)
    web.mount_static(app)
    _add_middlewares(app, settings)
    openapi.install_openapi(app, protected=bool(settings.api_key))
    return app


def create_app_from_env() -> FastAPI:
    """L'application configurée par les variables ``ATELIER_*`` (pour ``uvicorn --factory`` et ``--workers``)."""
    return create_app(ApiSettings.from_env())


def _add_middlewares(app: FastAPI, settings: ApiSettings) -> None:
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_upload_bytes,
        limits={("PUT", "/model"): settings.max_model_bytes},
    )
    public_prefixes = ("/static/", f"{openapi.DOCS_STATIC_URL}/")
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key, public_prefixes=public_prefixes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "OPTIONS"],
            allow_headers=[API_KEY_HEADER, "Content-Type"],
            max_age=600,
        )
