"""The gateway's ASGI application, assembled in plain view.

Routes, in matching order: the operator endpoints (``/health``, ``/ready``,
``/metrics``), the API documents (``/openapi.json``, ``/docs``), the demo page
when asked for, then ``RpcRoutes``: every ``google.api.http`` binding of the
services. Unknown paths and wrong methods answer in the one error shape
(404 / 405 with ``Allow``). CORS wraps everything.

Example (a standalone gateway in front of a remote server)::

    app = create_app(GrpcUpstream("10.0.0.5", 50051))
    uvicorn.run(app)
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .backend import Backend
from .bindings import service_bindings
from .bodies import DEFAULT_MAX_BODY_BYTES
from .docs import docs_routes
from .errors import RpcError, routing_error
from .openapi import Comments, openapi_document
from .routes import RpcRoutes
from .streaming import DEFAULT_HEARTBEAT

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def session_service() -> ServiceDescriptor:
    """agentplane.v1.SessionService, from the generated protobuf module."""
    from agentplane.clients.grpcio import session_service_pb2

    service: ServiceDescriptor = session_service_pb2.DESCRIPTOR.services_by_name["SessionService"]
    return service


@dataclass(frozen=True, slots=True)
class CorsOptions:
    """Which browser origins may call the gateway.

    A wildcard origin never allows credentials: browsers refuse that pairing,
    and echoing any origin with credentials would let every site act as the
    user.
    """

    allow_origins: Sequence[str] = ("*",)
    allow_methods: Sequence[str] = ("*",)
    allow_headers: Sequence[str] = ("*",)
    allow_credentials: bool = False

    def __post_init__(self) -> None:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError(
                "CORS credentials need explicit origins: browsers refuse credentials "
                "with a wildcard origin"
            )


def create_app(
    backend: Backend,
    *,
    services: Sequence[ServiceDescriptor] | None = None,
    metrics: Callable[[], bytes] | None = None,
    cors: CorsOptions | None = CorsOptions(),
    extra_routes: Sequence[BaseRoute] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    heartbeat: float = DEFAULT_HEARTBEAT,
    title: str = "agentplane",
    version: str | None = None,
    comments: Comments | None = None,
) -> Starlette:
    """The gateway for ``services`` (default: SessionService) over ``backend``.

    ``metrics`` renders the Prometheus exposition for ``/metrics`` (omitted:
    no such route); ``extra_routes`` (the demo page, a user's own) are matched
    before the RPC bindings. ``/openapi.json`` documents the bindings with the
    proto's comments (``comments``; default: agentplane's own contract).
    Bad HttpRules raise ``BindingError`` here.
    """
    bindings = service_bindings(services if services is not None else [session_service()])
    version = version or _package_version()

    async def health(request: Request) -> Response:
        # Liveness: answering at all is the signal.
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        # 400 when not ready, as the reference agent server documents it.
        if await backend.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=400)

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
    ]
    if metrics is not None:
        render_metrics = metrics

        async def prometheus(request: Request) -> Response:
            return Response(render_metrics(), media_type=PROMETHEUS_CONTENT_TYPE)

        routes.append(Route("/metrics", prometheus, methods=["GET"]))
    routes.extend(
        docs_routes(
            openapi_document(
                bindings,
                title=title,
                version=version,
                comments=Comments.bundled() if comments is None else comments,
            )
        )
    )
    routes.extend(extra_routes)
    routes.append(RpcRoutes(bindings, backend, max_body_bytes=max_body_bytes, heartbeat=heartbeat))
    middleware = []
    if cors is not None:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors.allow_origins),
                allow_methods=list(cors.allow_methods),
                allow_headers=list(cors.allow_headers),
                allow_credentials=cors.allow_credentials,
                # Let scripts read what the error table sets.
                expose_headers=["Retry-After", "WWW-Authenticate"],
            )
        )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _http_exception},
    )
    # "/sessions/" is not "/sessions": answer 404, as grpc-gateway does, not a redirect.
    app.router.redirect_slashes = False
    app.state.backend = backend
    app.state.bindings = bindings
    return app


def _package_version() -> str:
    try:
        return importlib.metadata.version("agentplane")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


async def _http_exception(request: Request, exc: Any) -> Response:
    """Starlette's own routing errors (404, 405) in the gateway's error shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):
        allow = (exc.headers or {}).get("Allow", "")
        error = routing_error(exc.status_code, [m.strip() for m in allow.split(",") if m.strip()])
    else:
        error = RpcError.from_http(exc.status_code, exc.detail)
    return error.response()
