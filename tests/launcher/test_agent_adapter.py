"""The agent-adapter extension point of the core (``agentplane.core.agent``), with a fake adapter.

Vision Agents' adapter is tested against the real package in tests/vision/.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest

from agentplane.core import AgentLauncher, AgentStartFailed, EndReason, EventKind, NotReady
from tests.support import (
    FakeAgent,
    FakeAgents,
    VirtualClockLoop,
    collect,
    joined,
    settle,
    wait_until,
)

from .conftest import MakeLauncher


class Adapted:
    """What the fake adapter answers for agents it takes on."""

    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent
        self.idle = 0.0
        self.values: dict[str, float | None] = {"calls__total": 0, "latency_ms__avg": None}
        self.closed = 0

    def idle_for(self) -> float:
        return self.idle

    def metrics(self) -> Mapping[str, float | None]:
        return dict(self.values)

    async def close(self) -> None:
        self.closed += 1


class Adapter:
    """Takes on agents whose metadata say ``family="ours"``; records every call."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.startup_gate: asyncio.Event | None = None
        self.startup_error: Exception | None = None
        self.prepare_gate: asyncio.Event | None = None
        self.prepare_error: Exception | None = None
        self.adapted: list[Adapted] = []

    async def startup(self, create_agent: Callable[[], Awaitable[Any]]) -> None:
        agent = await create_agent()
        self.started.append(agent)
        if self.startup_gate is not None:
            await self.startup_gate.wait()
        if self.startup_error is not None:
            raise self.startup_error
        agent.close()

    async def prepare(self, agent: Any) -> Adapted | None:
        if self.prepare_gate is not None:
            await self.prepare_gate.wait()
        if self.prepare_error is not None:
            raise self.prepare_error
        if agent.metadata.get("family") != "ours":
            return None
        self.adapted.append(Adapted(agent))
        return self.adapted[-1]


async def test_startup_runs_before_the_launcher_is_ready(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    adapter = Adapter()
    adapter.startup_gate = asyncio.Event()
    launcher = await make_launcher(start=False, agent_adapter=adapter)
    assert not launcher.accepting
    starting = asyncio.create_task(launcher.start())
    await wait_until(lambda: len(adapter.started) == 1)
    assert not launcher.accepting
    with pytest.raises(NotReady):
        await launcher.start_session("early")
    adapter.startup_gate.set()
    await starting
    assert launcher.accepting
    assert factory.agents[0].metadata == {}  # made with no metadata
    assert factory.agents[0].closed
    with pytest.raises(RuntimeError, match="before the launcher starts"):
        launcher.agent_adapter = None


async def test_a_failed_or_stuck_startup_fails_start(make_launcher: MakeLauncher) -> None:
    failing = Adapter()
    failing.startup_error = OSError("no model")
    launcher = await make_launcher(start=False, agent_adapter=failing)
    with pytest.raises(AgentStartFailed, match="OSError: no model"):
        await launcher.start()
    assert not launcher.accepting

    stuck = Adapter()
    stuck.startup_gate = asyncio.Event()
    launcher = await make_launcher(start=False, agent_adapter=stuck, adapter_startup_timeout=0.05)
    with pytest.raises(AgentStartFailed, match=r"within 0\.05 s"):
        await launcher.start()
    assert not launcher.accepting


async def test_an_agent_the_adapter_declines_keeps_the_plain_contract(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    adapter = Adapter()
    launcher = await make_launcher(agent_adapter=adapter)
    record = await launcher.start_session("plain")
    session = await joined(factory.last)
    session.add("tokens", 2)
    _, metrics = await launcher.get_metrics(record.session_id)
    assert metrics == {"tokens__total": 2.0}
    await launcher.close_session(record.session_id)
    assert factory.last.close_calls == 1
    assert adapter.adapted == []


async def test_an_adapted_agent_is_asked_through_its_adapter(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    adapter = Adapter()
    launcher = await make_launcher(agent_adapter=adapter)
    record = await launcher.start_session("ours", metadata={"family": "ours"})
    adapted = adapter.adapted[0]
    await joined(factory.last)

    adapted.values = {"calls__total": 3, "latency_ms__avg": None, "ratio": 0.5}
    _, metrics = await launcher.get_metrics(record.session_id)
    assert set(metrics) == {"calls__total", "latency_ms__avg", "ratio"}
    assert metrics["calls__total"] == 3 and isinstance(metrics["calls__total"], int)
    assert math.isnan(metrics["latency_ms__avg"])  # no value yet
    assert metrics["ratio"] == 0.5

    ended = await asyncio.wait_for(launcher.close_session(record.session_id), 5)
    assert ended.end_reason is EndReason.CLOSED_BY_REQUEST
    assert ended.final_metrics is not None and ended.final_metrics["calls__total"] == 3
    assert adapted.closed == 1
    assert factory.last.close_calls == 0  # closed the adapter's way, not probed


async def test_idle_timeout_follows_the_adapted_idle_for(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    adapter = Adapter()
    launcher = await make_launcher(agent_adapter=adapter, agent_idle_timeout=0.1)
    record = await launcher.start_session("ours", metadata={"family": "ours"})
    adapter.adapted[0].idle = 0.2
    await wait_until(
        lambda: launcher.stats().in_flight == 0, what="the session to end by its idle timeout"
    )
    ended = await launcher.get_session(record.session_id)
    assert ended.end_reason is EndReason.IDLE_TIMEOUT


@pytest.mark.parametrize("failure", ["raises", "too slow"])
async def test_a_failed_prepare_fails_the_start_and_closes_the_agent(
    make_launcher: MakeLauncher, factory: FakeAgents, failure: str
) -> None:
    adapter = Adapter()
    if failure == "raises":
        adapter.prepare_error = ValueError("bad agent")
    else:
        adapter.prepare_gate = asyncio.Event()  # never set: bounded by create_agent_timeout
    launcher = await make_launcher(agent_adapter=adapter, create_agent_timeout=0.1)
    with pytest.raises(AgentStartFailed):
        await launcher.start_session("doomed", metadata={"family": "ours"})
    await wait_until(lambda: factory.last.closed)
    assert launcher.stats().in_flight == 0
    assert launcher.accepting


async def test_collector_figures_reach_watchers_only(
    make_launcher: MakeLauncher, factory: FakeAgents, clock: VirtualClockLoop
) -> None:
    adapter = Adapter()
    launcher = await make_launcher(agent_adapter=adapter, metrics_event_interval=0.5)
    record = await launcher.start_session("ours", metadata={"family": "ours"})
    sid = record.session_id
    adapted = adapter.adapted[0]

    adapted.values = {"calls__total": 1, "latency_ms__avg": None}
    await clock.advance(2.0)  # nobody watches: the collector is not even read
    history = await collect(launcher.events.watch(sid, 0), limit=1)
    assert [e.kind for e in history] == [EventKind.STARTED]

    watched = asyncio.create_task(
        collect(launcher.events.watch(sid, 0), until=lambda e: e.kind is EventKind.METRICS_UPDATED)
    )
    await settle()
    assert launcher.events.watched(sid)
    await clock.advance(0.5)
    await settle()
    events = watched.result()
    update = events[-1].payload["metrics"]
    assert update["calls__total"] == 1 and math.isnan(update["latency_ms__avg"])
    assert not launcher.events.watched(sid)


def test_the_adapter_options_are_checked() -> None:
    with pytest.raises(ValueError, match="adapter_startup_timeout"):
        AgentLauncher(FakeAgents(), FakeAgents().join_call, adapter_startup_timeout=0)
