"""``GET /`` : la page web de l'atelier (``atelier/web/index.html``), et ses fichiers sous ``/static/``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parents[2] / "web"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def home() -> FileResponse:
    index = WEB_DIR / "index.html"
    page = index if index.is_file() else WEB_DIR / "placeholder.html"  # a waiting page until it exists
    return FileResponse(page, media_type="text/html; charset=utf-8")


def mount_static(app: FastAPI) -> None:
    """Les fichiers de la page (``/static/…``) ; un routeur ne peut pas porter de montage, l'application si."""
    app.mount("/static", StaticFiles(directory=WEB_DIR, check_dir=False), name="static")
