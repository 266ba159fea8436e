"""Idempotent Start: one key, one session; conflicts and scoping."""

from __future__ import annotations

import asyncio

import pytest

from agentplane.core import (
    AgentStartFailed,
    IdempotencyConflict,
    SessionNotFound,
    SessionState,
)
from tests.support import FakeAgents, VirtualClockLoop, settle, wait_ended, wait_until

from .conftest import MakeLauncher


async def test_same_key_twice_returns_the_same_session(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    first = await launcher.start_session("call", idempotency_key="req-1")
    second = await launcher.start_session("call", idempotency_key="req-1")
    assert second.session_id == first.session_id
    assert second.state is SessionState.RUNNING
    assert factory.calls == 1
    assert launcher.stats().in_flight == 1
    assert launcher.stats().started == 1


async def test_concurrent_starts_with_one_key_share_a_slow_create(
    make_launcher: MakeLauncher,
) -> None:
    gate = asyncio.Event()
    factory = FakeAgents(gate=gate)
    launcher = await make_launcher(factory, max_concurrent_sessions=1)
    starts = asyncio.gather(
        *(launcher.start_session("call", idempotency_key="req-1") for _ in range(5))
    )
    await wait_until(lambda: factory.creating == 1)
    await settle()  # the four replays arrive while the agent is being made
    gate.set()
    results = await starts
    assert len({r.session_id for r in results}) == 1
    # Every caller waited for the agent: none got a half-started session.
    assert all(r.state is SessionState.RUNNING for r in results)
    assert factory.calls == 1
    # The replays did not take admission slots of their own.
    assert launcher.stats().rejected_by_reason == {}
    assert launcher.stats().in_flight == 1


async def test_same_key_for_another_call_conflicts(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher()
    await launcher.start_session("call-a", idempotency_key="req-1")
    with pytest.raises(IdempotencyConflict) as conflict:
        await launcher.start_session("call-b", idempotency_key="req-1")
    assert conflict.value.reason == "IDEMPOTENCY_KEY_REUSED"
    assert "req-1" in conflict.value.message
    with pytest.raises(IdempotencyConflict):
        await launcher.start_session("call-a", "other-type", idempotency_key="req-1")
    assert launcher.stats().in_flight == 1


async def test_same_key_conflicts_while_the_first_start_is_still_running(
    make_launcher: MakeLauncher,
) -> None:
    gate = asyncio.Event()
    factory = FakeAgents(gate=gate)
    launcher = await make_launcher(factory)
    first = asyncio.create_task(launcher.start_session("call-a", idempotency_key="req-1"))
    await wait_until(lambda: factory.creating == 1)  # still running: its agent is being made
    with pytest.raises(IdempotencyConflict):
        await launcher.start_session("call-b", idempotency_key="req-1")
    gate.set()
    assert (await first).state is SessionState.RUNNING


async def test_keys_are_scoped_per_user(make_launcher: MakeLauncher, factory: FakeAgents) -> None:
    launcher = await make_launcher()
    alice = await launcher.start_session("call", idempotency_key="k", created_by="alice")
    bob = await launcher.start_session("call", idempotency_key="k", created_by="bob")
    assert alice.session_id != bob.session_id
    assert alice.created_by == "alice"
    assert bob.created_by == "bob"
    again = await launcher.start_session("call", idempotency_key="k", created_by="alice")
    assert again.session_id == alice.session_id
    # A user may reuse another user's key for a different call.
    carol = await launcher.start_session("other-call", idempotency_key="k", created_by="carol")
    assert carol.session_id not in {alice.session_id, bob.session_id}
    assert factory.calls == 3


async def test_no_key_means_no_deduplication(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher()
    a = await launcher.start_session("call")
    b = await launcher.start_session("call")
    assert a.session_id != b.session_id


async def test_a_failed_start_frees_its_key(make_launcher: MakeLauncher) -> None:
    factory = FakeAgents(errors=[RuntimeError("first try fails")])
    launcher = await make_launcher(factory)
    with pytest.raises(AgentStartFailed):
        await launcher.start_session("call", idempotency_key="req-1")
    record = await launcher.start_session("call", idempotency_key="req-1")
    assert record.state is SessionState.RUNNING
    assert factory.calls == 2


async def test_concurrent_replay_of_a_failing_start_fails_too(make_launcher: MakeLauncher) -> None:
    gate = asyncio.Event()
    factory = FakeAgents(gate=gate, errors=[RuntimeError("boom")])
    launcher = await make_launcher(factory)
    starts = asyncio.gather(
        launcher.start_session("call", idempotency_key="req-1"),
        launcher.start_session("call", idempotency_key="req-1"),
        return_exceptions=True,
    )
    await wait_until(lambda: factory.creating == 1)
    await settle()  # the replay waits for the first start
    gate.set()  # ...which fails now
    results = await starts
    assert [type(r) for r in results] == [AgentStartFailed, AgentStartFailed]
    assert factory.calls == 1
    assert launcher.stats().in_flight == 0


async def test_replay_of_a_cancelled_start_takes_its_place(
    make_launcher: MakeLauncher,
) -> None:
    """A retry with the key of a Start whose caller went away (a reloaded tab) gets a session."""
    gate = asyncio.Event()
    factory = FakeAgents(gate=gate)  # the first create_agent never returns by itself
    launcher = await make_launcher(factory)
    first = asyncio.create_task(launcher.start_session("call", idempotency_key="req-1"))
    await wait_until(lambda: factory.calls == 1)
    replay = asyncio.create_task(launcher.start_session("call", idempotency_key="req-1"))
    await settle()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    # The replaying caller was not cancelled: it is not told CancelledError (that
    # would look like its own cancellation); it starts the session afresh.
    await wait_until(lambda: factory.calls == 2)
    gate.set()
    record = await asyncio.wait_for(replay, 5)
    assert record.state is SessionState.RUNNING
    assert launcher.stats().in_flight == 1
    assert launcher.stats().failed_starts == 1
    # The key now names that session.
    again = await launcher.start_session("call", idempotency_key="req-1")
    assert again.session_id == record.session_id


async def test_replay_after_the_session_ended_answers_the_ended_session(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    first = await launcher.start_session("call", idempotency_key="req-1")
    factory.last.release.set()
    await wait_ended(launcher, first.session_id)
    again = await launcher.start_session("call", idempotency_key="req-1")
    assert again.session_id == first.session_id
    assert again.state is SessionState.ENDED
    assert factory.calls == 1


async def test_key_is_forgotten_with_the_session(
    make_launcher: MakeLauncher, factory: FakeAgents, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(session_retention_seconds=0.05)
    first = await launcher.start_session("call", idempotency_key="req-1")
    await launcher.close_session(first.session_id)
    await clock.advance(0.049)
    again = await launcher.start_session("call", idempotency_key="req-1")
    assert again.session_id == first.session_id  # retained: still the same session
    await clock.advance(0.002)
    with pytest.raises(SessionNotFound):
        await launcher.get_session(first.session_id)
    second = await launcher.start_session("call", idempotency_key="req-1")
    assert second.session_id != first.session_id
    assert factory.calls == 2
