"""Real deployments of the gateway for the tests: embedded, or standalone over gRPC.

``embedded``: ``Runner.serve`` with its HTTP port (the gateway calls SessionAPI
in-process). ``standalone``: the same Runner serving gRPC only, and a separate
gateway app with ``GrpcUpstream`` on its own uvicorn server, both on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from agentplane.gateway import CorsOptions, GrpcUpstream
from agentplane.http.app import gateway_app, session_upstream
from agentplane.http.server import HttpServer
from agentplane.server import AgentLauncher, Runner, ServeOptions, SessionContext

KINDS = ("embedded", "standalone")


class Agent:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


@dataclass
class Agents:
    """create_agent / join_call for the tests: each agent runs until ended."""

    contexts: dict[str, SessionContext] = field(default_factory=dict)

    async def create_agent(self, **_: Any) -> Agent:
        return Agent()

    async def join_call(
        self, agent: Agent, call_type: str, call_id: str, *, session: SessionContext, **_: Any
    ) -> None:
        self.contexts[session.session_id] = session
        session.observe("llm_latency_ms", 245.5)
        session.add("llm_input_tokens", 1500)
        await asyncio.Event().wait()

    def launcher(self, **limits: Any) -> AgentLauncher:
        limits.setdefault("drain_timeout", 2)
        return AgentLauncher(self.create_agent, self.join_call, **limits)


@dataclass
class Deployment:
    kind: str
    runner: Runner
    url: str
    http: httpx.AsyncClient

    @property
    def launcher(self) -> AgentLauncher:
        return self.runner.launcher


@asynccontextmanager
async def deploy(
    kind: str, launcher: AgentLauncher, options: ServeOptions | None = None
) -> AsyncIterator[Deployment]:
    options = options or ServeOptions(api_token=None)
    runner = Runner(launcher, options)
    ready = asyncio.Event()
    task = asyncio.create_task(
        runner.serve(
            host="127.0.0.1",
            grpc_port=0,
            http_port=0 if kind == "embedded" else None,
            on_ready=lambda _: ready.set(),
        )
    )
    standalone: HttpServer | None = None
    upstream: GrpcUpstream | None = None
    try:
        await asyncio.wait_for(ready.wait(), 10)
        if kind == "embedded":
            port = runner.http_port
        else:
            assert runner.grpc is not None and runner.grpc.port is not None
            upstream = session_upstream("127.0.0.1", runner.grpc.port, timeout=10)
            cors = CorsOptions(
                allow_origins=tuple(options.cors_allow_origins),
                allow_methods=tuple(options.cors_allow_methods),
                allow_headers=tuple(options.cors_allow_headers),
                allow_credentials=options.cors_allow_credentials,
            )
            app = gateway_app(upstream, cors=cors)
            standalone = HttpServer(app, "127.0.0.1", 0)
            await standalone.start()
            port = standalone.port
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Deployment(kind, runner, url, http)
    finally:
        if standalone is not None:
            await standalone.stop(2)
        if upstream is not None:
            await upstream.aclose()
        runner.stop()
        await runner.launcher.shutdown()
        await asyncio.wait_for(task, 15)


async def wait_for(predicate: Any, within: float = 5.0) -> None:
    """Poll ``predicate()`` (sync) until true, or fail after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class CountingWatches:
    """Counts the launcher's live event watchers (to see cancellation reach it)."""

    def __init__(self, launcher: AgentLauncher) -> None:
        self.active = 0
        original = launcher.events.watch

        async def counting(session_id: str | None, after: int | None) -> AsyncIterator[Any]:
            self.active += 1
            try:
                async for event in original(session_id, after):
                    yield event
            finally:
                self.active -= 1

        launcher.events.watch = counting  # type: ignore[method-assign]
