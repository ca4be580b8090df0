"""L'image gardée d'une prédiction de l'historique, ou le 409 en français qui dit pourquoi elle manque.

Expliquer une prédiction passée (``GET /predictions/{id}/explanation``) et la corriger ou la confirmer
(``POST /predictions/{id}/feedback``) demandent tous deux son image, gardée seulement quand le serveur est lancé
avec ``--store-images DOSSIER`` : :func:`stored_image` la trouve, ou renvoie la réponse 409 à donner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..image_store import find_image
from .errors import error_response
from .state import ApiState

#: The advice when the server keeps no image at all.
RESTART_WITH_STORE_IMAGES = "Relancez-le avec --store-images DOSSIER (ou la variable ATELIER_STORE_IMAGES)"


async def stored_image(state: ApiState, row: dict[str, Any], *, no_store: str, missing: str) -> Path | JSONResponse:
    """Le fichier de l'image de *row*, ou un 409 « … impossible *no_store* » (aucune image gardée) ou
    « … impossible *missing* » (celle-ci n'est pas dans le dossier)."""
    directory = state.settings.store_images_dir
    if directory is None:
        return error_response(409, f"Ce serveur ne garde pas les images reçues : impossible {no_store}")
    path = await run_in_threadpool(find_image, directory, row["image_sha256"])
    return missing_image(row, missing) if path is None else path


def missing_image(row: dict[str, Any], missing: str) -> JSONResponse:
    """Le 409 d'une prédiction dont l'image n'est pas (ou plus) dans le dossier des images."""
    return error_response(
        409,
        f"L'image de la prédiction {row['id']} n'est pas gardée (reçue avant que le serveur ne garde les "
        f"images, ou effacée depuis par la rétention de l'historique) : impossible {missing}",
    )
