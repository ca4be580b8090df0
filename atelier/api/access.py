"""Ce qu'une clé d'inférence voit de l'historique : seulement ses propres prédictions.

:class:`atelier.security.ApiKeyMiddleware` range l'étiquette et le rôle de la clé dans ``request.state`` ; les
routes de l'historique (liste, avis, explication d'une prédiction passée) filtrent avec :func:`own_label`.
La clé de gestion, ou une API sans clé, voit tout.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from ..keys import ROLE_INFERENCE
from .errors import error_response


def own_label(request: Request) -> str | None:
    """L'étiquette de la clé si c'est une clé d'inférence (elle ne voit que ses lignes), sinon ``None`` (tout)."""
    if getattr(request.state, "key_role", None) != ROLE_INFERENCE:
        return None
    label: str | None = getattr(request.state, "key_label", None)
    return label


def refuse_if_not_own(request: Request, row: dict[str, Any] | None) -> JSONResponse | None:
    """Un 403 en français si *row* a été faite avec une autre clé que la clé d'inférence de la requête."""
    label = own_label(request)
    if label is None or row is None or row.get("key_label") == label:
        return None
    return error_response(
        403,
        f"Accès refusé : la prédiction {row['id']} a été faite avec une autre clé. Une clé d'inférence ne lit, "
        "ne corrige et n'efface que ses propres prédictions (la clé de gestion voit tout l'historique).",
    )
