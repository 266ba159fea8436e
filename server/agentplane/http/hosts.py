"""Host header check against DNS rebinding.

A page on ``http://evil.example`` whose name is re-pointed at 127.0.0.1
reaches a local server with ``Host: evil.example``; answering only the names
the server is known by closes that door. For a loopback bind the default is
the loopback names (``localhost``, ``127.0.0.1``, ``[::1]``, any port); other
binds accept any Host unless names are configured. ``*`` accepts any.
"""

from __future__ import annotations

from collections.abc import Sequence

from grpclib.const import Status
from starlette.types import ASGIApp, Receive, Scope, Send

from agentplane.gateway.errors import RpcError

LOOPBACK_BINDS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def default_allowed_hosts(bind_host: str) -> tuple[str, ...] | None:
    """The loopback names for a loopback bind, else None (any Host)."""
    return LOOPBACK_NAMES if bind_host in LOOPBACK_BINDS else None


def _hostname(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end > 0 else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class AllowedHosts:
    """Answers 421 (Status JSON) to a request whose Host is none of ``hosts`` (any port)."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app = app
        self.hosts = frozenset(_hostname(host) for host in hosts)
        self.any = "*" in hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = ""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
                break
        if _hostname(host) in self.hosts:
            await self.app(scope, receive, send)
            return
        error = RpcError(
            Status.INVALID_ARGUMENT,
            f"Host {host!r} is not served here (allowed: {', '.join(sorted(self.hosts))})",
            http_status=421,
        )
        await error.response()(scope, receive, send)
