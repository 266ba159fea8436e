"""The HTTP port's access log and request ids: a small ASGI middleware.

``AccessLog`` wraps the whole app (``HttpServer`` puts it outermost). For
each HTTP request it takes the caller's ``X-Request-Id`` (or makes one: see
``agentplane.net.requests``), puts the accepted id in the request's headers
(so the gateway forwards it upstream as ``x-request-id`` metadata and an
in-process call sees it too), sets ``request_id_var`` for the request's task,
returns it in the response's ``X-Request-Id`` header, and logs one line on
``agentplane.access`` (INFO) once the response is over (a stream when it
closes)::

    HTTP GET /sessions/{session_id} 200 0.8 ms peer=127.0.0.1:51234 path=/sessions/4f0c...

The route is the template that matched (a gateway binding's path template, a
Starlette or FastAPI route's path), else the path itself; ``path`` follows
when it differs. ``client closed`` marks a request whose client went away
before the response ended (an SSE stream closed by the browser). uvicorn's
own access log stays off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentplane.net import (
    ACCESS_LOGGER,
    REQUEST_ID_HEADER,
    new_request_id,
    request_id_var,
    valid_request_id,
)

_HEADER = REQUEST_ID_HEADER.encode("ascii")
# Where the gateway's RpcRoutes leaves the binding it matched (routes.py).
_GATEWAY_BINDING = "gateway.binding"

access_log = logging.getLogger(ACCESS_LOGGER)


class _Exchange:
    """One request's ``receive`` and ``send`` as the app sees them: the response
    gets the request id, and what the access line needs is noted on the way.

    ``send`` hands back the server's own awaitable rather than awaiting it in
    a coroutine of its own (one frame less per message; ASGI asks only for an
    awaitable).
    """

    __slots__ = ("_receive", "_send", "client_closed", "encoded", "status")

    def __init__(self, receive: Receive, send: Send, encoded: bytes) -> None:
        self._receive = receive
        self._send = send
        self.encoded = encoded
        self.status: int | None = None
        self.client_closed = False

    def send(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            message = {**message, "headers": [*message.get("headers", ()), (_HEADER, self.encoded)]}
        return self._send(message)

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.client_closed = True
        return message


def route_of(scope: Scope) -> str | None:
    """The template of the route that served ``scope``, when one did."""
    binding = scope.get(_GATEWAY_BINDING)
    if binding is not None:
        return str(binding.template.text)
    route = scope.get("route")  # FastAPI sets it
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    endpoint = scope.get("endpoint")
    app = scope.get("app")
    router = getattr(app, "router", None)
    for candidate in getattr(router, "routes", ()):
        if getattr(candidate, "endpoint", None) is endpoint and endpoint is not None:
            found = getattr(candidate, "path", None)
            return found if isinstance(found, str) else None
    return None


class AccessLog:
    """Request ids and one access line per HTTP request (``logger``: ``agentplane.access``).

    ``log``: False keeps the request ids and logs nothing.
    """

    def __init__(self, app: ASGIApp, *, log: bool = True) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = scope["headers"]
        for name, value in headers:
            if name == _HEADER:
                if valid_request_id(value.decode("latin-1")):
                    encoded = value
                    break
                encoded = new_request_id().encode("ascii")
                kept = [(name, value) for name, value in headers if name != _HEADER]
                scope = {**scope, "headers": [*kept, (_HEADER, encoded)]}
                break
        else:
            encoded = new_request_id().encode("ascii")
            scope = {**scope, "headers": [*headers, (_HEADER, encoded)]}
        exchange = _Exchange(receive, send, encoded)
        logged = self.log and access_log.isEnabledFor(logging.INFO)
        token = request_id_var.set(encoded.decode("ascii"))
        try:
            # Only a logged request needs to know whether its client left.
            await self.app(scope, exchange.receive if logged else receive, exchange.send)
        except BaseException:
            if exchange.status is None:
                exchange.status = 500
            raise
        finally:
            if logged:
                # The record takes the request id from request_id_var (logs.py).
                self._log(scope, started, exchange.status, exchange.client_closed)
            request_id_var.reset(token)

    @staticmethod
    def _log(scope: Scope, started: float, status: int | None, client_closed: bool) -> None:
        duration_ms = (time.perf_counter() - started) * 1000
        method = str(scope.get("method", ""))
        path = str(scope.get("path", ""))
        route = route_of(scope) or path
        client = scope.get("client")
        peer = f"{client[0]}:{client[1]}" if client else None
        # No response at all: the client left before one began (nginx's 499).
        shown = status if status is not None else 499
        suffix = f" path={path}" if path != route else ""
        if client_closed:
            suffix += " (client closed)"
        fields: dict[str, Any] = {
            "protocol": "http",
            "method": method,
            "route": route,
            "path": path,
            "status": shown,
            "duration_ms": round(duration_ms, 3),
            "peer": peer,
            "client_closed": client_closed,
        }
        access_log.info(
            "HTTP %s %s %d %.1f ms peer=%s%s",
            method,
            route,
            shown,
            duration_ms,
            peer or "-",
            suffix,
            extra=fields,
        )
