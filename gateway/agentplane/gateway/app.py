"""The gateway's ASGI application, assembled in plain view.

Routes, in matching order: the operator endpoints (``/health``, ``/ready``,
``/metrics``), the API documents (``/openapi.json``, ``/docs``), the demo page
when asked for, then ``RpcRoutes``: every ``google.api.http`` binding of the
services, which ``RpcDispatch`` serves without walking the others first
(``dispatch.py``). Unknown paths and wrong methods answer in the one error shape
(404 / 405 with ``Allow``), and so does anything that fails unexpectedly (500
INTERNAL; the server logs it). CORS wraps everything.

What is particular to one API comes in as options, as grpc-gateway's
``ServeMuxOption``s: the services to serve, success statuses other than 200,
the document's title, version and comments, the realm of a 401's challenge.

Example (a standalone gateway in front of a remote server)::

    app = create_app(
        GrpcUpstream("10.0.0.5", 50051, service="example.v1.Shelves"),
        services=[shelves_pb2.DESCRIPTOR.services_by_name["Shelves"]],
        success_status={"/example.v1.Shelves/CreateShelf": 201},
    )
    uvicorn.run(app)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .backend import Backend
from .bindings import Binding, BindingError, service_bindings
from .bodies import DEFAULT_MAX_BODY_BYTES
from .cors import Cors, CorsOptions
from .dispatch import RpcDispatch, ahead_of_error_middleware
from .docs import docs_routes
from .errors import RpcError, internal_error, routing_error
from .openapi import Comments, openapi_document
from .routes import RpcRoutes
from .streaming import CURSOR_RESUME, DEFAULT_HEARTBEAT, SseResume

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# OpenAPI's info.version when the caller names none (grpc-gateway's generator says the same).
DEFAULT_VERSION = "version not set"
# CORS by default: only pages of the gateway's own origin.
SAME_ORIGIN = CorsOptions()


def create_app(
    backend: Backend,
    *,
    services: Sequence[ServiceDescriptor],
    success_status: Mapping[str, int] | None = None,
    metrics: Callable[[], bytes] | None = None,
    cors: CorsOptions | None = SAME_ORIGIN,
    extra_routes: Sequence[BaseRoute] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    heartbeat: float = DEFAULT_HEARTBEAT,
    title: str | None = None,
    version: str = DEFAULT_VERSION,
    comments: Comments | None = None,
    realm: str | None = None,
    beacon_rpcs: Sequence[str] = (),
    sse_resume: SseResume = CURSOR_RESUME,
    application: Callable[..., Starlette] = Starlette,
) -> Starlette:
    """The gateway for the ``google.api.http`` bindings of ``services`` over ``backend``.

    ``success_status`` maps gRPC paths (``/package.Service/Method``) to their
    HTTP status on success when it is not 200. ``metrics`` renders the
    Prometheus exposition for ``/metrics`` (omitted: no such route);
    ``extra_routes`` (a demo page, a user's own) are matched before the RPC
    bindings. ``/openapi.json`` documents the bindings under ``title``
    (default: the services' names) and ``version``, described by the proto's
    ``comments`` (default: none). ``realm`` goes into the ``WWW-Authenticate``
    challenge of a 401. ``beacon_rpcs`` (gRPC paths) also take the bodies
    ``navigator.sendBeacon`` sends (text, forms) and read what they can of
    any other body (an unreadable one is an empty request, never a 400),
    every other RPC JSON only;
    state-changing requests from an origin neither same nor allowed by
    ``cors`` are refused (``RpcRoutes``). ``sse_resume`` says which fields
    make a Server-Sent Event's id and which a ``Last-Event-ID`` fills.
    ``application`` builds the app from ``routes``, ``middleware`` and
    ``exception_handlers`` keyword arguments: ``Starlette``, or a subclass
    such as FastAPI (whose own documents must then be switched off, as the
    gateway serves ``/openapi.json`` and ``/docs``). Bad HttpRules, or a
    ``success_status`` naming no served RPC or no 2xx status, raise
    ``BindingError`` here.
    """
    bindings = service_bindings(services)
    statuses = _success_statuses(bindings, success_status or {})
    if title is None:
        title = ", ".join(service.full_name for service in services)

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
                comments=comments,
                success_status=statuses,
                sse_resume=sse_resume,
            )
        )
    )
    routes.extend(extra_routes)
    rpc = RpcRoutes(
        bindings,
        backend,
        max_body_bytes=max_body_bytes,
        heartbeat=heartbeat,
        success_status=statuses,
        realm=realm,
        beacon_rpcs=beacon_rpcs,
        trusted_origins=cors.allow_origins if cors is not None else (),
        sse_resume=sse_resume,
    )
    middleware = []
    if cors is not None:
        middleware.append(
            Middleware(
                Cors,
                allow_origins=list(cors.allow_origins),
                allow_methods=list(cors.allow_methods),
                allow_headers=list(cors.allow_headers),
                allow_credentials=cors.allow_credentials,
                # Let scripts read what the error table sets.
                expose_headers=["Retry-After", "WWW-Authenticate"],
            )
        )
    # Inside CORS, ahead of the Router: the session routes skip the route walk.
    middleware.append(Middleware(RpcDispatch, rpc=rpc, ahead=list(routes)))
    routes.append(rpc)

    async def http_exception(request: Request, exc: Any) -> Response:
        """Starlette's own routing errors (404, 405) in the gateway's error shape."""
        assert isinstance(exc, HTTPException)
        if exc.status_code in (404, 405):
            allow = (exc.headers or {}).get("Allow", "")
            methods = [m.strip() for m in allow.split(",") if m.strip()]
            error = routing_error(exc.status_code, methods)
        else:
            error = RpcError.from_http(exc.status_code, exc.detail)
        return error.response(realm=realm)

    async def unexpected(request: Request, exc: Any) -> Response:
        # Starlette's ServerErrorMiddleware sends this (unless a response has
        # begun) and raises the exception on, for the server to log.
        return internal_error().response(realm=realm)

    app = application(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_exception, Exception: unexpected},
    )
    # "/sessions/" is not "/sessions": answer 404, as grpc-gateway does, not a redirect.
    app.router.redirect_slashes = False
    app.state.backend = backend
    app.state.bindings = bindings
    ahead_of_error_middleware(app)
    return app


def _success_statuses(bindings: Sequence[Binding], wanted: Mapping[str, int]) -> dict[str, int]:
    served = {binding.rpc_path for binding in bindings}
    for rpc_path, status in wanted.items():
        if rpc_path not in served:
            raise BindingError(f"success_status: {rpc_path!r} is no RPC with an HTTP binding")
        if not 200 <= status < 300:
            raise BindingError(f"success_status: {status} for {rpc_path} is not a 2xx status")
    return dict(wanted)
