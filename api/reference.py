"""The API reference page: Swagger UI from the ``swagger-ui-bundle-v2`` wheel, no CDN."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/api/v1/docs/assets"
SPEC = "/api/v1/openapi.json"

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Unity API reference</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
<div id="reference"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: "{SPEC}", dom_id: "#reference", deepLinking: true}});
</script>
</body>
</html>
"""


async def page(request: Request) -> Response:
    return HTMLResponse(PAGE)


def assets() -> StaticFiles:
    return StaticFiles(directory=str(swagger_ui_path))
