"""L'application : réglages → prédicteur et historique → FastAPI, routeurs et middlewares."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from .. import gc_pause, metrics
from ..history import History
from ..inference import Predictor, ServingModel, warm_batch_sizes
from ..keys import KeyRing
from ..memory import return_large_blocks_to_os
from ..model_follower import ModelFollower
from ..preprocessing import DecodeBudget
from ..security import API_KEY_HEADER, ApiKeyMiddleware, BodySizeLimitMiddleware, FrenchCORSMiddleware
from . import openapi
from .admission import AdmissionMiddleware
from .errors import install_error_handlers
from .explanation_pool import ExplanationPool
from .fast_predict import FastPredictMiddleware
from .response_headers import MODEL_VERSION_HEADER, ResponseHeadersMiddleware
from .routes import explain, feedback, history, model, predict, repository, web
from .settings import ApiSettings
from .state import ApiState

#: Seconds between two applications of the history retention (and once at start-up).
RETENTION_INTERVAL_S = 60.0
#: The routers, one per concern, in the order of /docs.
ROUTERS = (
    web.router,
    model.router,
    repository.router,
    predict.router,
    history.router,
    explain.router,
    feedback.router,
)


def create_app(settings: ApiSettings | str | Path | None = None, /, **overrides: Any) -> FastAPI:
    """Construit l'API pour un modèle : ``create_app("cnn.keras", api_key=…)`` ou ``create_app(ApiSettings(…))``.

    Les mots-clés sont les réglages de :class:`~atelier.api.settings.ApiSettings` (liste, défauts et
    variables d'environnement : ``help(ApiSettings)``). Le modèle est chargé, vérifié, compilé et chauffé
    ici, une seule fois : une erreur de modèle (:class:`~atelier.model_io.ModelFileError`) ou de réglage
    (``ValueError``), en français, apparaît tout de suite.

    Avec un dépôt de modèles (``model_dir=…``), le processus sert la version que désigne le dépôt et le
    relit toutes les ``poll_seconds`` secondes (:mod:`atelier.model_follower`) ; un dépôt encore vide
    ne l'empêche pas de démarrer (``/health/ready`` répond 503 jusqu'à la première version valide).
    """
    return_large_blocks_to_os()  # the memory of large image decodes goes back to the system (atelier.memory)
    if isinstance(settings, ApiSettings):
        settings = settings.replace(**overrides)
    else:
        settings = ApiSettings.from_values(settings, **overrides)
    keys = KeyRing(settings.api_key, settings.admin_key, settings.keys_file)  # a bad keys file fails first
    state = _new_state(settings)
    history_store = state.history
    if settings.model_dir is not None:
        state.follower = _follow_repository(state)
    else:
        assert settings.model_path is not None  # ApiSettings requires a model file or a repository
        state.predictor = _observed(
            Predictor.from_path(
                settings.model_path,
                batching=settings.batching,
                max_batch_size=settings.max_batch_size,
                batch_wait_ms=settings.batch_wait_ms,
                max_queued=settings.max_queued,
                runtime=settings.inference_runtime,
            )
        )
        metrics.set_model_version(state.predictor.current.version)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.open_decoder()
        state.explanations.open()
        if state.follower is not None:
            state.follower.start()
        history_store.start_retention(RETENTION_INTERVAL_S)
        if settings.gc_freeze:
            gc_pause.freeze()  # no long garbage-collection pause under load (atelier.gc_pause)
        yield
        gc_pause.thaw()
        if state.follower is not None:
            state.follower.stop()
        history_store.stop_retention()
        history_store.stop_writer()  # every answered prediction is in the base before the process ends
        state.close_decoder()
        state.explanations.close()
        if state.predictor is not None:
            state.predictor.close()  # stops the batching thread (restarted on demand if the app is reused)
        metrics.mark_process_dead()

    # FastAPIOffline: /docs and /redoc load Swagger UI / ReDoc from the fastapi-offline package, not a CDN.
    app = FastAPIOffline(
        static_url=openapi.DOCS_STATIC_URL,
        title=openapi.TITLE,
        version=openapi.VERSION,
        description=openapi.description(protected=settings.protected),
        openapi_tags=openapi.TAGS,
        lifespan=lifespan,
    )
    app.state.atelier = state
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    web.mount_static(app)
    paths = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
    paths.update(getattr(route, "path", "") for router in ROUTERS for route in router.routes)
    _add_middlewares(app, settings, state, paths, keys)
    openapi.install_openapi(app, protected=settings.protected)
    return app


def _new_state(settings: ApiSettings) -> ApiState:
    """The state without its predictor yet: history (images follow its retention) and explanation pool."""
    history_store = History(
        settings.db_path,
        retention_days=settings.history_days,
        max_rows=settings.history_max_rows,
        images_dir=settings.store_images_dir,
    )
    return ApiState(
        settings=settings,
        predictor=None,
        history=history_store,
        explanations=ExplanationPool(settings.max_explanations_waiting),
        decode_budget=DecodeBudget(settings.decode_budget_pixels),
    )


def _observed(predictor: Predictor) -> Predictor:
    """The predictor, with its batch sizes counted in the metrics."""
    predictor.on_batch = metrics.BATCH_SIZE.observe
    return predictor


def _follow_repository(state: ApiState) -> ModelFollower:
    """Le suivi du dépôt de modèles ; le prédicteur est créé (et rangé dans *state*) au premier modèle valide."""
    settings = state.settings
    assert settings.model_dir is not None

    def make_predictor(serving: ServingModel) -> Predictor:
        state.predictor = _observed(
            Predictor(
                serving,
                batching=settings.batching,
                max_batch_size=settings.max_batch_size,
                batch_wait_ms=settings.batch_wait_ms,
                max_queued=settings.max_queued,
                runtime=settings.inference_runtime,
            )
        )
        return state.predictor

    follower = ModelFollower(
        settings.model_dir,
        make_predictor,
        interval=settings.poll_seconds,
        min_accuracy=settings.min_accuracy,
        warm_batch_sizes=warm_batch_sizes(settings.batching, settings.max_batch_size),
        runtime=settings.inference_runtime,
    )
    follower.load_initial()
    return follower


def create_app_from_env() -> FastAPI:
    """L'application configurée par les variables ``ATELIER_*`` (pour ``uvicorn --factory`` et ``--workers``)."""
    return create_app(ApiSettings.from_env())


def _add_middlewares(app: FastAPI, settings: ApiSettings, state: ApiState, paths: set[str], keys: KeyRing) -> None:
    # Innermost: the usual POST /predict form skips FastAPI's routing, under every other middleware.
    app.add_middleware(FastPredictMiddleware, state=state)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_upload_bytes,
        limits={("PUT", "/model"): settings.max_model_bytes},
    )
    # Inside the key check (a request without a key gets its 401, never a 503), outside everything else.
    app.add_middleware(AdmissionMiddleware, max_inflight=settings.max_inflight)
    public_prefixes = ("/static/", f"{openapi.DOCS_STATIC_URL}/")
    app.add_middleware(ApiKeyMiddleware, keys=keys, public_prefixes=public_prefixes)
    if settings.cors_origins:
        app.add_middleware(
            FrenchCORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=[API_KEY_HEADER, "Content-Type"],
            expose_headers=[MODEL_VERSION_HEADER],
            max_age=600,
        )
    # Every answer, including the 401/403, 413 and CORS ones of the middlewares above, gets the headers.
    policies = {"/": web.PAGE_CSP, **dict.fromkeys(("/docs", "/redoc"), openapi.DOCS_CSP)}
    app.add_middleware(ResponseHeadersMiddleware, current_version=lambda: state.served_version, policies=policies)
    # Outermost: every answer is counted, including the 401, 413 and CORS ones of the middlewares above.
    app.add_middleware(metrics.MetricsMiddleware, routes=paths, prefixes=["/static", openapi.DOCS_STATIC_URL])
