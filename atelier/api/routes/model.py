"""``GET /health``, ``GET /model`` et ``PUT /model`` : le modèle en service et son remplacement à chaud."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from ...inference import IncompatibleModelError
from ...keras_archive import ModelArchiveTooLargeError
from ...model_io import ModelFileError, file_sha256, metadata_path, validate_metadata
from ...model_metadata import parse_metadata_json
from ..errors import OLD_MODEL_KEPT, documented, error_response
from ..schemas import HealthOut, ModelOut, ModelSwapOut
from ..state import ApiState, AppState, state_of
from .repository import pin_version

router = APIRouter()

REPOSITORY_ADVICE = (
    "Ce serveur suit un dépôt de modèles : publiez la nouvelle version (python -m atelier publish --model … "
    '--model-dir …), tous les processus la prendront ; ou choisissez une version avec {"version": N}.'
)

_PUT_DESCRIPTION = (
    "Trois façons :\n\n"
    "* **envoyer un nouveau modèle** : formulaire `multipart/form-data` avec le champ **model** "
    "(le fichier `.keras`) et le champ **metadata** (son fichier `.json`, ou le même JSON en texte) ;\n"
    "* **recharger le fichier configuré** au démarrage : `?reload=true`, ou un corps JSON "
    '`{"reload": true}` ;\n'
    '* **avec un dépôt de modèles** (`serve --model-dir`) : `{"version": N}` épingle la version N pour tous '
    "les processus et répliques qui lisent le dépôt (`DELETE /model/pin` revient à la plus récente) ; les "
    "deux façons précédentes sont alors refusées (409) : publiez plutôt une nouvelle version.\n\n"
    "Le nouveau modèle est chargé (en mode sûr), vérifié (mêmes classes dans le même ordre, même "
    "taille d'image, sorties qui sont des probabilités) et chauffé **avant** le remplacement : les "
    "requêtes en cours finissent sur l'ancien modèle, les suivantes utilisent le nouveau. En cas "
    "de problème, l'ancien modèle reste en service. Protégé par la clé d'API si elle est configurée."
)

_PUT_BODY = {
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
            "schema": {
                "type": "object",
                "properties": {"reload": {"type": "boolean"}, "version": {"type": "integer", "minimum": 1}},
            },
            "example": {"reload": True},
        },
    },
}


@router.get(
    "/health",
    tags=["service"],
    summary="L'API répond-elle ?",
    description="Renvoie `ok` (le processus répond), s'il est prêt (un modèle est en service) et la version "
    "de ce modèle. Ne demande jamais de clé d'API. Pour un équilibreur de charge : `/health/ready`.",
    response_model=HealthOut,
)
async def health(request: Request) -> JSONResponse:
    # Hot route (the ceiling of `python -m atelier bench`): no dependency injection, see atelier.api.state.
    version = state_of(request).served_version
    return JSONResponse({"status": "ok", "ready": version is not None, "model_version": version})


@router.get(
    "/model",
    tags=["modèle"],
    summary="Le modèle en service",
    description="Les métadonnées du modèle qui répond : version, classes (dans l'ordre des sorties), "
    "taille des images, date de création, métriques…",
    response_model=ModelOut,
    responses=documented({}),
)
async def get_model(state: AppState) -> JSONResponse:
    # Checked by the metadata schema when the model was loaded (finite numbers, bounded): never a 500 here.
    return JSONResponse(state.serving_predictor().current.public_metadata)


@router.put(
    "/model",
    tags=["modèle"],
    summary="Remplacer le modèle à chaud",
    description=_PUT_DESCRIPTION,
    response_model=ModelSwapOut,
    responses=documented(
        {
            400: "Formulaire ou JSON mal formé, champ manquant.",
            409: "Modèle incompatible avec celui en service (classes ou taille d'image).",
            413: "Fichier du modèle trop volumineux, ou archive .keras qui se décompresserait en trop de données.",
            415: "Type de contenu non pris en charge.",
            422: "Fichier illisible : pas un modèle Keras, métadonnées invalides (schéma, nombres non finis, "
            "JSON trop imbriqué) ou incohérentes, sorties qui ne sont pas des probabilités sur les images "
            "d'exemple.",
        }
    ),
    openapi_extra={"requestBody": _PUT_BODY},
)
async def put_model(
    request: Request,
    state: AppState,
    reload: Annotated[bool, Query(description="Recharger le modèle depuis le fichier configuré au démarrage.")] = False,
) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if state.follower is not None and not content_type.endswith("json"):
        return error_response(409, REPOSITORY_ADVICE)
    try:
        if reload:
            return await run_in_threadpool(state.replace_model, state.settings.model_path)
        if content_type == "application/json" or content_type.endswith("+json"):
            return await _reload_from_json(request, state)
        if content_type == "multipart/form-data":
            return await _replace_from_upload(request, state)
        return error_response(
            415,
            "Type de contenu non pris en charge : envoyez un formulaire multipart/form-data "
            '(champs model et metadata), du JSON {"reload": true} ou utilisez ?reload=true.',
        )
    except IncompatibleModelError as exc:
        return error_response(409, f"{exc} {OLD_MODEL_KEPT}")
    except ModelArchiveTooLargeError as exc:
        return error_response(413, f"{exc} {OLD_MODEL_KEPT}")
    except ModelFileError as exc:
        return error_response(422, f"{exc} {OLD_MODEL_KEPT}")


async def _reload_from_json(request: Request, state: ApiState) -> Any:
    try:
        payload = json.loads(await request.body())
    except RecursionError:
        return error_response(400, 'Corps JSON trop imbriqué : envoyez {"reload": true} ou {"version": N}.')
    except (ValueError, UnicodeDecodeError):
        return error_response(400, 'Corps JSON illisible : envoyez {"reload": true} ou {"version": N}.')
    if isinstance(payload, dict) and "version" in payload:
        return await pin_version(state, payload["version"])
    if state.follower is not None:
        return error_response(409, REPOSITORY_ADVICE)
    if not isinstance(payload, dict) or payload.get("reload") is not True:
        return error_response(
            400, 'Corps JSON inattendu : envoyez {"reload": true} pour recharger le modèle configuré.'
        )
    return await run_in_threadpool(state.replace_model, state.settings.model_path)


async def _replace_from_upload(request: Request, state: ApiState) -> Any:
    """PUT /model en multipart : écrire le modèle dans un dossier temporaire géré, le vérifier, l'échanger."""
    try:
        form = await request.form(max_files=2, max_fields=4, max_part_size=1024 * 1024)
    except MultiPartException as exc:
        return error_response(400, f"Formulaire multipart illisible ({exc}).")
    try:
        model_part = form.get("model")
        meta_part = form.get("metadata")
        if not isinstance(model_part, UploadFile):
            return error_response(400, "Champ « model » manquant : joignez le fichier .keras du modèle.")
        if meta_part is None:
            return error_response(
                400, "Champ « metadata » manquant : joignez le fichier .json des métadonnées du modèle."
            )
        meta_bytes = await meta_part.read() if isinstance(meta_part, UploadFile) else meta_part.encode("utf-8")
        try:
            metadata = parse_metadata_json(meta_bytes, source="Métadonnées envoyées (champ « metadata »)")
        except ValueError as exc:
            return error_response(422, f"{exc} {OLD_MODEL_KEPT}")
        validate_metadata(metadata, source="Métadonnées envoyées")  # before any loading, so before any swap
        await model_part.seek(0)
        return await run_in_threadpool(_install_uploaded, state, model_part.file, metadata)
    finally:
        await form.close()


def _install_uploaded(state: ApiState, upload: BinaryIO, metadata: dict[str, Any]) -> Any:
    """In a worker thread: copy the upload into a fresh private directory, check its sha256, swap it in."""
    upload_root = state.settings.model_upload_dir
    if upload_root is not None:
        upload_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="atelier-modele-", dir=upload_root) as tmp:
        # Fixed names inside a fresh private directory: the client's file name is never used.
        target = Path(tmp) / "modele.keras"
        with open(target, "wb") as handle:
            shutil.copyfileobj(upload, handle, 1024 * 1024)
        expected = metadata.get("sha256")
        if isinstance(expected, str) and expected and file_sha256(target) != expected.lower():
            return error_response(
                422,
                "Le fichier du modèle ne correspond pas à l'empreinte sha256 de ses métadonnées "
                f"(fichier abîmé ou mauvais couple modèle/métadonnées). {OLD_MODEL_KEPT}",
            )
        metadata_path(target).write_text(json.dumps(metadata, ensure_ascii=False), encoding="utf-8")
        return state.replace_model(target)
