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
from collections.abc import Sequence
from typing import Any

import uvicorn

from agentplane.net import AcceptFailureLog

from .hosts import AllowedHosts, default_allowed_hosts
from .limits import HttpLimits, guarded_protocol

logger = logging.getLogger("agentplane.http")

START_TIMEOUT = 10.0


class HttpServer:
    """One uvicorn server on ``host:port`` (0: any free port).

    ``limits`` bound each connection's head (size, time) and the number of
    connections (``limits.py``); ``allowed_hosts`` are the Host names served
    (None: the loopback names for a loopback bind, any Host otherwise; ``*``:
    any). ``access_log`` logs each request to uvicorn's ``uvicorn.access``
    logger (None: when that logger is enabled for INFO, as ``agentplane serve
    --http-log-level INFO`` sets it; nothing is formatted otherwise).
    """

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        limits: HttpLimits | None = None,
        allowed_hosts: Sequence[str] | None = None,
        access_log: bool | None = None,
    ) -> None:
        limits = limits or HttpLimits()
        if access_log is None:
            access_log = logging.getLogger("uvicorn.access").isEnabledFor(logging.INFO)
        hosts = allowed_hosts if allowed_hosts is not None else default_allowed_hosts(host)
        if hosts is not None:
            app = AllowedHosts(app, hosts)
        self.limits = limits
        self._throttle: AcceptFailureLog | None = None
        # httptools parses HTTP/1.1 in C: with h11 (pure Python) the parser
        # was ~28% of the gateway's CPU per request (bench/results/). The
        # protocol is uvicorn's httptools one with agentplane's limits.
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=guarded_protocol(limits, access_log=access_log),
            timeout_keep_alive=math.ceil(limits.keep_alive_timeout),  # whole seconds in uvicorn
            lifespan="off",
            log_config=None,
            # Left on: False would strip the "uvicorn.access" logger's handlers
            # process-wide; the protocol class decides whether to log.
            access_log=True,
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self) -> None:
        """Listen, or raise RuntimeError naming why not (port in use, ...)."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT
        while not self._server.started:
            if self._task.done() or asyncio.get_running_loop().time() > deadline:
                await self.stop(1.0)
                raise RuntimeError(
                    f"HTTP server could not listen on {self._server.config.host}:{self._server.config.port}"
                )
            await asyncio.sleep(0.01)
        sockets = self._server.servers[0].sockets if self._server.servers else ()
        self._throttle = AcceptFailureLog(asyncio.get_running_loop(), sockets, "HTTP", logger)
        self._throttle.install()
        self.port = sockets[0].getsockname()[1] if sockets else self._server.config.port

    async def _run(self) -> None:
        try:
            await self._server._serve()
        except SystemExit:
            # uvicorn exits the process when it cannot bind; report it instead.
            logger.error("HTTP server failed to start")

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
