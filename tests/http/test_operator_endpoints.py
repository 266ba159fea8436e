"""The HTTP operator endpoints of a real Runner: /health, /ready, /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from agentplane.core import AdmissionRejected, AgentStartFailed
from agentplane.server import Runner, ServeOptions
from tests.support import FakeAgents, serving, wait_until


@pytest.fixture
async def served() -> AsyncIterator[tuple[Runner, httpx.AsyncClient]]:
    launcher = FakeAgents().launcher(max_concurrent_sessions=1, drain_timeout=5)
    async with (
        serving(launcher, ServeOptions(api_token=None)) as served,
        httpx.AsyncClient(base_url=served.http_url) as client,
    ):
        yield served.runner, client  # a drain a test left running ends with the block


def _sample(body: str, name: str) -> float:
    for line in body.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in exposition")


async def test_health_and_ready_follow_capacity_and_drain(
    served: tuple[Runner, httpx.AsyncClient],
) -> None:
    runner, client = served
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/ready")).status_code == 200
    session = await runner.launcher.start_session("call-1")
    # At capacity (max_concurrent_sessions=1): not ready for another Start.
    assert (await client.get("/ready")).status_code == 400
    await runner.launcher.close_session(session.session_id)
    assert (await client.get("/ready")).status_code == 200
    await runner.launcher.start_session("call-2")  # keeps the drain below going
    runner.stop()  # begins the drain: readiness drops at once, liveness stays
    await wait_until(lambda: runner.launcher.draining)
    assert (await client.get("/ready")).status_code == 400
    assert (await client.get("/health")).status_code == 200


async def test_prometheus_metrics_count_sessions(served: tuple[Runner, httpx.AsyncClient]) -> None:
    runner, client = served
    session = await runner.launcher.start_session("call-1")
    with pytest.raises(AdmissionRejected):
        await runner.launcher.start_session("call-2")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    assert _sample(body, "agentplane_active_sessions") == 1
    assert _sample(body, "agentplane_accepting_sessions") == 0
    assert _sample(body, "agentplane_sessions_started_total") == 1
    assert (
        _sample(body, 'agentplane_admission_rejections_total{reason="MAX_CONCURRENT_SESSIONS"}')
        == 1
    )
    assert _sample(body, "agentplane_session_start_seconds_count") == 1

    await runner.launcher.close_session(session.session_id)
    body = (await client.get("/metrics")).text
    assert _sample(body, "agentplane_active_sessions") == 0
    assert _sample(body, 'agentplane_sessions_ended_total{reason="CLOSED_BY_REQUEST"}') == 1


async def test_http_port_in_use_is_a_clear_error() -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    runner = Runner(FakeAgents().launcher(), ServeOptions(api_token=None))
    try:
        with pytest.raises(RuntimeError, match=str(port)):
            await asyncio.wait_for(runner.serve(host="127.0.0.1", grpc_port=0, http_port=port), 15)
    finally:
        blocker.close()
        await blocker.wait_closed()


async def test_starts_in_progress_failures_drain_and_the_process_series() -> None:
    gate = asyncio.Event()
    agents = FakeAgents(gate=gate, errors=[RuntimeError("no model")])
    launcher = agents.launcher(drain_timeout=5)
    async with (
        serving(launcher, ServeOptions(api_token=None)) as served,
        httpx.AsyncClient(base_url=served.http_url) as client,
    ):
        body = (await client.get("/metrics")).text
        assert _sample(body, "agentplane_sessions_starting") == 0
        assert _sample(body, "agentplane_session_start_failures_total") == 0
        assert _sample(body, "agentplane_draining") == 0
        assert _sample(body, "agentplane_admission_held") == 0
        # The process, the platform and the collector, next to agentplane's own GC pauses.
        assert _sample(body, "process_open_fds") > 0
        assert _sample(body, "process_max_fds") > 0
        assert _sample(body, "process_resident_memory_bytes") > 0
        assert _sample(body, "process_cpu_seconds_total") >= 0
        assert 'python_info{implementation="CPython"' in body
        assert 'python_gc_collections_total{generation="0"}' in body
        assert "# TYPE agentplane_gc_pause_seconds histogram" in body

        failing = asyncio.create_task(launcher.start_session("c1"))  # the gate holds it
        await wait_until(lambda: agents.creating == 1)
        body = (await client.get("/metrics")).text
        assert _sample(body, "agentplane_sessions_starting") == 1
        assert _sample(body, "agentplane_active_sessions") == 1  # starting ones count
        gate.set()
        with pytest.raises(AgentStartFailed):
            await failing
        body = (await client.get("/metrics")).text
        assert _sample(body, "agentplane_sessions_starting") == 0
        assert _sample(body, "agentplane_session_start_failures_total") == 1

        launcher.hold_admission("CLUSTER_UNAVAILABLE", "no Redis")
        assert _sample((await client.get("/metrics")).text, "agentplane_admission_held") == 1
        launcher.hold_admission(None)
        # A running session keeps the drain (and so the HTTP port) going while /metrics is read.
        await launcher.start_session("c2")
        served.runner.stop()
        await wait_until(lambda: launcher.draining)
        assert _sample((await client.get("/metrics")).text, "agentplane_draining") == 1
