"""Readiness listeners, operator stats and hooks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from agentplane.core import (
    AdmissionRejected,
    AgentStartFailed,
    EndReason,
    SessionRecord,
    SessionState,
)
from tests.support import FakeAgents, VirtualClockLoop, joined, wait_ended, wait_until

from .conftest import MakeLauncher


async def test_accepting_listener_follows_capacity_and_drain(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher(max_concurrent_sessions=2)
    seen: list[bool] = []
    launcher.add_accepting_listener(seen.append)
    assert seen == [True]

    a = await launcher.start_session("a")
    assert seen == [True]  # one slot left
    b = await launcher.start_session("b")
    assert seen == [True, False]  # full
    with pytest.raises(AdmissionRejected):
        await launcher.start_session("c")
    assert seen == [True, False]

    await launcher.close_session(a.session_id)
    assert seen == [True, False, True]  # a slot freed
    await launcher.start_session("d")
    assert seen == [True, False, True, False]
    factory.agents[1].release.set()  # b completes by itself
    await wait_ended(launcher, b.session_id)
    assert seen == [True, False, True, False, True]

    await launcher.drain(timeout=0.05)
    assert seen == [True, False, True, False, True, False]
    assert not launcher.accepting


async def test_accepting_listener_sees_starts_in_flight(make_launcher: MakeLauncher) -> None:
    gate = asyncio.Event()
    factory = FakeAgents(gate=gate)
    launcher = await make_launcher(factory, max_concurrent_sessions=1)
    seen: list[bool] = []
    launcher.add_accepting_listener(seen.append)
    start = asyncio.create_task(launcher.start_session("a"))
    await wait_until(lambda: factory.creating == 1)
    assert seen == [True, False]  # full while the agent is created
    gate.set()
    await start
    assert seen == [True, False]


async def test_accepting_listener_during_a_failed_start(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher(
        FakeAgents(errors=[RuntimeError("x")]), max_concurrent_sessions=1
    )
    seen: list[bool] = []
    launcher.add_accepting_listener(seen.append)
    with pytest.raises(AgentStartFailed, match="RuntimeError"):
        await launcher.start_session("a")
    assert seen == [True, False, True]


async def test_accepting_listener_and_warmup(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher(start=False, warmup=lambda: None)
    seen: list[bool] = []
    launcher.add_accepting_listener(seen.append)
    assert seen == [False]
    await launcher.start()
    assert seen == [False, True]


async def test_accepting_listener_is_told_only_of_changes(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher(start=False)  # no warmup: accepting from the start
    seen: list[bool] = []
    launcher.add_accepting_listener(seen.append)
    assert seen == [True]
    await launcher.start()
    record = await launcher.start_session("a")  # unlimited: still accepting
    await launcher.close_session(record.session_id)
    assert seen == [True]
    await launcher.shutdown()
    assert seen == [True, False]


async def test_every_listener_is_told(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher(max_concurrent_sessions=1)
    first: list[bool] = []
    second: list[bool] = []
    launcher.add_accepting_listener(first.append)
    await launcher.start_session("a")
    launcher.add_accepting_listener(second.append)
    await launcher.shutdown()
    # Shutdown ends the session, but draining keeps the launcher refusing: no flip.
    assert first == [True, False]
    assert second == [False]


async def test_stats(make_launcher: MakeLauncher, factory: FakeAgents) -> None:
    launcher = await make_launcher(max_concurrent_sessions=2)
    stats = launcher.stats()
    assert stats.in_flight == 0
    assert stats.capacity == 2
    assert not stats.draining
    assert (stats.started, stats.completed, stats.failed) == (0, 0, 0)
    assert stats.ended_by_reason == {}
    assert stats.rejected_by_reason == {}
    assert stats.mean_duration_seconds is None

    a = await launcher.start_session("a")
    agent_a = factory.last
    b = await launcher.start_session("b")
    agent_b = factory.last
    with pytest.raises(AdmissionRejected):
        await launcher.start_session("c")
    assert launcher.stats().in_flight == 2
    assert launcher.stats().started == 2
    assert launcher.stats().rejected_by_reason == {"MAX_CONCURRENT_SESSIONS": 1}

    await joined(agent_a)
    # a runs 0.05 s at least, on the clock records use (the wall clock).
    await wait_until(lambda: time.time() - a.started_at >= 0.05)
    agent_a.release.set()  # completes
    agent_b.error = RuntimeError("lost the call")
    await joined(agent_b)
    agent_b.release.set()  # fails
    ended_a = await wait_ended(launcher, a.session_id)
    ended_b = await wait_ended(launcher, b.session_id)
    d = await launcher.start_session("d")
    ended_d = await launcher.close_session(d.session_id)

    stats = launcher.stats()
    assert stats.in_flight == 0
    assert stats.started == 3
    assert stats.completed == 2  # COMPLETED and CLOSED_BY_REQUEST
    assert stats.failed == 1
    assert stats.ended_by_reason == {"COMPLETED": 1, "ERROR": 1, "CLOSED_BY_REQUEST": 1}
    assert stats.rejected_by_reason == {"MAX_CONCURRENT_SESSIONS": 1}
    durations = [(r.ended_at or 0.0) - r.started_at for r in (ended_a, ended_b, ended_d)]
    assert stats.mean_duration_seconds == pytest.approx(sum(durations) / 3)
    assert stats.mean_duration_seconds is not None and stats.mean_duration_seconds >= 0.05 / 3

    await launcher.shutdown()
    assert launcher.stats().draining
    assert launcher.stats().capacity == 2


async def test_stats_capacity_unlimited(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher()
    assert launcher.stats().capacity is None
    assert launcher.accepting


class RecordingHooks:
    def __init__(self) -> None:
        self.started: list[tuple[str, float]] = []
        self.ended: list[tuple[str, EndReason | None]] = []
        self.rejected: list[str] = []

    def session_started(self, record: SessionRecord, start_seconds: float) -> None:
        self.started.append((record.session_id, start_seconds))

    def session_ended(self, record: SessionRecord) -> None:
        self.ended.append((record.session_id, record.end_reason))

    def admission_rejected(self, reason: str) -> None:
        self.rejected.append(reason)


async def test_hooks_observe_the_lifecycle(
    make_launcher: MakeLauncher, clock: VirtualClockLoop
) -> None:
    hooks = RecordingHooks()
    launcher = await make_launcher(FakeAgents(delay=0.05), max_sessions_per_call=1, hooks=[hooks])
    start = asyncio.create_task(launcher.start_session("call"))
    await clock.advance(0.05)
    record = await start
    with pytest.raises(AdmissionRejected):
        await launcher.start_session("call")
    await launcher.close_session(record.session_id)
    assert len(hooks.started) == 1
    assert hooks.started[0][0] == record.session_id
    assert hooks.started[0][1] == pytest.approx(0.05)  # the time create_agent took
    assert hooks.ended == [(record.session_id, EndReason.CLOSED_BY_REQUEST)]
    assert hooks.rejected == ["MAX_SESSIONS_PER_CALL"]


async def test_stats_are_a_snapshot(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher()
    stats: Any = launcher.stats()
    record = await launcher.start_session("a")
    await launcher.close_session(record.session_id)
    assert stats.in_flight == 0
    assert stats.ended_by_reason == {}


class RaisingHooks:
    def session_started(self, record: SessionRecord, start_seconds: float) -> None:
        raise RuntimeError("started hook broken")

    def session_ended(self, record: SessionRecord) -> None:
        raise RuntimeError("ended hook broken")

    def admission_rejected(self, reason: str) -> None:
        raise RuntimeError("rejected hook broken")


async def test_a_raising_hook_breaks_nothing(
    make_launcher: MakeLauncher, caplog: pytest.LogCaptureFixture
) -> None:
    good = RecordingHooks()
    launcher = await make_launcher(max_concurrent_sessions=1, hooks=[RaisingHooks(), good])
    record = await launcher.start_session("call")
    assert record.state is SessionState.RUNNING
    with pytest.raises(AdmissionRejected):
        await launcher.start_session("call")
    closed = await asyncio.wait_for(launcher.close_session(record.session_id), 2)
    assert closed.end_reason is EndReason.CLOSED_BY_REQUEST
    # The other observers still heard of everything, and the slot is free again.
    assert [s for s, _ in good.started] == [record.session_id]
    assert good.ended == [(record.session_id, EndReason.CLOSED_BY_REQUEST)]
    assert good.rejected == ["MAX_CONCURRENT_SESSIONS"]
    assert launcher.stats().in_flight == 0
    broken = {r.getMessage() for r in caplog.records if r.exc_info is not None}
    assert broken == {
        "hook RaisingHooks.session_started() raised",
        "hook RaisingHooks.admission_rejected() raised",
        "hook RaisingHooks.session_ended() raised",
    }
    await launcher.start_session("call")


async def test_a_raising_accepting_listener_breaks_nothing(
    make_launcher: MakeLauncher, caplog: pytest.LogCaptureFixture
) -> None:
    launcher = await make_launcher(max_concurrent_sessions=1)
    seen: list[bool] = []

    def broken(accepting: bool) -> None:
        if not accepting:
            raise RuntimeError("health servicer broken")

    launcher.add_accepting_listener(broken)
    launcher.add_accepting_listener(seen.append)
    record = await launcher.start_session("call")
    assert record.state is SessionState.RUNNING
    closed = await asyncio.wait_for(launcher.close_session(record.session_id), 2)
    assert closed.end_reason is EndReason.CLOSED_BY_REQUEST
    assert seen == [True, False, True]
    assert launcher.stats().in_flight == 0
    assert any("listener" in r.getMessage() for r in caplog.records)
