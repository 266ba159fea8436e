"""CORS from ServeOptions, the customizable app, and the standalone command."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from agentplane.server import Runner, ServeOptions
from tests.support import serving

from .support import Agents, deploy


async def test_cors_preflight_and_simple_requests_follow_serve_options(agents: Agents) -> None:
    options = ServeOptions(
        api_token=None,
        cors_allow_origins=("https://app.example",),
        cors_allow_methods=("GET", "POST", "DELETE"),
        cors_allow_headers=("Authorization", "Content-Type"),
        cors_allow_credentials=True,
    )
    async with deploy("embedded", agents.launcher(), options) as gw:
        preflight = await gw.http.options(
            "/sessions",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        stranger = await gw.http.options(
            "/sessions",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
        assert stranger.status_code == 400
        assert "access-control-allow-origin" not in stranger.headers
        started = await gw.http.post(
            "/sessions", json={"call_id": "c"}, headers={"origin": "https://app.example"}
        )
        assert started.headers["access-control-allow-origin"] == "https://app.example"
        # Scripts may read the error table's headers.
        assert "retry-after" in started.headers["access-control-expose-headers"].lower()


async def test_default_cors_allows_no_other_origin(agents: Agents) -> None:
    # Issue 12: no wildcard unless configured (it was "*"), so a page elsewhere cannot read.
    async with deploy("embedded", agents.launcher()) as gw:
        response = await gw.http.get("/health", headers={"origin": "https://x.example"})
        assert "access-control-allow-origin" not in response.headers
    with pytest.raises(ValueError, match="explicit"):
        ServeOptions(cors_allow_origins=("*",), cors_allow_credentials=True)


async def test_a_configured_wildcard_allows_any_origin_without_credentials(
    agents: Agents,
) -> None:
    async with deploy("embedded", agents.launcher(), ServeOptions(cors_allow_origins=("*",))) as gw:
        response = await gw.http.get("/health", headers={"origin": "https://x.example"})
        assert response.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in response.headers


@asynccontextmanager
async def http_of(runner: Runner) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``runner`` as it is set up; an HTTP client for its HTTP port."""
    async with serving(runner) as served, httpx.AsyncClient(base_url=served.http_url) as http:
        yield http


async def test_runner_fast_api_can_be_extended_before_serving(agents: Agents) -> None:
    async def custom(request: Request) -> Response:
        return PlainTextResponse("custom")

    runner = Runner(agents.launcher(), ServeOptions(api_token=None))
    runner.fast_api.add_route("/custom", custom)
    async with http_of(runner) as http:
        assert (await http.get("/custom")).text == "custom"
        assert (await http.post("/sessions", json={"call_id": "c"})).status_code == 201


async def test_a_user_app_in_serve_options_is_served_as_it_is(agents: Agents) -> None:
    async def hello(request: Request) -> Response:
        return PlainTextResponse("mine")

    mine = Starlette(routes=[Route("/hello", hello)])
    runner = Runner(agents.launcher(), ServeOptions(api_token=None, fast_api=mine))
    assert runner.fast_api is mine
    async with http_of(runner) as http:
        assert (await http.get("/hello")).text == "mine"
        assert (await http.post("/sessions", json={"call_id": "c"})).status_code == 404


@pytest.fixture
async def grpc_only(agents: Agents) -> AsyncIterator[int]:
    async with serving(agents.launcher(), http=False) as served:
        yield served.grpc_port


async def test_agentplane_gateway_command_proxies_and_stops_on_sigterm(grpc_only: int) -> None:
    agentplane = os.path.join(os.path.dirname(sys.executable), "agentplane")
    proc = await asyncio.create_subprocess_exec(
        agentplane, "gateway", "--upstream", f"127.0.0.1:{grpc_only}", "--port", "0",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        port = None
        while port is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 15)).decode()
            assert line, "the gateway exited before listening"
            match = re.search(r"agentplane gateway on 127\.0\.0\.1:(\d+)", line)
            port = int(match.group(1)) if match else None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/ready")).status_code == 200
            started = await http.post("/sessions", json={"call_id": "c"})
            assert started.status_code == 201
            sid = started.json()["session_id"]
            assert (await http.delete(f"/sessions/{sid}")).json()["state"] == "SESSION_STATE_ENDED"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_standalone_gateway_reports_an_unreachable_upstream() -> None:
    from agentplane.http.app import gateway_app, session_upstream
    from agentplane.http.server import HttpServer

    upstream = session_upstream("127.0.0.1", 1, timeout=2)  # nothing listens on port 1
    server = HttpServer(gateway_app(upstream), "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert (await http.get("/ready")).status_code == 400
            response = await http.post("/sessions", json={"call_id": "c"})
            assert response.status_code == 503
            assert "unavailable" in response.json()["message"]
            events = await http.get("/events")
            assert events.status_code == 503
    finally:
        await server.stop(2)
        await upstream.aclose()


async def test_http_is_parsed_by_httptools() -> None:
    """The C parser is a dependency, not an accident of what is installed:
    with h11 the gateway spends ~40% more CPU per request (bench/)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from agentplane.http.server import HttpServer

    async def app(scope: dict[str, object], receive: object, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert (await http.get("/")).status_code == 204
            # The keep-alive connection is still open: its protocol object is uvicorn's.
            connections = server._server.server_state.connections
            assert connections and all(isinstance(c, HttpToolsProtocol) for c in connections)
    finally:
        await server.stop(2)


async def test_the_gateway_mounted_under_a_prefix_serves_its_routes_there(agents: Agents) -> None:
    """``app.mount("/agents", gateway_app(...))``, as app.py's docstring shows, over real HTTP:
    the bindings match below the mount's path (its ``root_path``), and only there."""
    from starlette.routing import Mount

    from agentplane.http.app import gateway_app
    from agentplane.http.embedded import InProcessBackend
    from agentplane.http.server import HttpServer
    from agentplane.service.api import SessionAPI
    from tests.support import open_options

    launcher = agents.launcher()
    await launcher.start()
    backend = InProcessBackend(SessionAPI(launcher, open_options().auth_policy()), launcher)
    app = Starlette(routes=[Mount("/agents", gateway_app(backend))])
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            started = await http.post("/agents/sessions", json={"call_id": "mounted"})
            assert started.status_code == 201, started.text
            session_id = started.json()["session_id"]
            got = await http.get(f"/agents/sessions/{session_id}")
            assert got.status_code == 200
            assert got.json()["call_id"] == "mounted"
            scoped = await http.get(f"/agents/calls/mounted/sessions/{session_id}?x=1")
            assert scoped.json()["session_id"] == session_id
            assert (await http.get(f"/sessions/{session_id}")).status_code == 404
            closed = await http.delete(f"/agents/sessions/{session_id}")
            assert closed.status_code == 200
    finally:
        await server.stop(2)
        await launcher.shutdown()
