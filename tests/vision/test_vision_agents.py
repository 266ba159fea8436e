"""Vision Agents agents under agentplane, through a real server: the adapter of compat/.

Real ``vision_agents.core.Agent``s (real multi-speaker filter, warm-up cache,
metrics collector and close sequence) with offline stand-in plugins
(``standins.py``), started over gRPC like any agent.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
import weakref
from typing import Any

import httpx
import pytest
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from vision_agents.core import Agent

import agentplane.clients.betterproto as bp
from agentplane.compat.vision_agents import VisionAgentsAdapter
from agentplane.server import AgentLauncher
from tests.support import FakeAgents, Served, Servers, wait_ended, wait_until

from .standins import HANDED, LOADS, VA_KEYS, Agents, LocalLLM, edge_of, join_call, pcm, stt_of

SERVICE = "agentplane.v1.SessionService"


def launcher_of(agents: Agents, **options: Any) -> AgentLauncher:
    options.setdefault("agent_idle_timeout", None)
    options.setdefault("stop_timeout", 5.0)
    options.setdefault("metrics_event_interval", 0.05)
    return AgentLauncher(agents.create_agent, join_call, **options)


def adapter_of(launcher: AgentLauncher) -> VisionAgentsAdapter:
    adapter = launcher.agent_adapter
    assert isinstance(adapter, VisionAgentsAdapter)
    return adapter


async def health(served: Served) -> int:
    reply = await HealthStub(served.channel).Check(HealthCheckRequest(service=SERVICE), timeout=5)
    status: int = reply.status
    return status


async def start(served: Served, agents: Agents, call_id: str) -> tuple[str, Agent]:
    """Start a session over gRPC; answer it and its agent, once the agent is in the call."""
    started = await served.stub.start(bp.StartRequest(call_id=call_id), timeout=10)
    agent = agents.last
    await asyncio.wait_for(edge_of(agent).joined.wait(), 5)
    return started.session_id, agent


async def test_warm_up_once_at_start_up_before_ready_then_cached_per_session(
    agents: Agents, serve: Servers
) -> None:
    LocalLLM.gate = asyncio.Event()  # the LLM's load is a slow download
    launcher = launcher_of(agents)
    served = await serve(launcher, start=False)
    adapter = adapter_of(launcher)

    # One agent is created and warmed while the server says it is not ready yet.
    await wait_until(lambda: LOADS["llm"] == 1)
    assert await health(served) == HealthCheckResponse.NOT_SERVING
    assert not launcher.accepting
    assert len(agents.made) == 1

    LocalLLM.gate.set()
    await wait_until(lambda: launcher.accepting)
    assert await health(served) == HealthCheckResponse.SERVING
    warm_up_agent = agents.made[0]
    assert warm_up_agent.closed  # warmed, then closed, as Vision Agents' launcher does
    assert dict(LOADS) == {"llm": 1, "stt": 1}
    assert warm_up_agent._multi_speaker_filter._vad_session is not None  # type: ignore[attr-defined]

    # Each session's agent is warmed before join_call, from the shared cache:
    # every part gets the resource, nothing is loaded again.
    for n in (1, 2):
        _, agent = await start(served, agents, f"call-{n}")
        assert agent._multi_speaker_filter._vad_session is not None  # type: ignore[attr-defined]
        assert dict(HANDED) == {"llm": 1 + n, "stt": 1 + n}
    assert dict(LOADS) == {"llm": 1, "stt": 1}
    assert adapter.warmups == 3
    assert adapter.last_warmup_seconds < 1.0  # cached: no model is loaded again


async def test_the_multi_speaker_filter_works_from_the_first_audio(
    agents: Agents, serve: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve(launcher_of(agents))
    sid, agent = await start(served, agents, "two-speakers")
    edge = edge_of(agent)
    alice = edge.join_participant("alice")
    bob = edge.join_participant("bob")

    caplog.set_level(logging.ERROR)
    for _ in range(3):
        edge.speak(alice, pcm(0.8))
        edge.speak(bob, pcm(0.8))
    # Alice spoke first: the filter locked onto her and drops Bob.
    await wait_until(lambda: len(stt_of(agent).heard) >= 3)
    assert set(stt_of(agent).heard) == {"alice"}
    assert agent._multi_speaker_filter.active_speaker_id == alice.id  # type: ignore[attr-defined]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    state = await served.stub.get(bp.GetRequest(session_id=sid), timeout=5)
    assert state.session.state == bp.SessionState.RUNNING


async def test_idle_timeout_asks_the_agents_idle_for(agents: Agents, serve: Servers) -> None:
    timeout = 0.3
    launcher = launcher_of(agents, agent_idle_timeout=timeout)
    served = await serve(launcher)
    sid, agent = await start(served, agents, "idle")
    edge = edge_of(agent)
    edge.join_participant("alice")
    present_since = time.time()

    # Someone is on the call (for Vision Agents; nobody reported it to agentplane):
    # the session outlives its idle timeout.
    await wait_until(lambda: time.time() - present_since > 3 * timeout)
    assert agent.idle_for() == 0.0
    assert (await launcher.get_session(sid)).state.name == "RUNNING"

    edge.leave("alice")
    left_at = time.time()
    record = await wait_ended(launcher, sid)
    assert record.end_reason is not None and record.end_reason.name == "IDLE_TIMEOUT"
    assert record.ended_at is not None and record.ended_at - left_at >= timeout - 0.05


async def test_collector_metrics_live_in_events_and_the_metrics_rpc(
    agents: Agents, serve: Servers
) -> None:
    served = await serve(launcher_of(agents), http=True)
    sid, agent = await start(served, agents, "metrics")
    edge = edge_of(agent)
    alice = edge.join_participant("alice")

    stream = served.stub.stream_events(
        bp.StreamEventsRequest(session_id=sid, after_cursor=0), timeout=10
    )
    updates: list[dict[str, float]] = []

    async def read_until_stt_figures() -> None:
        async for event in stream:
            if event.metrics_updated is not None:
                updates.append(dict(event.metrics_updated.metrics))
                if updates[-1].get("stt_audio_duration_ms__total", 0) >= 80:
                    return

    reader = asyncio.create_task(read_until_stt_figures())
    # Nothing reported through agentplane's session context: the figures come
    # from the agent's own collector, while this stream watches.
    edge.speak(alice, pcm(0.8))
    edge.speak(alice, pcm(0.8))
    await asyncio.wait_for(reader, 10)
    await stream.aclose()

    live = updates[-1]
    assert set(live) == VA_KEYS
    assert live["stt_latency_ms__avg"] == 12.5
    assert live["stt_audio_duration_ms__total"] == 80
    assert math.isnan(live["tts_latency_ms__avg"])  # no value yet: NaN, not 0, not missing
    assert live["llm_input_tokens__total"] == 0  # a counter that counted nothing: 0

    reply = await served.stub.metrics(bp.MetricsRequest(session_id=sid), timeout=5)
    assert set(reply.metrics) == VA_KEYS
    no_value = {key for key, value in reply.metrics.items() if math.isnan(value)}
    assert no_value == {k for k in VA_KEYS if k.endswith("__avg")} - {"stt_latency_ms__avg"}
    counters = [value for key, value in reply.metrics.items() if key.endswith("__total")]
    assert all(float(value).is_integer() for value in counters)

    async with httpx.AsyncClient(base_url=served.http_url, timeout=10) as http:
        body = (await http.get(f"/sessions/{sid}/metrics")).json()
    assert body["metrics"]["tts_latency_ms__avg"] == "NaN"  # protobuf JSON's NaN
    assert body["metrics"]["stt_latency_ms__avg"] == 12.5


def pending_tasks_of(agent: Agent) -> list[str]:
    """The unfinished tasks running a method of ``agent`` or of its event managers."""
    owners = (agent, agent.events, agent.edge.events)
    names = []
    for task in asyncio.all_tasks():
        if task.done() or task is asyncio.current_task():
            continue  # (reading the test's own locals would keep the agent alive)
        frame = getattr(task.get_coro(), "cr_frame", None)
        owner = frame.f_locals.get("self") if frame is not None else None
        if any(owner is o for o in owners):
            names.append(task.get_name())
    return names


async def test_a_call_that_ends_by_itself_logs_no_error_and_leaves_no_task(
    agents: Agents, serve: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    launcher = launcher_of(agents)
    served = await serve(launcher)
    sid, agent = await start(served, agents, "ends")
    caplog.set_level(logging.WARNING)

    edge_of(agent).end_call()  # the call ends (everyone hung up)
    record = await wait_ended(launcher, sid)
    assert record.end_reason is not None and record.end_reason.name == "COMPLETED"
    closed = agent.closed

    pending = pending_tasks_of(agent)

    # Once nothing refers to the agent, a full collection finds nothing of it
    # to destroy pending (without the fix: its two self-close tasks, logged at ERROR).
    gone = weakref.ref(agent)
    del agent
    agents.made.clear()

    def collected() -> bool:
        gc.collect()
        return gone() is None

    await wait_until(collected)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == []
    assert pending == []
    assert closed  # its own close completed: every component closed
    assert adapter_of(launcher).held_tasks == 0


async def test_an_agent_that_is_not_a_vision_agent_is_served_as_before(
    serve: Servers,
) -> None:
    factory = FakeAgents()
    launcher = factory.launcher(agent_idle_timeout=None, stop_timeout=1.0)
    served = await serve(launcher)
    adapter = adapter_of(launcher)  # vision_agents is imported in this process

    # Its create_agent does not come from Vision Agents code: no start-up agent.
    assert not adapter.warm_at_startup
    assert factory.agents == []
    started = await served.stub.start(bp.StartRequest(call_id="plain"), timeout=5)
    context = await factory.context(started.session_id)
    context.add("llm_output_tokens", 3)
    reply = await served.stub.metrics(bp.MetricsRequest(session_id=started.session_id), timeout=5)
    assert dict(reply.metrics) == {"llm_output_tokens__total": 3.0}
    assert adapter.warmups == 0

    await served.stub.close(bp.CloseRequest(session_id=started.session_id), timeout=5)
    assert [agent.close_calls for agent in factory.agents] == [1]
