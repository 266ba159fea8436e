"""``agentplane gateway``: the HTTP/JSON gateway alone, proxying to a remote server.

The same app as the embedded gateway (``app.gateway_app``), with ``GrpcUpstream`` as its backend,
so the HTTP tier scales apart from the agents. SIGTERM/SIGINT stop accepting
connections and give requests in flight (streams included) ``grace_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from ssl import SSLContext

from agentplane.gateway import CorsOptions
from agentplane.net import TlsFiles

from .app import gateway_app, session_upstream
from .limits import HttpLimits
from .server import HttpServer

logger = logging.getLogger("agentplane.gateway")


def parse_upstream(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); ValueError naming the problem."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


async def serve_gateway(
    upstream: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    cors: CorsOptions | None = None,
    upstream_timeout: float = 60.0,
    grace_seconds: float = 5.0,
    on_ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    allowed_hosts: Sequence[str] | None = None,
    limits: HttpLimits | None = None,
    tls: TlsFiles | None = None,
    upstream_ssl: SSLContext | None = None,
) -> None:
    """Serve until a signal (or ``stop`` is set); ``on_ready`` gets the bound port.

    ``allowed_hosts``, ``limits`` and ``tls`` (HTTPS) are ``HttpServer``'s;
    ``upstream_ssl``: dial the upstream over TLS (``agentplane.net.client_context``).
    """
    up_host, up_port = parse_upstream(upstream)
    backend = session_upstream(up_host, up_port, timeout=upstream_timeout, ssl=upstream_ssl)
    app = gateway_app(backend, cors=cors if cors is not None else CorsOptions())
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    server = HttpServer(app, host, port, limits=limits, allowed_hosts=allowed_hosts, tls=tls)
    try:
        await server.start()
        logger.info("agentplane gateway on %s:%s -> %s", host, server.port, backend.address)
        if on_ready is not None and server.port is not None:
            on_ready(server.port)
        await stop.wait()
    finally:
        await server.stop(grace_seconds)
        await backend.aclose()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        logger.info("agentplane gateway stopped")
