"""L'API web de l'atelier : FastAPI autour du modèle entraîné.

Construire l'application ::

    from atelier.api import create_app
    app = create_app("cnn.keras")                      # dans un notebook ou un test
    # uvicorn --factory atelier.api:create_app_from_env   (réglages lus dans l'environnement)

Routes (documentées en français dans ``/docs``) :

* ``POST /predict`` : une image (champ multipart ``file``) → classe, probabilités, version du modèle,
  numéro de la prédiction dans l'historique ;
* ``GET /health`` : l'API répond et un modèle est chargé ;
* ``GET /model`` / ``PUT /model`` : métadonnées du modèle en service / remplacement à chaud ;
* ``GET /predictions?limit=&offset=`` : l'historique, le plus récent d'abord ;
* ``GET /`` : la page web (``atelier/web/index.html``) ou, tant qu'elle n'existe pas, une page
  d'attente ; les fichiers de ``atelier/web/`` sont servis sous ``/static/``.

Codes d'erreur de ``POST /predict`` (toujours ``{"detail": "<message en français>"}``) : 400 fichier
vide ; 401 clé d'API absente ou fausse ; 413 requête trop volumineuse ou image aux dimensions trop
grandes ; 415 contenu qui n'est pas une image d'un format accepté (le contenu est examiné, pas le nom) ;
422 champ ``file`` absent ou pas un fichier, ou image reconnue mais illisible (tronquée, abîmée).

Réglages par variables d'environnement (:func:`create_app_from_env`) : ``ATELIER_MODEL``,
``ATELIER_API_KEY``, ``ATELIER_DB``, ``ATELIER_MAX_UPLOAD_MB``, ``ATELIER_MAX_PIXELS``,
``ATELIER_STORE_IMAGES``, ``ATELIER_CORS_ORIGINS`` (origines séparées par des virgules),
``ATELIER_BATCHING`` (``0`` pour un appel du réseau par requête au lieu du regroupement), ``ATELIER_MAX_BATCH``,
``ATELIER_BATCH_WAIT_MS``, ``ATELIER_MAX_MODEL_MB``, ``ATELIER_MODEL_UPLOAD_DIR``,
``ATELIER_UNCERTAINTY_THRESHOLD`` (seuil de confiance du « je ne sais pas », entre 0 et 1).

L'historique va dans ``db_path`` ; par défaut ``<cache de l'atelier>/historique.sqlite3`` (voir
:func:`atelier.paths.cache_dir`, modifiable par ``ATELIER_CACHE``). ``":memory:"`` garde l'historique
en mémoire (tests).

Avec plusieurs processus (``--workers N``), chaque processus a son propre modèle en mémoire :
``PUT /model`` ne remplace que celui du processus qui reçoit la requête. Pour mettre à jour tous les
processus, remplacez le fichier configuré puis redémarrez le service (ou envoyez ``PUT /model`` avec
``{"reload": true}`` autant de fois qu'il y a de processus).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.middleware.cors import CORSMiddleware

from .history import History, default_db_path, sanitize_filename
from .inference import IncompatibleModelError, Predictor
from .model_io import METADATA_FORMAT, ModelFileError, file_sha256, metadata_path, validate_metadata
from .preprocessing import (
    ALLOWED_FORMATS,
    MAX_PIXELS,
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    UnsupportedImageFormatError,
    load_image,
)
from .security import API_KEY_HEADER, ApiKeyMiddleware, BodySizeLimitMiddleware

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
#: Where the Swagger UI / ReDoc files of /docs and /redoc are served from (no CDN).
DOCS_STATIC_URL = "/docs-static"
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_MODEL_BYTES = 200 * 1024 * 1024

#: HTTP status of each image problem (documented in /docs and in the module docstring).
IMAGE_ERROR_STATUS: dict[type[ImageError], int] = {
    EmptyImageError: 400,
    ImageTooLargeError: 413,
    UnsupportedImageFormatError: 415,
    CorruptImageError: 422,
}


# --------------------------------------------------------------------------------------------------
# Schemas (for /docs; the routes build their JSON directly, which is faster)
# --------------------------------------------------------------------------------------------------
class PredictionOut(BaseModel):
    label: str = Field(description="Classe prédite (celle de plus forte probabilité).", examples=["forêt"])
    probabilities: dict[str, float] = Field(
        description="Probabilité de chaque classe, dans l'ordre des métadonnées ; leur somme vaut 1.",
        examples=[{"forêt": 0.91, "mer": 0.04, "désert": 0.02, "nuageux": 0.03}],
    )
    model_version: str = Field(description="Version du modèle qui a répondu.", examples=["cnn-3f2a9c1d"])
    prediction_id: int = Field(description="Numéro de la prédiction dans l'historique.", examples=[42])
    confidence: float = Field(description="Probabilité de la classe prédite.", examples=[0.91])
    duration_ms: float = Field(
        description="Durée du traitement côté serveur (décodage + réseau), en ms.", examples=[3.2]
    )
    uncertain: bool | None = Field(
        default=None,
        description="Seulement si l'API a un seuil de confiance (`uncertainty_threshold`) : vrai quand la "
        "confiance est sous ce seuil — le modèle « ne sait pas ».",
        examples=[False],
    )
    message: str | None = Field(
        default=None, description="Explication en français quand `uncertain` est vrai.", examples=[None]
    )


class HealthOut(BaseModel):
    status: str = Field(examples=["ok"])
    model_version: str = Field(examples=["cnn-3f2a9c1d"])


class ErrorOut(BaseModel):
    detail: str = Field(
        description="Explication en français.", examples=["Le fichier est vide : il ne contient aucune image."]
    )


class HistoryItem(BaseModel):
    id: int
    created: str = Field(description="Date UTC, ISO 8601.", examples=["2025-01-31T14:02:11.532+00:00"])
    label: str
    probabilities: dict[str, float]
    model_version: str
    image_sha256: str = Field(description="Empreinte SHA-256 de l'image reçue.")
    filename: str | None = Field(
        description="Nom de fichier envoyé par le client, nettoyé (jamais utilisé comme chemin)."
    )
    duration_ms: float


class HistoryOut(BaseModel):
    total: int = Field(description="Nombre total de prédictions enregistrées.")
    limit: int
    offset: int
    items: list[HistoryItem] = Field(description="Les prédictions, les plus récentes d'abord.")


class ModelSwapOut(BaseModel):
    status: str = Field(examples=["remplacé"])
    previous_version: str = Field(examples=["cnn-3f2a9c1d"])
    model_version: str = Field(examples=["cnn-7be01c44"])
    metadata: dict[str, Any]


def _error(status: int, text: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": text}


# --------------------------------------------------------------------------------------------------
# Settings and state
# --------------------------------------------------------------------------------------------------
@dataclass
class ApiSettings:
    model_path: Path
    api_key: str | None = None
    db_path: str | Path | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = MAX_PIXELS
    formats: tuple[str, ...] = ALLOWED_FORMATS
    store_images_dir: Path | None = None
    cors_origins: tuple[str, ...] = ()
    batching: bool = True
    max_batch_size: int = 16
    batch_wait_ms: float = 0.0
    max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES
    model_upload_dir: Path | None = None
    uncertainty_threshold: float | None = None


@dataclass
class ApiState:
    """Ce que les routes partagent : réglages, prédicteur, historique."""

    settings: ApiSettings
    predictor: Predictor
    history: History
    swap_lock: threading.Lock = field(default_factory=threading.Lock)

    def predict_bytes(self, data: bytes, filename: str | None) -> dict[str, Any]:
        """Décodage + réseau + historique, dans un thread du pool (jamais sur la boucle d'événements)."""
        start = time.perf_counter()
        size = self.predictor.current.image_size
        image = load_image(data, size, max_pixels=self.settings.max_pixels, formats=self.settings.formats)
        prediction = self.predictor.predict_array(image)
        probabilities = prediction.as_dict()
        label = prediction.label
        digest = hashlib.sha256(data).hexdigest()
        if self.settings.store_images_dir is not None:
            _store_image(self.settings.store_images_dir, digest, data)
        duration_ms = (time.perf_counter() - start) * 1000
        prediction_id = self.history.add(
            label=label,
            probabilities=probabilities,
            model_version=prediction.model_version,
            image_sha256=digest,
            filename=filename,
            duration_ms=duration_ms,
        )
        return {
            "label": label,
            "probabilities": probabilities,
            "model_version": prediction.model_version,
            "prediction_id": prediction_id,
            "confidence": probabilities[label],
            "duration_ms": round(duration_ms, 3),
            **self._uncertainty(probabilities[label]),
        }

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

    def replace_model(self, path: Path) -> dict[str, Any]:
        """Charge, vérifie et chauffe le modèle de *path*, puis le met en service (sérialisé)."""
        with self.swap_lock:
            serving = self.predictor.load_compatible(path)
            old = self.predictor.swap(serving)
        return {
            "status": "remplacé",
            "previous_version": old.version,
            "model_version": serving.version,
            "metadata": serving.metadata,
        }


_IMAGE_SUFFIXES = (
    (b"\xff\xd8", ".jpg"),
    (b"\x89PNG", ".png"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


def _store_image(directory: Path, digest: str, data: bytes) -> None:
    suffix = (
        ".webp"
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP"
        else next((ext for magic, ext in _IMAGE_SUFFIXES if data.startswith(magic)), ".img")
    )
    target = directory / f"{digest}{suffix}"  # named by content: the client's name is never a path
    if target.exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".recu-", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, target)


# --------------------------------------------------------------------------------------------------
# French errors
# --------------------------------------------------------------------------------------------------
_FIELD_EXPECTATIONS = {
    "limit": "un entier entre 1 et 500",
    "offset": "un entier positif ou nul",
    "reload": "true ou false",
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


def _install_error_handlers(app: FastAPI) -> None:
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

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - bugs only
        log.exception("Erreur interne sur %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "Erreur interne du serveur."}, status_code=500)


# --------------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------------
def create_app(
    model_path: str | Path,
    *,
    api_key: str | None = None,
    db_path: str | Path | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
    store_images_dir: str | Path | None = None,
    cors_origins: tuple[str, ...] | list[str] = (),
    batching: bool = True,
    max_batch_size: int = 16,
    batch_wait_ms: float = 0.0,
    max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES,
    model_upload_dir: str | Path | None = None,
    uncertainty_threshold: float | None = None,
) -> FastAPI:
    """Construit l'API pour le modèle ``model_path`` (un ``.keras`` avec son ``.json`` à côté).

    Le modèle est chargé, vérifié, compilé et chauffé ici, une seule fois : une erreur de modèle
    (:class:`~atelier.model_io.ModelFileError`, message en français) apparaît tout de suite.

    * ``api_key`` : si donnée, l'en-tête ``X-API-Key`` est exigé partout sauf ``/``, ``/health``,
      ``/docs``, ``/openapi.json`` et ``/static/`` ;
    * ``db_path`` : fichier SQLite de l'historique (défaut : ``<cache>/historique.sqlite3``,
      ``":memory:"`` pour un historique en mémoire) ;
    * ``max_upload_bytes`` : taille maximale d'une requête (10 Mio par défaut) ; ``max_pixels`` :
      nombre maximal de pixels d'une image (contre les bombes de décompression) ;
    * ``store_images_dir`` : si donné, les images reçues y sont copiées sous le nom ``<sha256>.<ext>`` ;
    * ``cors_origins`` : origines autorisées pour une application JavaScript d'un autre site
      (``("*",)`` pour toutes) ;
    * ``batching``, ``max_batch_size``, ``batch_wait_ms`` : regroupement des requêtes concurrentes
      (activé par défaut, sans attente : les images arrivées pendant le calcul du lot précédent forment
      le lot suivant ; mesuré ici, cela économise environ un tiers du temps de calcul par requête dès
      8 requêtes simultanées, à latence égale pour une requête seule). ``batching=False`` : un appel
      compilé par requête, directement dans le thread de la requête ;
    * ``max_model_bytes`` : taille maximale d'un modèle envoyé par ``PUT /model`` ;
      ``model_upload_dir`` : dossier temporaire où ces modèles sont écrits (défaut : dossier
      temporaire du système) ;
    * ``uncertainty_threshold`` : si donné (entre 0 et 1), chaque réponse de ``/predict`` dit aussi si
      le modèle est sous ce seuil de confiance (``"uncertain": true`` et un ``"message"`` « Je ne sais
      pas… » en français) ; ``label`` reste la classe la plus probable. Choisissez le seuil sur des
      images de validation (chapitre 6, ``atelier.explain.choose_threshold``).
    """
    if uncertainty_threshold is not None and not 0 < uncertainty_threshold < 1:
        raise ValueError(f"uncertainty_threshold doit être entre 0 et 1 (reçu : {uncertainty_threshold!r}).")
    for name, value in (
        ("max_upload_bytes", max_upload_bytes),
        ("max_pixels", max_pixels),
        ("max_model_bytes", max_model_bytes),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} doit être un entier positif (reçu : {value!r}).")
    if api_key and not (api_key.isascii() and api_key.isprintable() and api_key.strip() == api_key):
        raise ValueError(
            "La clé d'API doit être faite de caractères ASCII imprimables, sans espace au début ni à la fin "
            "(elle voyage dans un en-tête HTTP)."
        )
    settings = ApiSettings(
        model_path=Path(model_path),
        api_key=api_key or None,
        db_path=db_path,
        max_upload_bytes=max_upload_bytes,
        max_pixels=max_pixels,
        store_images_dir=Path(store_images_dir) if store_images_dir else None,
        cors_origins=tuple(cors_origins),
        batching=bool(batching),
        max_batch_size=int(max_batch_size),
        batch_wait_ms=float(batch_wait_ms),
        max_model_bytes=max_model_bytes,
        model_upload_dir=Path(model_upload_dir) if model_upload_dir else None,
        uncertainty_threshold=uncertainty_threshold,
    )
    predictor = Predictor.from_path(
        settings.model_path,
        batching=settings.batching,
        max_batch_size=settings.max_batch_size,
        batch_wait_ms=settings.batch_wait_ms,
    )
    history = History(db_path)
    state = ApiState(settings=settings, predictor=predictor, history=history)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        predictor.close()  # stops the batching thread (restarted on demand if the app is reused)

    # FastAPIOffline: FastAPI whose /docs and /redoc pages load Swagger UI / ReDoc from files shipped in the
    # fastapi-offline package instead of a CDN, so the interactive documentation works in an offline room.
    app = FastAPIOffline(
        static_url=DOCS_STATIC_URL,
        title="Atelier CNN — API de classification d'images satellites",
        version="1.0",
        description=(
            "Envoyez une image satellite (JPEG, PNG, WebP, BMP ou TIFF) à **POST /predict** : l'API "
            "renvoie la classe prédite (forêt, mer, désert, nuageux), la probabilité de chaque classe et "
            'la version du modèle.\n\nToutes les erreurs sont au format `{"detail": "message en français"}`.'
            + (
                f"\n\n🔑 Cette API est protégée : envoyez l'en-tête `{API_KEY_HEADER}` (bouton **Authorize**)."
                if settings.api_key
                else ""
            )
        ),
        lifespan=lifespan,
        openapi_tags=[
            {"name": "prédiction", "description": "Classer une image et consulter l'historique."},
            {"name": "modèle", "description": "Le modèle en service et son remplacement à chaud."},
            {"name": "service", "description": "État du service."},
        ],
    )
    app.state.atelier = state
    _install_error_handlers(app)

    # ---------------------------------------------------------------------------------------- routes
    @app.get("/", include_in_schema=False)
    async def home():
        index = WEB_DIR / "index.html"
        if index.is_file():
            return FileResponse(index, media_type="text/html; charset=utf-8")
        return HTMLResponse((WEB_DIR / "placeholder.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=WEB_DIR, check_dir=False), name="static")

    @app.get(
        "/health",
        tags=["service"],
        summary="L'API répond-elle ?",
        description="Renvoie `ok` et la version du modèle en service. Ne demande jamais de clé d'API.",
        response_model=HealthOut,
    )
    async def health():
        return JSONResponse({"status": "ok", "model_version": predictor.current.version})

    @app.post(
        "/predict",
        tags=["prédiction"],
        summary="Classer une image satellite",
        description=(
            "Envoyez l'image dans un formulaire `multipart/form-data`, champ **file**. Le format est "
            "reconnu d'après le contenu du fichier (JPEG, PNG, WebP, BMP, TIFF), jamais d'après son nom. "
            "L'image est recadrée au centre et redimensionnée comme pendant l'entraînement.\n\n"
            'Exemple : `curl -F "file=@image.jpg" http://127.0.0.1:8000/predict`'
        ),
        response_model=PredictionOut,
        responses={
            400: _error(400, "Fichier vide ou formulaire mal formé."),
            401: _error(401, "Clé d'API manquante ou invalide (si l'API est protégée)."),
            413: _error(413, "Requête trop volumineuse, ou image aux dimensions trop grandes."),
            415: _error(415, "Le contenu n'est pas une image dans un format accepté."),
            422: _error(422, "Champ « file » absent ou pas un fichier, ou image illisible (tronquée)."),
        },
    )
    async def predict(
        file: UploadFile = File(..., description="L'image à classer (JPEG, PNG, WebP, BMP ou TIFF)."),
    ):
        data = await file.read()
        try:
            result = await run_in_threadpool(state.predict_bytes, data, file.filename)
        except ImageError as exc:
            status = next((code for cls, code in IMAGE_ERROR_STATUS.items() if isinstance(exc, cls)), 422)
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return JSONResponse(result)

    @app.get(
        "/predictions",
        tags=["prédiction"],
        summary="Historique des prédictions",
        description="Les prédictions enregistrées, les plus récentes d'abord, par pages (`limit`, `offset`).",
        response_model=HistoryOut,
        responses={401: _error(401, "Clé d'API manquante ou invalide."), 422: _error(422, "Paramètre invalide.")},
    )
    async def predictions(
        limit: int = Query(50, ge=1, le=500, description="Nombre de prédictions par page (1 à 500)."),
        offset: int = Query(0, ge=0, description="Nombre de prédictions à sauter (0 pour la plus récente)."),
    ):
        total, items = await run_in_threadpool(history.page, limit, offset)
        return JSONResponse({"total": total, "limit": limit, "offset": offset, "items": items})

    @app.get(
        "/model",
        tags=["modèle"],
        summary="Le modèle en service",
        description="Les métadonnées du modèle qui répond : version, classes (dans l'ordre des sorties), "
        "taille des images, date de création, métriques…",
        responses={
            200: {
                "content": {
                    "application/json": {
                        "example": {
                            "format": METADATA_FORMAT,
                            "version": "cnn-3f2a9c1d",
                            "classes": ["forêt", "mer", "désert", "nuageux"],
                            "image_size": 64,
                            "created": "2025-01-31T14:00:00+00:00",
                            "metrics": {"accuracy": 0.97},
                        }
                    }
                }
            },
            401: _error(401, "Clé d'API manquante ou invalide."),
        },
    )
    async def get_model():
        return JSONResponse(predictor.current.metadata)

    @app.put(
        "/model",
        tags=["modèle"],
        summary="Remplacer le modèle à chaud",
        description=(
            "Deux façons :\n\n"
            "* **envoyer un nouveau modèle** : formulaire `multipart/form-data` avec le champ **model** "
            "(le fichier `.keras`) et le champ **metadata** (son fichier `.json`, ou le même JSON en texte) ;\n"
            "* **recharger le fichier configuré** au démarrage : `?reload=true`, ou un corps JSON "
            '`{"reload": true}`.\n\n'
            "Le nouveau modèle est chargé (en mode sûr), vérifié (mêmes classes dans le même ordre, même "
            "taille d'image, sorties qui sont des probabilités) et chauffé **avant** le remplacement : les "
            "requêtes en cours finissent sur l'ancien modèle, les suivantes utilisent le nouveau. En cas "
            "de problème, l'ancien modèle reste en service. Protégé par la clé d'API si elle est configurée."
        ),
        response_model=ModelSwapOut,
        responses={
            400: _error(400, "Formulaire ou JSON mal formé, champ manquant."),
            401: _error(401, "Clé d'API manquante ou invalide."),
            409: _error(409, "Modèle incompatible avec celui en service (classes ou taille d'image)."),
            413: _error(413, "Fichier du modèle trop volumineux."),
            415: _error(415, "Type de contenu non pris en charge."),
            422: _error(422, "Fichier illisible : pas un modèle Keras, métadonnées invalides ou incohérentes."),
        },
        openapi_extra={
            "requestBody": {
                "required": False,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["model", "metadata"],
                            "properties": {
                                "model": {"type": "string", "format": "binary", "description": "Le fichier .keras."},
                                "metadata": {
                                    "type": "string",
                                    "format": "binary",
                                    "description": "Le fichier .json des métadonnées (ou son texte).",
                                },
                            },
                        }
                    },
                    "application/json": {
                        "schema": {"type": "object", "properties": {"reload": {"type": "boolean"}}},
                        "example": {"reload": True},
                    },
                },
            }
        },
    )
    async def put_model(
        request: Request,
        reload: bool = Query(False, description="Recharger le modèle depuis le fichier configuré au démarrage."),
    ):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if reload:
                result = await run_in_threadpool(state.replace_model, settings.model_path)
            elif content_type == "application/json" or content_type.endswith("+json"):
                try:
                    payload = json.loads(await request.body())
                except (ValueError, UnicodeDecodeError):
                    return _fail(400, 'Corps JSON illisible : envoyez {"reload": true}.')
                if not isinstance(payload, dict) or payload.get("reload") is not True:
                    return _fail(
                        400, 'Corps JSON inattendu : envoyez {"reload": true} pour recharger le modèle configuré.'
                    )
                result = await run_in_threadpool(state.replace_model, settings.model_path)
            elif content_type == "multipart/form-data":
                result = await _replace_from_upload(request, state)
                if isinstance(result, JSONResponse):
                    return result
            else:
                return _fail(
                    415,
                    "Type de contenu non pris en charge : envoyez un formulaire multipart/form-data "
                    '(champs model et metadata), du JSON {"reload": true} ou utilisez ?reload=true.',
                )
        except IncompatibleModelError as exc:
            return _fail(409, f"{exc} L'ancien modèle reste en service.")
        except ModelFileError as exc:
            return _fail(422, f"{exc} L'ancien modèle reste en service.")
        return JSONResponse(result)

    # ------------------------------------------------------------------------------ middlewares
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_upload_bytes,
        limits={("PUT", "/model"): settings.max_model_bytes},
    )
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key, public_prefixes=("/static/", f"{DOCS_STATIC_URL}/"))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "OPTIONS"],
            allow_headers=[API_KEY_HEADER, "Content-Type"],
            max_age=600,
        )

    _install_openapi(app, protected=bool(settings.api_key))
    return app


def _fail(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


async def _replace_from_upload(request: Request, state: ApiState):
    """PUT /model en multipart : écrire le modèle dans un dossier temporaire géré, le vérifier, l'échanger."""
    try:
        form = await request.form(max_files=2, max_fields=4, max_part_size=1024 * 1024)
    except MultiPartException as exc:
        return _fail(400, f"Formulaire multipart illisible ({exc}).")
    try:
        model_part = form.get("model")
        meta_part = form.get("metadata")
        if not isinstance(model_part, StarletteUploadFile):
            return _fail(400, "Champ « model » manquant : joignez le fichier .keras du modèle.")
        if meta_part is None:
            return _fail(400, "Champ « metadata » manquant : joignez le fichier .json des métadonnées du modèle.")
        meta_bytes = await meta_part.read() if isinstance(meta_part, StarletteUploadFile) else meta_part.encode("utf-8")
        try:
            metadata = json.loads(meta_bytes)
        except (ValueError, UnicodeDecodeError):
            return _fail(
                422,
                "Métadonnées illisibles : le champ « metadata » doit contenir du JSON. L'ancien modèle reste en service.",
            )
        validate_metadata(metadata, source="Métadonnées envoyées")
        upload_root = state.settings.model_upload_dir
        if upload_root is not None:
            upload_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="atelier-modele-", dir=upload_root) as tmp:
            # Fixed names inside a fresh private directory: the client's file name is never used.
            target = Path(tmp) / "modele.keras"
            await model_part.seek(0)
            with open(target, "wb") as handle:
                await run_in_threadpool(shutil.copyfileobj, model_part.file, handle, 1024 * 1024)
            expected = metadata.get("sha256")
            if (
                isinstance(expected, str)
                and expected
                and await run_in_threadpool(file_sha256, target) != expected.lower()
            ):
                return _fail(
                    422,
                    "Le fichier du modèle ne correspond pas à l'empreinte sha256 de ses métadonnées "
                    "(fichier abîmé ou mauvais couple modèle/métadonnées). L'ancien modèle reste en service.",
                )
            metadata_path(target).write_text(json.dumps(metadata, ensure_ascii=False), encoding="utf-8")
            return await run_in_threadpool(state.replace_model, target)
    finally:
        await form.close()


def _install_openapi(app: FastAPI, *, protected: bool) -> None:
    """OpenAPI en français ; déclare la clé d'API (bouton « Authorize » de /docs) quand elle est exigée."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.get("responses", {})
                if "422" in responses:
                    responses["422"]["content"] = {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}
                    }
                    if responses["422"].get("description") == "Validation Error":
                        responses["422"]["description"] = "Paramètre ou champ invalide."
                for code, response in responses.items():
                    if response.get("description") == "Successful Response":
                        response["description"] = "Réussite"
        components = schema.setdefault("components", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(name, None)
        if protected:
            components.setdefault("securitySchemes", {})["CleAPI"] = {
                "type": "apiKey",
                "in": "header",
                "name": API_KEY_HEADER,
                "description": "La clé d'API configurée au démarrage du serveur.",
            }
            for path, path_item in schema.get("paths", {}).items():
                if path != "/health":
                    for operation in path_item.values():
                        operation["security"] = [{"CleAPI": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# --------------------------------------------------------------------------------------------------
# Settings from the environment
# --------------------------------------------------------------------------------------------------
def _env_number(name: str, default, kind=float):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"La variable d'environnement {name} doit être un nombre (reçu : {raw!r}).") from None
    if value <= 0 and name != "ATELIER_BATCH_WAIT_MS":
        raise ValueError(f"La variable d'environnement {name} doit être positive (reçu : {raw!r}).")
    return value


def settings_from_env() -> dict[str, Any]:
    """Arguments de :func:`create_app` lus dans les variables d'environnement ``ATELIER_*``."""
    from .paths import model_path as default_model_path

    upload_mb = _env_number("ATELIER_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_BYTES / 2**20)
    model_mb = _env_number("ATELIER_MAX_MODEL_MB", DEFAULT_MAX_MODEL_BYTES / 2**20)
    origins = tuple(o.strip() for o in os.environ.get("ATELIER_CORS_ORIGINS", "").split(",") if o.strip())
    return {
        "model_path": os.environ.get("ATELIER_MODEL") or str(default_model_path()),
        "api_key": os.environ.get("ATELIER_API_KEY") or None,
        "db_path": os.environ.get("ATELIER_DB") or None,
        "max_upload_bytes": int(upload_mb * 2**20),
        "max_pixels": _env_number("ATELIER_MAX_PIXELS", MAX_PIXELS, int),
        "store_images_dir": os.environ.get("ATELIER_STORE_IMAGES") or None,
        "cors_origins": origins,
        "batching": os.environ.get("ATELIER_BATCHING", "1").strip().lower() not in ("0", "false", "non", "no", "off"),
        "max_batch_size": _env_number("ATELIER_MAX_BATCH", 16, int),
        "batch_wait_ms": _env_number("ATELIER_BATCH_WAIT_MS", 0.0),
        "max_model_bytes": int(model_mb * 2**20),
        "model_upload_dir": os.environ.get("ATELIER_MODEL_UPLOAD_DIR") or None,
        "uncertainty_threshold": (
            _env_number("ATELIER_UNCERTAINTY_THRESHOLD", 0.5)
            if os.environ.get("ATELIER_UNCERTAINTY_THRESHOLD")
            else None
        ),
    }


def create_app_from_env() -> FastAPI:
    """L'application configurée par les variables ``ATELIER_*`` (pour ``uvicorn --factory`` et ``--workers``)."""
    options = settings_from_env()
    return create_app(options.pop("model_path"), **options)


__all__ = ["create_app", "create_app_from_env", "default_db_path", "sanitize_filename", "settings_from_env"]
