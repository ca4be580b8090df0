"""``GET /`` : la page web de l'atelier (``atelier/web/index.html``), et ses fichiers sous ``/static/``."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parents[2] / "web"

router = APIRouter()


def _page_csp() -> str:
    """The Content-Security-Policy of the page, sent as a header: the one its ``<meta>`` declares (a single
    source, also read when the file is opened without the server), plus what a ``<meta>`` cannot say
    (``frame-ancestors``: the page is never shown in a frame of another site)."""
    index = WEB_DIR / "index.html"
    found = re.search(
        r'<meta\s+http-equiv="Content-Security-Policy"\s+content="([^"]+)"',
        index.read_text(encoding="utf-8") if index.is_file() else "",
    )
    policy = found.group(1) if found else "default-src 'self'"
    return f"{policy}; frame-ancestors 'none'"


#: The Content-Security-Policy header of ``GET /`` (set by :mod:`atelier.api.response_headers`).
PAGE_CSP = _page_csp()


@router.get("/", include_in_schema=False)
async def home() -> FileResponse:
    index = WEB_DIR / "index.html"
    page = index if index.is_file() else WEB_DIR / "placeholder.html"  # a waiting page until it exists
    return FileResponse(page, media_type="text/html; charset=utf-8")


def mount_static(app: FastAPI) -> None:
    """Les fichiers de la page (``/static/…``) ; un routeur ne peut pas porter de montage, l'application si."""
    app.mount("/static", StaticFiles(directory=WEB_DIR, check_dir=False), name="static")
