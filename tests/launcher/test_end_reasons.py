"""Every way a session ends, and the reason it reports."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentplane.core import (
    AgentStartFailed,
    Draining,
    EndReason,
    EventKind,
    SessionNotFound,
    SessionState,
    current_session,
)
from tests.support import (
    FakeAgent,
    FakeAgents,
    VirtualClockLoop,
    joined,
    settle,
    wait_ended,
    wait_until,
)

from .conftest import MakeLauncher


async def test_completed_when_join_call_returns(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    record = await launcher.start_session("call")
    await joined(factory.last)
    factory.last.release.set()
    ended = await wait_ended(launcher, record.session_id)
    assert ended.end_reason is EndReason.COMPLETED
    assert ended.error_message == ""
    assert not factory.last.cancelled
    assert launcher.stats().completed == 1


async def test_closed_by_request_and_closing_again_is_idempotent(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    record = await launcher.start_session("call")
    await joined(factory.last)

    first = await launcher.close_session(record.session_id)
    assert first.session_id == record.session_id
    assert first.state is SessionState.ENDED
    assert first.end_reason is EndReason.CLOSED_BY_REQUEST
    assert first.ended_at is not None and first.ended_at >= first.started_at
    assert factory.last.cancelled  # join_call was cancelled

    second = await launcher.close_session(record.session_id)
    assert second == first
    assert await launcher.get_session(record.session_id) == first
    assert launcher.stats().ended_by_reason == {"CLOSED_BY_REQUEST": 1}
    assert factory.last.close_calls == 1


async def test_concurrent_closes_answer_the_same_record(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    record = await launcher.start_session("call")
    results = await asyncio.gather(*(launcher.close_session(record.session_id) for _ in range(5)))
    assert all(r == results[0] for r in results)
    assert results[0].end_reason is EndReason.CLOSED_BY_REQUEST
    assert launcher.stats().ended_by_reason == {"CLOSED_BY_REQUEST": 1}
    assert factory.last.close_calls == 1


async def test_closing_an_unknown_session(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher()
    with pytest.raises(SessionNotFound) as missing:
        await launcher.close_session("no-such-session")
    assert missing.value.session_id == "no-such-session"
    with pytest.raises(SessionNotFound):
        await launcher.get_session("no-such-session")
    with pytest.raises(SessionNotFound):
        await launcher.get_metrics("no-such-session")


async def test_close_while_the_start_is_still_creating_the_agent(
    make_launcher: MakeLauncher,
) -> None:
    factory = FakeAgents(gate=asyncio.Event())
    launcher = await make_launcher(factory)
    start = asyncio.create_task(launcher.start_session("call"))
    await wait_until(lambda: factory.creating == 1)  # held in create_agent until the gate opens
    (session_id,) = launcher._live
    closing = asyncio.create_task(launcher.close_session(session_id))
    await settle()
    assert factory.gate is not None
    factory.gate.set()
    closed = await asyncio.wait_for(closing, 2)
    assert (await start).session_id == session_id
    assert closed.end_reason is EndReason.CLOSED_BY_REQUEST
    assert factory.last.close_calls == 1


async def test_close_while_the_start_fails(make_launcher: MakeLauncher) -> None:
    factory = FakeAgents(gate=asyncio.Event(), errors=[RuntimeError("boom")])
    launcher = await make_launcher(factory)
    start = asyncio.create_task(launcher.start_session("call"))
    await wait_until(lambda: factory.creating == 1)
    (session_id,) = launcher._live
    closing = asyncio.create_task(launcher.close_session(session_id))
    await settle()
    assert factory.gate is not None
    factory.gate.set()  # create_agent raises now, while the Close waits for it
    with pytest.raises(SessionNotFound):
        await asyncio.wait_for(closing, 2)
    with pytest.raises(AgentStartFailed, match="RuntimeError"):
        await start


class IdleAgent(FakeAgent):
    """Reports how long it has been alone through ``idle_for()``."""

    def __init__(self, **metadata: Any) -> None:
        super().__init__(**metadata)
        self.idle = 0.0
        self.idle_calls = 0

    def idle_for(self) -> float:
        self.idle_calls += 1
        return self.idle


async def test_idle_timeout_via_agent_idle_for(
    make_launcher: MakeLauncher, clock: VirtualClockLoop
) -> None:
    factory = FakeAgents(IdleAgent)
    launcher = await make_launcher(factory, agent_idle_timeout=0.2)
    record = await launcher.start_session("call")
    agent = factory.last
    assert isinstance(agent, IdleAgent)

    await clock.advance(0.5)  # busy agent: checked at 0.2 s and 0.4 s, no end
    assert (await launcher.get_session(record.session_id)).state is SessionState.RUNNING
    assert agent.idle_calls == 2  # re-checked once per timeout, not polled

    agent.idle = 0.15  # nearly idle: the check after next comes 0.05 s after the next
    await clock.advance(0.1)  # 0.6 s: the next check
    assert agent.idle_calls == 3
    agent.idle = 10.0
    await clock.advance(0.049)
    assert (await launcher.get_session(record.session_id)).state is SessionState.RUNNING
    await clock.advance(0.002)
    ended = await launcher.get_session(record.session_id)
    assert ended.end_reason is EndReason.IDLE_TIMEOUT
    assert agent.idle_calls == 4
    assert agent.cancelled
    assert agent.close_calls == 1


async def test_agent_idle_for_raising_counts_as_busy(
    make_launcher: MakeLauncher, caplog: pytest.LogCaptureFixture, clock: VirtualClockLoop
) -> None:
    class Broken(IdleAgent):
        def idle_for(self) -> float:
            self.idle_calls += 1
            raise RuntimeError("no idea")

    factory = FakeAgents(Broken)
    launcher = await make_launcher(factory, agent_idle_timeout=0.1)
    record = await launcher.start_session("call")
    await clock.advance(0.35)
    assert (await launcher.get_session(record.session_id)).state is SessionState.RUNNING
    assert factory.last.idle_calls == 3
    assert any("idle_for" in r.getMessage() for r in caplog.records)


async def test_session_alone_from_the_start_idles_out(
    make_launcher: MakeLauncher, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(agent_idle_timeout=0.2)
    record = await launcher.start_session("call")
    await clock.advance(0.199)
    assert (await launcher.get_session(record.session_id)).state is SessionState.RUNNING
    await clock.advance(0.002)
    ended = await launcher.get_session(record.session_id)
    assert ended.end_reason is EndReason.IDLE_TIMEOUT


async def test_idle_timeout_via_participants(
    make_launcher: MakeLauncher, factory: FakeAgents, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(agent_idle_timeout=0.3)
    record = await launcher.start_session("call")
    session = await joined(factory.last)
    session.participant_joined("user-1")
    session.participant_joined("user-2")
    assert session.participants == {"user-1", "user-2"}
    assert launcher._live[record.session_id].idle_timer is None  # nothing to check

    await clock.advance(0.5)  # longer than the idle timeout, with people on the call
    assert (await launcher.get_session(record.session_id)).state is SessionState.RUNNING

    session.participant_left("user-1")  # someone is still there
    assert session.participants == {"user-2"}
    await clock.advance(0.35)
    assert (await launcher.get_session(record.session_id)).state is SessionState.RUNNING

    session.participant_left("user-2")
    await clock.advance(0.299)
    assert (await launcher.get_session(record.session_id)).state is SessionState.RUNNING
    await clock.advance(0.002)
    ended = await launcher.get_session(record.session_id)
    assert ended.end_reason is EndReason.IDLE_TIMEOUT


async def test_rejoining_restarts_the_idle_clock(
    make_launcher: MakeLauncher, factory: FakeAgents, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(agent_idle_timeout=0.3)
    record = await launcher.start_session("call")
    session = await joined(factory.last)
    for _ in range(4):
        await clock.advance(0.1)
        session.participant_joined("user-1")
        session.participant_left("user-1")
    # 0.4 s have passed, but never 0.3 s alone in a row.
    assert (await launcher.get_session(record.session_id)).state is SessionState.RUNNING
    await clock.advance(0.299)  # alone since the last leave, not since the start
    assert (await launcher.get_session(record.session_id)).state is SessionState.RUNNING
    await clock.advance(0.002)
    ended = await launcher.get_session(record.session_id)
    assert ended.end_reason is EndReason.IDLE_TIMEOUT


async def test_no_idle_timeout_when_switched_off(
    make_launcher: MakeLauncher, factory: FakeAgents, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(agent_idle_timeout=None)
    record = await launcher.start_session("call")
    session = await joined(factory.last)
    session.participant_joined("u")
    session.participant_left("u")
    await clock.advance(3600)
    assert (await launcher.get_session(record.session_id)).state is SessionState.RUNNING
    assert launcher._live[record.session_id].idle_timer is None


async def test_max_duration(
    make_launcher: MakeLauncher, factory: FakeAgents, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(max_session_duration_seconds=0.2)
    record = await launcher.start_session("call")
    session = await joined(factory.last)
    session.participant_joined("user")  # busy sessions are ended too
    await clock.advance(0.199)
    assert (await launcher.get_session(record.session_id)).state is SessionState.RUNNING
    await clock.advance(0.002)
    ended = await launcher.get_session(record.session_id)
    assert ended.end_reason is EndReason.MAX_DURATION
    assert factory.last.cancelled


async def test_shutdown_ends_every_session(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    records = [await launcher.start_session(f"call-{i}") for i in range(3)]
    await launcher.shutdown()
    for record in records:
        ended = await launcher.get_session(record.session_id)
        assert ended.state is SessionState.ENDED
        assert ended.end_reason is EndReason.SHUTDOWN
    assert all(agent.close_calls == 1 for agent in factory.agents)
    stats = launcher.stats()
    assert stats.in_flight == 0
    assert stats.draining
    assert stats.ended_by_reason == {"SHUTDOWN": 3}
    await launcher.shutdown()  # idempotent
    assert launcher.stats().ended_by_reason == {"SHUTDOWN": 3}


async def test_async_context_manager_shuts_down(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher(start=False)
    async with launcher as running:
        assert running is launcher
        record = await launcher.start_session("call")
    ended = await launcher.get_session(record.session_id)
    assert ended.end_reason is EndReason.SHUTDOWN


async def test_drain_lets_short_sessions_finish_and_ends_the_rest(
    make_launcher: MakeLauncher, clock: VirtualClockLoop
) -> None:
    async def join(agent: FakeAgent, call_type: str, call_id: str, **_: Any) -> None:
        await asyncio.sleep(agent.metadata["runs_for"])

    launcher = await make_launcher(create_agent=FakeAgent, join=join)
    short = await launcher.start_session("short", metadata={"runs_for": 0.1})
    long = await launcher.start_session("long", metadata={"runs_for": 30.0})

    drain = asyncio.create_task(launcher.drain(timeout=0.4))
    await clock.advance(0.399)
    assert not drain.done()
    assert (await launcher.get_session(short.session_id)).end_reason is EndReason.COMPLETED
    assert (await launcher.get_session(long.session_id)).state is SessionState.RUNNING
    await clock.advance(0.002)
    assert drain.done()
    await drain

    assert (await launcher.get_session(short.session_id)).end_reason is EndReason.COMPLETED
    assert (await launcher.get_session(long.session_id)).end_reason is EndReason.SHUTDOWN
    assert launcher.stats().ended_by_reason == {"COMPLETED": 1, "SHUTDOWN": 1}


async def test_drain_returns_as_soon_as_sessions_are_done(
    make_launcher: MakeLauncher, clock: VirtualClockLoop
) -> None:
    async def join(agent: FakeAgent, call_type: str, call_id: str, **_: Any) -> None:
        await asyncio.sleep(0.1)

    launcher = await make_launcher(create_agent=FakeAgent, join=join)
    records = [await launcher.start_session(f"c{i}") for i in range(3)]
    drain = asyncio.create_task(launcher.drain(timeout=5.0))
    await clock.advance(0.099)
    assert not drain.done()
    await clock.advance(0.002)
    assert drain.done()  # 0.1 s in, not after the 5 s of its timeout
    await drain
    for record in records:
        assert (await launcher.get_session(record.session_id)).end_reason is EndReason.COMPLETED


async def test_drain_uses_drain_timeout_by_default(
    make_launcher: MakeLauncher, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(drain_timeout=0.2)
    record = await launcher.start_session("call")
    drain = asyncio.create_task(launcher.drain())
    await clock.advance(0.199)
    assert not drain.done()
    await clock.advance(0.002)
    assert drain.done()
    await drain
    assert (await launcher.get_session(record.session_id)).end_reason is EndReason.SHUTDOWN


async def test_join_call_cancelled_from_outside_ends_with_shutdown(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    record = await launcher.start_session("call")
    await joined(factory.last)
    task = launcher._live[record.session_id].task
    assert task is not None
    task.cancel()
    ended = await wait_ended(launcher, record.session_id)
    assert ended.end_reason is EndReason.SHUTDOWN
    assert factory.last.close_calls == 1


async def test_cancelling_start_while_create_agent_runs_leaves_nothing(
    make_launcher: MakeLauncher,
) -> None:
    factory = FakeAgents(gate=asyncio.Event())  # never opened: create_agent never returns
    launcher = await make_launcher(factory, max_concurrent_sessions=1)
    cursor = launcher.events.last_cursor
    tasks_before = len(asyncio.all_tasks())
    start = asyncio.create_task(launcher.start_session("call", idempotency_key="k"))
    await wait_until(lambda: factory.calls == 1)
    (session_id,) = launcher._live
    closer = asyncio.create_task(launcher.close_session(session_id))
    await settle()

    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    # A Close waiting for that Start is answered, not cancelled with it.
    with pytest.raises(SessionNotFound):
        await asyncio.wait_for(closer, 1)

    await settle()
    assert factory.cancelled == 1
    assert launcher._live == {}
    assert len(launcher._registry) == 0
    assert launcher.stats().in_flight == 0
    assert launcher.stats().started == 0
    assert launcher.stats().ended_by_reason == {}
    assert launcher.events.last_cursor == cursor
    assert len(asyncio.all_tasks()) == tasks_before
    with pytest.raises(SessionNotFound):
        await launcher.get_session(session_id)
    factory.gate = None
    assert (await launcher.start_session("call", idempotency_key="k")).session_id != session_id


@pytest.mark.parametrize("stop", ["shutdown", "drain"])
async def test_stopping_while_an_agent_is_being_created(
    make_launcher: MakeLauncher, stop: str
) -> None:
    factory = FakeAgents()
    launcher = await make_launcher(factory)
    running = await launcher.start_session("running")
    factory.gate = gate = asyncio.Event()
    cursor = launcher.events.last_cursor
    start = asyncio.create_task(launcher.start_session("starting"))
    await wait_until(lambda: factory.calls == 2)

    if stop == "shutdown":
        await launcher.shutdown()
    else:
        await launcher.drain(timeout=0.05)

    gate.set()  # the agent is made only now, after the stop began
    with pytest.raises(Draining):
        await asyncio.wait_for(start, 2)
    # The agent made after the stop began was closed, never joined a call.
    await wait_until(lambda: len(factory.agents) == 2)
    assert factory.agents[1].close_calls == 1
    assert not factory.agents[1].joined.is_set()
    # Only the running session ended; the one being created left no trace.
    assert launcher.stats().ended_by_reason == {"SHUTDOWN": 1}
    assert launcher.stats().completed == 1
    assert launcher._live == {}
    assert len(launcher._registry) == 1
    ended_ids = {
        e.session_id
        for e in launcher.events._ring
        if e is not None and e.cursor > cursor and e.kind is EventKind.ENDED
    }
    assert ended_ids == {running.session_id}


async def test_agent_closing_its_own_session_from_join_call(make_launcher: MakeLauncher) -> None:
    holder: dict[str, Any] = {}

    async def join(agent: FakeAgent, call_type: str, call_id: str, **kwargs: Any) -> None:
        session = current_session()  # **kwargs alone gets no session= (issue 13)
        await asyncio.sleep(0.01)
        try:
            await holder["launcher"].close_session(session.session_id)  # "hang up"
        except asyncio.CancelledError:
            holder["cancelled"] = True  # ending the session cancels join_call itself
            raise

    launcher = await make_launcher(create_agent=FakeAgent, join=join)
    holder["launcher"] = launcher
    record = await launcher.start_session("call")
    ended = await wait_ended(launcher, record.session_id)
    assert ended.end_reason is EndReason.CLOSED_BY_REQUEST
    assert holder["cancelled"]
    assert launcher.stats().in_flight == 0
    assert launcher.abandoned_tasks == 0


async def test_join_call_that_is_not_a_coroutine_function_errors(
    make_launcher: MakeLauncher,
) -> None:
    def join(agent: FakeAgent, call_type: str, call_id: str) -> None:
        return None

    launcher = await make_launcher(create_agent=FakeAgent, join=join)
    record = await launcher.start_session("call")
    ended = await wait_ended(launcher, record.session_id)
    assert ended.end_reason is EndReason.ERROR
    assert "TypeError" in ended.error_message
