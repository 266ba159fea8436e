"""``/openapi.json`` and ``/docs``: the API document and Swagger UI to try it.

The document is built once, when the app is created, from the same bindings
the gateway serves. Swagger UI's files come from the ``swagger-ui-bundle``
package and are served by the gateway itself, so ``/docs`` works offline.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="{static}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{static}/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: {spec_url},
      dom_id: "#swagger-ui",
      deepLinking: true,
    }});
  </script>
</body>
</html>
"""


def docs_routes(document: dict[str, Any]) -> Sequence[BaseRoute]:
    """Routes for the document, the Swagger UI page and its static files."""
    from swagger_ui_bundle import swagger_ui_path

    body = json.dumps(document, separators=(",", ":")).encode()
    title = html.escape(str(document.get("info", {}).get("title", "API")))

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    async def docs(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        page = _PAGE.format(
            title=title,
            static=html.escape(f"{root}/docs/static"),
            spec_url=json.dumps(f"{root}/openapi.json"),
        )
        return HTMLResponse(page)

    return [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Mount("/docs/static", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui"),
    ]
