"""The ASGI application: operator endpoints (health, readiness, Prometheus)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def create_app(
    *,
    accepting: Callable[[], bool],
    metrics: Callable[[], bytes],
) -> Starlette:
    """An app answering ``/health``, ``/ready`` and ``/metrics``.

    ``accepting()`` says whether new sessions would be admitted (the same
    signal as the gRPC health of ``agentplane.v1.SessionService``);
    ``metrics()`` renders the Prometheus exposition.
    """

    async def health(request: Request) -> Response:
        # Liveness: answering at all is the signal.
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        # 400 when not ready, as the reference agent server documents it.
        if accepting():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=400)

    async def prometheus(request: Request) -> Response:
        return Response(metrics(), media_type=PROMETHEUS_CONTENT_TYPE)

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ]
    )
