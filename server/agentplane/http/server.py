"""Serving an ASGI app with uvicorn inside agentplane's own event loop.

uvicorn's ``Server.serve()`` installs its own SIGINT/SIGTERM handlers; the
Runner owns the process's signals (first drains, second stops), so this
drives uvicorn's startup/serve loop without that capture.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from collections.abc import Sequence
from typing import Any

import uvicorn

from agentplane.net import AcceptFailureLog, ListenError, TlsFiles, demote

from .access import AccessLog
from .hosts import AllowedHosts, default_allowed_hosts
from .limits import HttpLimits, guarded_protocol

logger = logging.getLogger("agentplane.http")

START_TIMEOUT = 10.0


class HttpServer:
    """One uvicorn server on ``host:port`` (0: any free port).

    ``limits`` bound each connection's head (size, time) and the number of
    connections (``limits.py``); ``allowed_hosts`` are the Host names served
    (None: the loopback names for a loopback bind, any Host otherwise; ``*``:
    any). Every request gets a request id and, with ``access_log``, one line
    on ``agentplane.access`` when that logger is enabled for INFO (``access.py``;
    uvicorn's own access log is always off).
    ``tls``: serve HTTPS with these PEM files (uvicorn's own ``ssl_*``
    options; with a client CA, a client certificate is required).
    """

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        limits: HttpLimits | None = None,
        allowed_hosts: Sequence[str] | None = None,
        access_log: bool = True,
        tls: TlsFiles | None = None,
    ) -> None:
        limits = limits or HttpLimits()
        hosts = allowed_hosts if allowed_hosts is not None else default_allowed_hosts(host)
        if hosts is not None:
            app = AllowedHosts(app, hosts)
        # Outermost: a request refused for its Host is logged and has an id too.
        app = AccessLog(app, log=access_log)
        # uvicorn's start and stop lines: the runner's summary says where it listens.
        demote(
            "uvicorn.error",
            "Started server process",
            "Finished server process",
            "Uvicorn running on",
            "Shutting down",
        )
        self.limits = limits
        self._throttle: AcceptFailureLog | None = None
        # httptools parses HTTP/1.1 in C: with h11 (pure Python) the parser
        # was ~28% of the gateway's CPU per request (bench/results/). The
        # protocol is uvicorn's httptools one with agentplane's limits.
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=guarded_protocol(limits, access_log=False),
            timeout_keep_alive=math.ceil(limits.keep_alive_timeout),  # whole seconds in uvicorn
            lifespan="off",
            log_config=None,
            # Left on: False would strip the "uvicorn.access" logger's handlers
            # process-wide; the protocol class never logs (AccessLog does).
            access_log=True,
            **(_uvicorn_tls(tls) if tls is not None else {}),
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self) -> None:
        """Listen, or raise RuntimeError naming why not (ListenError: port in use, ...)."""
        bind_error = _BindError()
        # uvicorn logs a failed bind's OSError, then exits: kept for ListenError instead.
        uvicorn_log = logging.getLogger("uvicorn.error")
        uvicorn_log.addFilter(bind_error)
        try:
            self._task = asyncio.get_running_loop().create_task(self._run())
            deadline = asyncio.get_running_loop().time() + START_TIMEOUT
            while not self._server.started:
                if self._task.done() or asyncio.get_running_loop().time() > deadline:
                    await self.stop(1.0)
                    config = self._server.config
                    if bind_error.error is not None:
                        raise ListenError("HTTP", config.host, config.port, bind_error.error)
                    raise RuntimeError(
                        f"HTTP server could not listen on {config.host}:{config.port}"
                    )
                await asyncio.sleep(0.01)
        finally:
            uvicorn_log.removeFilter(bind_error)
        sockets = self._server.servers[0].sockets if self._server.servers else ()
        self._throttle = AcceptFailureLog(asyncio.get_running_loop(), sockets, "HTTP", logger)
        self._throttle.install()
        self.port = sockets[0].getsockname()[1] if sockets else self._server.config.port

    async def _run(self) -> None:
        # uvicorn exits the process when it cannot bind: start() reports it.
        with contextlib.suppress(SystemExit):
            await self._server._serve()

    async def stop(self, grace_seconds: float) -> None:
        """Stop accepting, finish in-flight requests within ``grace_seconds``."""
        self._server.should_exit = True
        if self._throttle is not None:
            self._throttle.remove()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_seconds)
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class _BindError(logging.Filter):
    """Keeps (and silences) the OSError uvicorn logs when it cannot bind."""

    def __init__(self) -> None:
        super().__init__()
        self.error: OSError | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, OSError):
            self.error = record.msg
            return False
        return True


def _uvicorn_tls(tls: TlsFiles) -> dict[str, Any]:
    """uvicorn's options for ``tls``: it builds the context (and so says https in the scope)."""
    tls.context()  # a TlsError naming the bad file, before uvicorn reports it its own way
    options: dict[str, Any] = {"ssl_certfile": tls.cert, "ssl_keyfile": tls.key}
    if tls.client_ca is not None:
        options.update(ssl_ca_certs=tls.client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options
