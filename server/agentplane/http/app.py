"""agentplane's HTTP/JSON gateway: the generic ``agentplane.gateway`` with agentplane's options.

What the generic gateway is told about agentplane lives here, once, for both
deployments (``agentplane serve`` with ``InProcessBackend``, ``agentplane
gateway`` with ``session_upstream``): the service (``agentplane.v1.SessionService``),
Start's ``201 Created`` (as the reference agent server answers), the OpenAPI
title, version and the proto's comments (the descriptor set generated with the
clients), the ``WWW-Authenticate`` realm, and the SSE event ids
``<epoch>:<cursor>`` (a cursor names its log, so a resume against another
server's log answers with a GAP, never a silent skip).

Example (the session routes inside a user's own app, next to a runner)::

    app.mount("/agents", gateway_app(InProcessBackend(runner.api, runner.launcher)))
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
from collections.abc import Callable, Sequence
from ssl import SSLContext
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from agentplane.clients.grpcio import session_service_pb2
from agentplane.gateway import Backend, Comments, CorsOptions, GrpcUpstream, SseResume, create_app
from agentplane.gateway.bodies import DEFAULT_MAX_BODY_BYTES
from agentplane.gateway.streaming import DEFAULT_HEARTBEAT

TITLE = "agentplane"
REALM = "agentplane"
_SAME_ORIGIN = CorsOptions()
# An event's SSE id names its log: "<epoch>:<cursor>"; Last-Event-ID sets both.
EVENT_RESUME = SseResume(id_fields=("epoch", "cursor"), request_fields=("epoch", "after_cursor"))


def session_service() -> ServiceDescriptor:
    """``agentplane.v1.SessionService``, from the generated protobuf module."""
    service: ServiceDescriptor = session_service_pb2.DESCRIPTOR.services_by_name["SessionService"]
    return service


def beacon_rpcs() -> list[str]:
    """Close takes what ``navigator.sendBeacon`` sends (any body; an unreadable one is empty).

    The rest take JSON only.
    """
    return [f"/{session_service().full_name}/Close"]


def success_status() -> dict[str, int]:
    """Successes that are not 200: Start answers 201 Created, as the reference does."""
    return {f"/{session_service().full_name}/Start": 201}


def bundled_comments() -> Comments:
    """The comments of agentplane's contract, from the descriptor set generated with the clients."""
    data = (
        importlib.resources.files("agentplane.clients.grpcio")
        .joinpath("descriptors.binpb")
        .read_bytes()
    )
    return Comments.from_descriptor_set(data)


def package_version() -> str:
    try:
        return importlib.metadata.version("agentplane")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def gateway_app(
    backend: Backend,
    *,
    metrics: Callable[[], bytes] | None = None,
    cors: CorsOptions | None = _SAME_ORIGIN,
    extra_routes: Sequence[BaseRoute] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    heartbeat: float = DEFAULT_HEARTBEAT,
    application: Callable[..., Starlette] = Starlette,
) -> Starlette:
    """agentplane's gateway app over ``backend``; the other arguments are ``create_app``'s.

    ``application``: ``Starlette``, or ``fastapi_application()`` for a FastAPI app.
    """
    return create_app(
        backend,
        services=[session_service()],
        success_status=success_status(),
        metrics=metrics,
        cors=cors,
        extra_routes=[Route("/", index, methods=["GET"], name="index"), *extra_routes],
        max_body_bytes=max_body_bytes,
        heartbeat=heartbeat,
        title=TITLE,
        version=package_version(),
        comments=bundled_comments(),
        realm=REALM,
        beacon_rpcs=beacon_rpcs(),
        sse_resume=EVENT_RESUME,
        application=application,
    )


async def index(request: Request) -> Response:
    """``/``: the demo page when it is served, else the API's documentation.

    A client asking for JSON (``Accept: application/json``, no HTML) gets the
    links instead: ``{"name", "version", "links": {"docs": "/docs", ...}}``.
    """
    root = str(request.scope.get("root_path", ""))
    served = {getattr(route, "name", None) for route in request.app.router.routes}
    links = {
        "docs": "/docs",
        "openapi": "/openapi.json",
        **({"demo": "/demo/"} if "demo:page" in served else {}),
        **({"metrics": "/metrics"} if "prometheus" in served else {}),
        "health": "/health",
        "ready": "/ready",
    }
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return JSONResponse(
            {
                "name": TITLE,
                "version": package_version(),
                "links": {name: root + path for name, path in links.items()},
            }
        )
    return RedirectResponse(root + links.get("demo", "/docs"), status_code=307)


def fastapi_application() -> Callable[..., Starlette] | None:
    """What builds the gateway as a FastAPI app, or None when FastAPI is not installed.

    FastAPI's own ``/openapi.json``, ``/docs`` and ``/redoc`` are off: the
    gateway serves the contract's documents at the first two. Imports FastAPI.
    """
    if importlib.util.find_spec("fastapi") is None:
        return None
    from fastapi import FastAPI

    def build(**app: Any) -> Starlette:
        return FastAPI(openapi_url=None, docs_url=None, redoc_url=None, **app)

    return build


def session_upstream(
    host: str,
    port: int,
    *,
    timeout: float = 60.0,
    ready_timeout: float = 2.0,
    ssl: SSLContext | None = None,
) -> GrpcUpstream:
    """A backend proxying to the agentplane server at ``host:port`` (over TLS with ``ssl``).

    Ready while that server's SessionService health is SERVING (it admits new
    sessions), not merely while the process is up.
    """
    return GrpcUpstream(
        host,
        port,
        timeout=timeout,
        ready_timeout=ready_timeout,
        service=session_service().full_name,
        ssl=ssl,
    )
