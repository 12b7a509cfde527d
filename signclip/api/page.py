"""The dictionary page at ``/``: static HTML and JavaScript shipped in the package (``signclip/api/static``), with
no build step and nothing fetched from elsewhere, so it works offline. It calls the search routes."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC = resources.files("signclip.api") / "static"


def add_page(app: FastAPI) -> None:
    """``GET /`` (the page) and ``/static/*`` (its scripts)."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
