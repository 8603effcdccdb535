"""The web page: one HTML file and its static scripts, styles and locale tables."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

STATIC_DIR = resources.files("services.gateway") / "static"
PAGE_HTML = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])  # HEAD: as GET, the server leaves the body out
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE_HTML)
