"""Failures of user code: create_agent, join_call and agent.close misbehaving."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest

from agentplane.core import (
    AdmissionRejected,
    AgentLauncher,
    AgentStartFailed,
    EndReason,
    LauncherError,
    SessionContext,
    SessionNotFound,
    SessionState,
)
from agentplane.core.launcher import CANCEL_GRACE
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

LOGGER = "agentplane.launcher"


def _assert_nothing_left(launcher: Any, tasks_before: int) -> None:
    stats = launcher.stats()
    assert stats.in_flight == 0
    assert stats.started == 0
    assert launcher._live == {}
    assert len(launcher._registry) == 0
    assert len(asyncio.all_tasks()) == tasks_before


async def test_create_agent_raising(
    make_launcher: MakeLauncher, caplog: pytest.LogCaptureFixture
) -> None:
    gate = asyncio.Event()
    factory = FakeAgents(gate=gate, errors=[RuntimeError("model download failed")])
    launcher = await make_launcher(factory, max_concurrent_sessions=1)
    cursor = launcher.events.last_cursor
    tasks_before = len(asyncio.all_tasks())

    with caplog.at_level(logging.ERROR, LOGGER):
        start = asyncio.create_task(launcher.start_session("call"))
        await wait_until(lambda: factory.calls == 1)
        (session_id,) = launcher._live  # the id the failed Start never returned
        gate.set()  # create_agent raises now
        with pytest.raises(AgentStartFailed) as failed:
            await start

    # The caller learns the type and the error id, never the text (it may hold secrets).
    assert "RuntimeError" in failed.value.message
    assert "model download failed" not in failed.value.message
    error_id = _error_id(failed.value.message)
    assert failed.value.reason == "AGENT_START_FAILED"
    assert isinstance(failed.value.__cause__, RuntimeError)
    await settle()
    _assert_nothing_left(launcher, tasks_before)
    assert launcher.events.last_cursor == cursor  # no event for a session that never ran
    with pytest.raises(SessionNotFound):
        await launcher.get_session(session_id)
    # The log has the traceback, under the id the caller was given.
    (logged,) = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert error_id in logged.getMessage()
    # The slot is free: a new start succeeds at a limit of 1.
    assert (await launcher.start_session("call")).state is SessionState.RUNNING


async def test_sync_create_agent_raising(make_launcher: MakeLauncher) -> None:
    def create_agent(**_: Any) -> FakeAgent:
        raise KeyError("voice")

    launcher = await make_launcher(create_agent, max_concurrent_sessions=1)
    with pytest.raises(AgentStartFailed) as failed:
        await launcher.start_session("call")
    assert "KeyError" in failed.value.message
    assert launcher.stats().in_flight == 0
    assert launcher.accepting


async def test_create_agent_timing_out(
    make_launcher: MakeLauncher, clock: VirtualClockLoop
) -> None:
    factory = FakeAgents(delay=10.0)
    launcher = await make_launcher(factory, create_agent_timeout=0.1, max_concurrent_sessions=1)
    tasks_before = len(asyncio.all_tasks())
    start = asyncio.create_task(launcher.start_session("call"))
    await clock.advance(0.099)
    assert not start.done()
    await clock.advance(0.002)
    assert start.done()
    with pytest.raises(AgentStartFailed) as failed:
        await start
    assert "did not finish within 0.1 s" in failed.value.message
    assert factory.cancelled == 1  # the slow create_agent was cancelled, not left running
    await settle()
    _assert_nothing_left(launcher, tasks_before)
    factory.delay = 0
    assert (await launcher.start_session("call")).state is SessionState.RUNNING


class StubbornFactory:
    """A create_agent that swallows cancellation until released (issue 12)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.cancel_count = 0
        self.made: list[FakeAgent] = []

    async def __call__(self, **metadata: Any) -> FakeAgent:
        self.entered.set()
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancel_count += 1
        agent = FakeAgent()
        self.made.append(agent)
        return agent


async def test_create_agent_ignoring_cancellation_is_answered_and_abandoned(
    make_launcher: MakeLauncher, caplog: pytest.LogCaptureFixture, clock: VirtualClockLoop
) -> None:
    factory = StubbornFactory()
    launcher = await make_launcher(factory, create_agent_timeout=0.1, max_concurrent_sessions=1)
    try:
        with caplog.at_level(logging.ERROR, LOGGER), pytest.raises(AgentStartFailed) as failed:
            start = asyncio.create_task(launcher.start_session("call"))
            # Answered at the timeout plus the cancel grace, not when the factory gives in.
            await clock.advance(0.1 + CANCEL_GRACE - 0.001)
            assert not start.done()
            await clock.advance(0.002)
            assert start.done()
            await start
        assert "did not finish within 0.1 s" in failed.value.message
        assert factory.cancel_count == 1
        assert any("ignored cancellation" in r.getMessage() for r in caplog.records)
        # The factory still runs: it keeps its slot and shows in the stats.
        assert launcher.abandoned_tasks == 1
        assert launcher.stats().abandoned == 1
        assert not launcher.accepting
        with pytest.raises(AdmissionRejected):
            await launcher.start_session("other")
    finally:
        factory.release.set()
    await clock.settle()  # the factory gives in: no time passes for what follows
    assert launcher.abandoned_tasks == 0 and launcher.accepting
    # The agent it made late was closed, never run.
    (late,) = factory.made
    assert late.close_calls == 1
    assert not late.joined.is_set()
    assert launcher.stats().in_flight == 0


async def test_join_call_raising_ends_the_session_with_error(
    make_launcher: MakeLauncher, factory: FakeAgents, caplog: pytest.LogCaptureFixture
) -> None:
    launcher = await make_launcher(max_concurrent_sessions=1)
    record = await launcher.start_session("call")
    agent = factory.last
    await joined(agent)
    agent.error = ValueError("audio track vanished")
    with caplog.at_level(logging.ERROR, LOGGER):
        agent.release.set()
        ended = await wait_ended(launcher, record.session_id)

    assert ended.state is SessionState.ENDED
    assert ended.end_reason is EndReason.ERROR
    assert "ValueError" in ended.error_message
    assert "audio track vanished" not in ended.error_message
    assert ended.ended_at is not None
    failures = [r for r in caplog.records if "join_call failed" in r.getMessage()]
    assert len(failures) == 1
    assert record.session_id in failures[0].getMessage()
    assert _error_id(ended.error_message) in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert failures[0].exc_info[0] is ValueError
    assert "Traceback" in caplog.text
    assert "ValueError: audio track vanished" in caplog.text
    assert agent.close_calls == 1
    stats = launcher.stats()
    assert stats.failed == 1
    assert stats.completed == 0
    assert stats.ended_by_reason == {"ERROR": 1}
    # The slot is free again.
    await launcher.start_session("next")


class RogueAgent(FakeAgent):
    """Its join_call swallows cancellation until ``release`` is set."""

    def __init__(self, **metadata: Any) -> None:
        super().__init__(**metadata)
        self.cancel_count = 0
        self.finished = False


async def rogue_join(agent: RogueAgent, call_type: str, call_id: str, **_: Any) -> None:
    agent.joined.set()
    while not agent.release.is_set():
        try:
            await agent.release.wait()
        except asyncio.CancelledError:
            agent.cancel_count += 1
    agent.finished = True


async def test_join_call_ignoring_cancellation_is_abandoned(
    make_launcher: MakeLauncher, caplog: pytest.LogCaptureFixture, clock: VirtualClockLoop
) -> None:
    factory = FakeAgents(RogueAgent)
    launcher = await make_launcher(factory, rogue_join, stop_timeout=0.3, max_concurrent_sessions=1)
    record = await launcher.start_session("call")
    agent = factory.last
    assert isinstance(agent, RogueAgent)
    await asyncio.wait_for(agent.joined.wait(), 1)

    with caplog.at_level(logging.ERROR, LOGGER):
        closing = asyncio.create_task(launcher.close_session(record.session_id))
        await clock.advance(0.299)  # join_call gets stop_timeout (0.3 s) to end
        assert not closing.done()
        await clock.advance(0.002)
        assert closing.done()
        closed = await closing
    try:
        assert closed.state is SessionState.ENDED
        assert closed.end_reason is EndReason.CLOSED_BY_REQUEST
        assert agent.cancel_count == 1
        assert not agent.finished
        assert launcher.abandoned_tasks == 1
        assert launcher.stats().in_flight == 0
        assert agent.close_calls == 1
        assert any("ignored cancellation" in r.getMessage() for r in caplog.records)
        # The rogue task still runs, so it still holds its slot (issue 12).
        assert launcher.stats().abandoned == 1
        assert not launcher.accepting
        with pytest.raises(AdmissionRejected) as refused:
            await launcher.start_session("next")
        assert refused.value.reason == "MAX_CONCURRENT_SESSIONS"
    finally:
        for made in factory.agents:  # rogue tasks would outlive the test's event loop
            made.release.set()
    await clock.settle()  # the rogue task finishes: no time passes for what follows
    assert launcher.abandoned_tasks == 0
    assert agent.finished
    # Once it really finished, its slot is free again.
    assert launcher.accepting
    await launcher.start_session("next")
    factory.last.release.set()  # a rogue agent too: let it end with the test
    # Finishing late does not touch the ended record.
    after = await launcher.get_session(record.session_id)
    assert after.end_reason is EndReason.CLOSED_BY_REQUEST


class CloseRaises(FakeAgent):
    def close(self) -> None:
        self.close_calls += 1
        raise OSError("socket already gone")


async def test_agent_close_raising_still_ends_the_session(
    make_launcher: MakeLauncher, caplog: pytest.LogCaptureFixture
) -> None:
    factory = FakeAgents(CloseRaises)
    launcher = await make_launcher(factory, max_concurrent_sessions=1)
    record = await launcher.start_session("call")
    await joined(factory.last)
    with caplog.at_level(logging.ERROR, LOGGER):
        closed = await launcher.close_session(record.session_id)
    assert closed.state is SessionState.ENDED
    assert closed.end_reason is EndReason.CLOSED_BY_REQUEST
    assert closed.error_message == ""
    assert factory.last.close_calls == 1
    logged = [r for r in caplog.records if "agent.close()" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is OSError
    assert launcher.stats().in_flight == 0
    assert launcher.stats().ended_by_reason == {"CLOSED_BY_REQUEST": 1}
    await launcher.start_session("next")


class CloseHangs(FakeAgent):
    async def close(self) -> None:  # type: ignore[override]
        self.close_calls += 1
        await asyncio.sleep(30)


async def test_agent_close_hanging_is_bounded_by_stop_timeout(
    make_launcher: MakeLauncher, caplog: pytest.LogCaptureFixture, clock: VirtualClockLoop
) -> None:
    factory = FakeAgents(CloseHangs)
    launcher = await make_launcher(factory, stop_timeout=0.2)
    record = await launcher.start_session("call")
    with caplog.at_level(logging.ERROR, LOGGER):
        closing = asyncio.create_task(launcher.close_session(record.session_id))
        await clock.advance(0.199)  # close() gets stop_timeout (0.2 s), not its 30 s
        assert not closing.done()
        await clock.advance(0.002)
        assert closing.done()
        closed = await closing
    assert closed.state is SessionState.ENDED
    assert any("timed out" in r.getMessage() for r in caplog.records)


class SyncClose(FakeAgent):
    pass


class AsyncClose(FakeAgent):
    async def close(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.close_calls += 1


class AsyncAclose(FakeAgent):
    close = None  # type: ignore[assignment]

    async def aclose(self) -> None:
        await asyncio.sleep(0)
        self.close_calls += 1


class SyncFinish(FakeAgent):
    close = None  # type: ignore[assignment]

    def finish(self) -> None:
        self.close_calls += 1


class AllClosers(FakeAgent):
    async def aclose(self) -> None:
        self.close_calls += 1

    def finish(self) -> None:
        self.close_calls += 1


@pytest.mark.parametrize("agent_cls", [SyncClose, AsyncClose, AsyncAclose, SyncFinish, AllClosers])
@pytest.mark.parametrize("how", ["completed", "closed", "error", "shutdown"])
async def test_agent_is_closed_exactly_once(
    make_launcher: MakeLauncher, agent_cls: type[FakeAgent], how: str
) -> None:
    factory = FakeAgents(agent_cls)
    launcher = await make_launcher(factory)
    record = await launcher.start_session("call")
    agent = factory.last
    await joined(agent)
    if how == "completed":
        agent.release.set()
        await wait_ended(launcher, record.session_id)
    elif how == "error":
        agent.error = RuntimeError("x")
        agent.release.set()
        await wait_ended(launcher, record.session_id)
    elif how == "closed":
        await launcher.close_session(record.session_id)
        await launcher.close_session(record.session_id)
    else:
        await launcher.shutdown()
        await launcher.shutdown()
    await settle()
    assert agent.close_calls == 1


async def test_agent_without_closer_is_fine(make_launcher: MakeLauncher) -> None:
    class Bare:
        pass

    async def join(agent: Bare, call_type: str, call_id: str) -> None:
        await asyncio.sleep(0)

    launcher = await make_launcher(lambda **_: Bare(), join)
    record = await launcher.start_session("call")
    ended = await wait_ended(launcher, record.session_id)
    assert ended.end_reason is EndReason.COMPLETED


async def test_broken_agent_metrics_do_not_break_the_end(
    make_launcher: MakeLauncher, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenMetrics:
        def to_dict(self) -> dict[str, float]:
            raise RuntimeError("collector broken")

    class Broken(FakeAgent):
        metrics = BrokenMetrics()

    factory = FakeAgents(Broken)
    launcher = await make_launcher(factory)
    record = await launcher.start_session("call")
    with caplog.at_level(logging.ERROR, LOGGER):
        closed = await launcher.close_session(record.session_id)
    assert closed.end_reason is EndReason.CLOSED_BY_REQUEST
    assert closed.final_metrics == {}
    assert any("to_dict" in r.getMessage() for r in caplog.records)


async def test_session_context_rejects_bad_agent_events(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    await launcher.start_session("call")
    session: SessionContext = await joined(factory.last)
    with pytest.raises(ValueError):
        session.emit("")
    with pytest.raises(ValueError):
        session.emit("x" * 129)
    with pytest.raises(ValueError):
        session.emit("big", {"blob": "x" * (16 * 1024 + 1)})
    with pytest.raises(ValueError):
        session.emit("nan", {"value": float("nan")})
    with pytest.raises(TypeError):
        session.emit("unserialisable", {"value": object()})


async def test_launcher_errors_share_a_base(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher(FakeAgents(errors=[RuntimeError("x")]))
    with pytest.raises(LauncherError):
        await launcher.start_session("call")


async def test_nan_from_idle_for_counts_as_busy(
    make_launcher: MakeLauncher, clock: VirtualClockLoop
) -> None:
    class NanIdle:
        def idle_for(self) -> float:
            return float("nan")

    async def create(**_: Any) -> NanIdle:
        return NanIdle()

    async def join(agent: NanIdle, call_type: str, call_id: str, **_: Any) -> None:
        await asyncio.sleep(3600)

    launcher = await make_launcher(create, join, agent_idle_timeout=0.05)
    session = await launcher.start_session("call-nan")
    await clock.advance(0.2)  # four idle checks ran; the loop must still work
    assert (await launcher.get_session(session.session_id)).state.name == "RUNNING"
    await asyncio.wait_for(launcher.close_session(session.session_id), 2)


def test_zero_start_and_stop_timeouts_are_refused() -> None:
    for name in ("create_agent_timeout", "stop_timeout"):
        with pytest.raises(ValueError, match=name):
            AgentLauncher(create_agent=lambda: None, join_call=asyncio.sleep, **{name: 0})


def _error_id(message: str) -> str:
    """The id a redacted failure message names (``... (error 3f2a9c...; details ...)``)."""
    found = re.search(r"\(error ([0-9a-f]{12})[;)]", message)
    assert found, message
    return found.group(1)


async def test_expose_error_details_restores_the_exception_text(
    make_launcher: MakeLauncher,
) -> None:
    factory = FakeAgents(errors=[RuntimeError("model download failed")])
    launcher = await make_launcher(factory, expose_error_details=True)
    with pytest.raises(AgentStartFailed) as failed:
        await launcher.start_session("call")
    assert "RuntimeError: model download failed" in failed.value.message
    _error_id(failed.value.message)

    record = await launcher.start_session("call")
    agent = factory.last
    await joined(agent)
    agent.error = ValueError("audio track vanished")
    agent.release.set()
    ended = await wait_ended(launcher, record.session_id)
    assert "ValueError: audio track vanished" in ended.error_message


async def test_expose_error_details_can_be_switched_on_later(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    assert launcher.expose_error_details is False
    launcher.expose_error_details = (
        True  # what Runner does for ServeOptions(expose_error_details=True)
    )
    record = await launcher.start_session("call")
    agent = factory.last
    await joined(agent)
    agent.error = ValueError("secret-token-123")
    agent.release.set()
    ended = await wait_ended(launcher, record.session_id)
    assert "secret-token-123" in ended.error_message
