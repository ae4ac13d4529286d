"""The web page at ``/``: one HTML shell for every page path (the scripts route by path),
its scripts and styles, and uPlot's build from the ``uplot-python`` wheel (no CDN)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PATHS = ("/", "/hosts/{host}", "/plugins", "/explore", "/alerts")
# Scripts and styles only from this origin, nothing inline; no framing by other sites.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self';"
    " img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none';"
    " form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def uplot_dir() -> Path:
    """The folder of uPlot's build inside the installed ``uplot`` package, found without
    importing it (its Python side pulls in IPython and NumPy)."""
    spec = importlib.util.find_spec("uplot")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the uplot-python package is not installed; reinstall unity")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def routes() -> list[BaseRoute]:
    shell = (STATIC / "index.html").read_bytes()

    async def page(request: Request) -> Response:
        return HTMLResponse(shell, headers=HEADERS)

    return [
        *(Route(path, page, methods=["GET", "HEAD"]) for path in PATHS),
        Mount("/ui/static", app=StaticFiles(directory=STATIC)),
        Mount("/ui/uplot", app=StaticFiles(directory=uplot_dir())),
    ]
