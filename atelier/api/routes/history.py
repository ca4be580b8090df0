"""``GET /predictions`` : l'historique des prédictions, le plus récent d'abord."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from ..errors import documented
from ..schemas import HistoryOut
from ..state import AppState

router = APIRouter(tags=["prédiction"])

#: Largest offset accepted (SQLite's OFFSET is a 64-bit integer: a larger one would overflow, a 500).
MAX_OFFSET = 1_000_000_000


@router.get(
    "/predictions",
    summary="Historique des prédictions",
    description="Les prédictions enregistrées, les plus récentes d'abord, par pages (`limit`, `offset`).",
    response_model=HistoryOut,
    responses=documented({422: "Paramètre invalide."}),
)
async def predictions(
    state: AppState,
    limit: Annotated[int, Query(ge=1, le=500, description="Nombre de prédictions par page (1 à 500).")] = 50,
    offset: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_OFFSET,
            description="Nombre de prédictions à sauter (0 pour la plus récente ; au plus 1 000 000 000).",
        ),
    ] = 0,
) -> dict[str, Any]:
    total, items = await run_in_threadpool(state.history.page, limit, offset)
    return {"total": total, "limit": limit, "offset": offset, "items": items}  # validated by HistoryOut
