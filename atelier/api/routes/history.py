"""``GET /predictions`` : l'historique des prédictions, le plus récent d'abord."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from ...keys import ROLE_INFERENCE
from ..errors import documented
from ..schemas import HistoryOut
from ..state import AppState

router = APIRouter(tags=["prédiction"])


@router.get(
    "/predictions",
    summary="Historique des prédictions",
    description="Les prédictions enregistrées, les plus récentes d'abord, par pages (`limit`, `offset`). "
    "Avec une clé d'inférence, seulement les prédictions faites avec cette clé ; avec la clé de gestion (ou "
    "sans clé configurée), tout l'historique.",
    response_model=HistoryOut,
    responses=documented({422: "Paramètre invalide."}),
)
async def predictions(
    request: Request,
    state: AppState,
    limit: Annotated[int, Query(ge=1, le=500, description="Nombre de prédictions par page (1 à 500).")] = 50,
    offset: Annotated[int, Query(ge=0, description="Nombre de prédictions à sauter (0 pour la plus récente).")] = 0,
) -> dict[str, Any]:
    # An inference key reads only its own rows (its label, set by ApiKeyMiddleware); management reads them all.
    own = (
        getattr(request.state, "key_label", None)
        if getattr(request.state, "key_role", None) == ROLE_INFERENCE
        else None
    )
    total, items = await run_in_threadpool(lambda: state.history.page(limit, offset, key_label=own))
    return {"total": total, "limit": limit, "offset": offset, "items": items}  # validated by HistoryOut
