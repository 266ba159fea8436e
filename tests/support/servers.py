"""Real servers for the tests, all through ``agentplane.testing.serving``.

* ``Servers``: the server tests' ``serve`` fixture, ``await serve(launcher)``
  for as many servers as a test wants, each stopped when the test ends.
* ``deploy(kind, launcher)``: the gateway in either deployment, ``embedded``
  (the Runner's own HTTP port, SessionAPI in-process) or ``standalone`` (the
  Runner serving gRPC only, and a separate gateway app proxying to it on its
  own HTTP server), with an HTTP client.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from agentplane.gateway import CorsOptions
from agentplane.http.app import gateway_app, session_upstream
from agentplane.http.server import HttpServer
from agentplane.server import AgentLauncher, Runner, ServeOptions
from agentplane.testing import Served, serving

KINDS = ("embedded", "standalone")


def open_options(**options: Any) -> ServeOptions:
    """ServeOptions of an open server that leaves this process's collector alone.

    No API token, whatever AGENTPLANE_API_TOKEN says; ``gc_freeze=False``
    unless asked for, so the tests' own objects never end up frozen.
    """
    options.setdefault("api_token", None)
    options.setdefault("gc_freeze", False)
    return ServeOptions(**options)


class Servers:
    """``await serve(launcher, options)``: a real server on 127.0.0.1:0 (gRPC only).

    ``options`` default to ``open_options()``. ``start=False`` returns as soon
    as the port listens, while the launcher may still be warming up.
    """

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()

    async def __call__(
        self,
        launcher: AgentLauncher,
        options: ServeOptions | None = None,
        *,
        start: bool = True,
        http: bool = False,
    ) -> Served:
        return await self._stack.enter_async_context(
            serving(launcher, options or open_options(), http=http, ready=start)
        )

    async def aclose(self) -> None:
        await self._stack.aclose()


@dataclass
class Deployment:
    kind: str
    runner: Runner
    url: str
    http: httpx.AsyncClient

    @property
    def launcher(self) -> AgentLauncher:
        return self.runner.launcher


@contextlib.asynccontextmanager
async def deploy(
    kind: str, launcher: AgentLauncher, options: ServeOptions | None = None
) -> AsyncIterator[Deployment]:
    """The gateway of ``launcher`` in deployment ``kind`` (see the module docstring)."""
    options = options or ServeOptions(api_token=None)
    async with contextlib.AsyncExitStack() as stack:
        served = await stack.enter_async_context(
            serving(launcher, options, http=kind == "embedded")
        )
        if kind == "embedded":
            url = served.http_url
        else:
            url = await stack.enter_async_context(standalone_gateway(served.grpc_port, options))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=10))
        yield Deployment(kind, served.runner, url, http)


@contextlib.asynccontextmanager
async def standalone_gateway(grpc_port: int, options: ServeOptions) -> AsyncIterator[str]:
    """A gateway app in this process proxying to ``grpc_port``; answers its URL.

    Its CORS rules are those of ``options``, as ``agentplane gateway`` takes them.
    """
    upstream = session_upstream("127.0.0.1", grpc_port, timeout=10)
    cors = CorsOptions(
        allow_origins=tuple(options.cors_allow_origins),
        allow_methods=tuple(options.cors_allow_methods),
        allow_headers=tuple(options.cors_allow_headers),
        allow_credentials=options.cors_allow_credentials,
    )
    try:
        server = HttpServer(gateway_app(upstream, cors=cors), "127.0.0.1", 0)
        await server.start()
        try:
            yield f"http://127.0.0.1:{server.port}"
        finally:
            await server.stop(2)
    finally:
        await upstream.aclose()
