"""Nothing accumulates: tasks, live sessions, retained records; idle sessions cost no CPU."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentplane.core import AgentStartFailed, EndReason, SessionState
from agentplane.core.timers import SessionTimer, session_timers
from tests.support import FakeAgent, FakeAgents, VirtualClockLoop, settle, wait_until

from .conftest import MakeLauncher

CYCLES = 2_000
IDLE_SESSIONS = 2_000


async def _wait_for_tasks(count: int) -> None:
    await wait_until(lambda: len(asyncio.all_tasks()) <= count, timeout=2)


@pytest.mark.slow
async def test_start_close_cycles_leave_nothing_behind(make_launcher: MakeLauncher) -> None:
    retained = 100
    launcher = await make_launcher(
        max_concurrent_sessions=1,  # every cycle must really free its slot
        max_sessions_per_call=1,
        permits_per_minute=None,
        session_retention_seconds=60,
        max_retained_sessions=retained,
    )
    baseline = len(asyncio.all_tasks())
    registry: Any = launcher._registry

    for i in range(CYCLES):
        record = await launcher.start_session(
            "call", metadata={"n": i}, idempotency_key=f"key-{i}", created_by="user"
        )
        closed = await launcher.close_session(record.session_id)
        assert closed.end_reason is EndReason.CLOSED_BY_REQUEST
        assert len(launcher._retention) <= retained
    await settle()
    await _wait_for_tasks(baseline)

    assert len(asyncio.all_tasks()) == baseline
    assert launcher._live == {}
    assert len(launcher._enders) == 0
    assert launcher.abandoned_tasks == 0
    assert len(launcher._retention) == retained
    assert len(registry) == retained
    assert len(registry._by_key) == retained
    assert registry._admitted == set()
    assert not registry._per_call
    assert len(launcher.events._sessions) == retained
    assert launcher.events._wakeups == {}
    assert launcher.events._live == {}
    stats = launcher.stats()
    assert stats.in_flight == 0
    assert stats.started == CYCLES
    assert stats.ended_by_reason == {"CLOSED_BY_REQUEST": CYCLES}


@pytest.mark.slow
async def test_registry_is_empty_after_retention(
    make_launcher: MakeLauncher, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(session_retention_seconds=0.1, max_retained_sessions=10_000)
    baseline = len(asyncio.all_tasks())
    registry: Any = launcher._registry
    ids = []
    for i in range(300):
        record = await launcher.start_session(f"call-{i % 7}", idempotency_key=f"k{i}")
        ids.append(record.session_id)
        if i % 2:
            await launcher.close_session(record.session_id)
        else:
            launcher._live[record.session_id].agent.release.set()  # completes by itself
    await clock.settle()  # the released agents finish: no time passes
    assert launcher.stats().in_flight == 0
    assert len(registry) > 0

    await clock.advance(0.1)  # the retention window of the last of them
    assert len(registry) == 0
    assert len(launcher._retention) == 0
    assert registry._by_key == {}
    assert registry._admitted == set()
    assert launcher.events._sessions == {}
    assert launcher._live == {}
    assert len(asyncio.all_tasks()) == baseline
    assert launcher._retention._timer is None  # nothing left to expire: no timer either


async def test_failed_starts_leave_nothing_behind(make_launcher: MakeLauncher) -> None:
    factory = FakeAgents(errors=[RuntimeError(f"fail {i}") for i in range(200)])
    # The texts tell the 200 failures apart.
    launcher = await make_launcher(factory, max_concurrent_sessions=1, expose_error_details=True)
    baseline = len(asyncio.all_tasks())
    for i in range(200):
        with pytest.raises(AgentStartFailed, match=f"fail {i}"):
            await launcher.start_session("call", idempotency_key=f"k{i}")
    await settle()
    assert len(asyncio.all_tasks()) == baseline
    assert launcher._live == {}
    assert len(launcher._registry) == 0
    assert len(launcher._retention) == 0
    assert launcher.events.last_cursor == 0


class _CallbackCounter:
    """Counts every callback the event loop runs (timers, task steps, call_soon)."""

    def __init__(self) -> None:
        self.count = 0
        self._original = asyncio.events.Handle._run

    def __enter__(self) -> _CallbackCounter:
        original = self._original
        counter = self

        def counting_run(handle: asyncio.Handle) -> None:
            counter.count += 1
            original(handle)

        asyncio.events.Handle._run = counting_run  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._original  # type: ignore[method-assign]


@pytest.mark.slow
async def test_idle_sessions_cost_no_periodic_work(
    make_launcher: MakeLauncher, clock: VirtualClockLoop
) -> None:
    loop = asyncio.get_running_loop()
    launcher = await make_launcher(FakeAgent, agent_idle_timeout=60.0)
    assert not hasattr(FakeAgent, "idle_for")  # presence-based idle tracking
    baseline_scheduled = len(loop._scheduled)  # type: ignore[attr-defined]

    records = await asyncio.gather(*(launcher.start_session(f"c{i}") for i in range(IDLE_SESSIONS)))
    await settle()
    assert all(r.state is SessionState.RUNNING for r in records)
    assert len(launcher._live) == IDLE_SESSIONS

    # One idle timer per session, due at the idle timeout: nothing else is armed.
    now = loop.time()
    for live in launcher._live.values():
        assert isinstance(live.idle_timer, SessionTimer)
        assert not live.idle_timer.cancelled()
        assert live.idle_timer.when() >= now + 50  # due at the idle timeout, not sooner
        assert live.max_duration_timer is None
        assert live.metrics_timer is None
    # Held in the sessions' own timer heap (core/timers.py); the loop holds one for all.
    timers = len(session_timers(loop))
    assert timers == IDLE_SESSIONS
    scheduled = len(loop._scheduled)  # type: ignore[attr-defined]
    assert scheduled - baseline_scheduled <= 5
    tasks = len(asyncio.all_tasks())

    # Half a minute of quiet: the loop runs (almost) no callbacks at all, not one per session.
    with _CallbackCounter() as counter:
        await clock.advance(30)
    assert counter.count < 20, counter.count

    assert len(loop._scheduled) == scheduled  # type: ignore[attr-defined]
    assert len(session_timers(loop)) == timers
    assert len(asyncio.all_tasks()) == tasks
    assert all(live.idle_timer is not None for live in launcher._live.values())

    # People on the call: the idle timers go away (nothing is left to check).
    for live in launcher._live.values():
        assert live.task is not None
    contexts = [agent.session for agent in _agents(launcher)]
    for context in contexts:
        assert context is not None
        context.participant_joined("user")
    assert all(live.idle_timer is None for live in launcher._live.values())

    await launcher.shutdown()
    assert launcher.stats().ended_by_reason == {"SHUTDOWN": IDLE_SESSIONS}


def _agents(launcher: Any) -> list[FakeAgent]:
    return [live.agent for live in launcher._live.values()]
