"""The demo page and the browser client, served by the gateway under ``/demo/``.

``/demo/`` is a plain HTML page that starts an agent for a call, shows its
state, live metrics and events, closes it with a button, and ends it with a
``sendBeacon`` when the tab is left or closed. It talks to the gateway only
through the browser module, which is served next to it as
``/demo/agentplane.js`` (types: ``/demo/agentplane.d.ts``), so a web app can
import it from any agentplane server it talks to.

The files are package data of this package (``server/agentplane/demo/``; the module's
source is ``clients/browser/``, linked into this folder). They are
read once, when the routes are built, so a missing file stops the server at
start rather than answering 404 later.

Example::

    app = Starlette(routes=[*api_routes, *demo_routes()])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

DEMO_PATH = "/demo"

# Served name -> (file in this folder, media type). Nothing else is served.
FILES = {
    "": ("index.html", "text/html; charset=utf-8"),
    "demo.js": ("demo.js", "text/javascript; charset=utf-8"),
    "agentplane.js": ("agentplane.js", "text/javascript; charset=utf-8"),
    "agentplane.d.ts": ("agentplane.d.ts", "text/plain; charset=utf-8"),
}

_HEADERS = {
    # Revalidate every time (cheap with the ETag): an upgraded server never
    # leaves a browser running an old client.
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # The page may carry an API token in its query string: never send it on.
    "Referrer-Policy": "no-referrer",
}
_PAGE_HEADERS = {
    **_HEADERS,
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
}


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


def read_asset(filename: str) -> bytes:
    """A file of this package (``server/agentplane/demo/``), from the installed package."""
    return resources.files(__package__ or "agentplane.demo").joinpath(filename).read_bytes()


def _load() -> dict[str, _Asset]:
    assets = {}
    for name, (filename, media_type) in FILES.items():
        body = read_asset(filename)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[name] = _Asset(body, media_type, etag)
    return assets


def demo_routes() -> list[BaseRoute]:
    """Routes serving the demo page at ``/demo/`` and the browser module next to it."""
    assets = _load()

    def serve(name: str) -> Route:
        asset = assets[name]
        headers = {**(_PAGE_HEADERS if name == "" else _HEADERS), "ETag": asset.etag}

        async def endpoint(request: Request) -> Response:
            if request.headers.get("if-none-match") == asset.etag:
                return Response(status_code=304, headers=headers)
            return Response(asset.body, media_type=asset.media_type, headers=headers)

        return Route(
            f"{DEMO_PATH}/{name}", endpoint, methods=["GET"], name=f"demo:{name or 'page'}"
        )

    async def to_page(request: Request) -> Response:
        # Relative URLs in the page (demo.js, the API at "..") need the slash.
        return RedirectResponse(request.url.replace(path=request.url.path + "/"), status_code=308)

    return [
        Route(DEMO_PATH, to_page, methods=["GET"], name="demo:redirect"),
        *(serve(name) for name in FILES),
    ]
