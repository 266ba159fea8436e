"""Ended sessions: readable for the retention window, then forgotten; bounded in number."""

from __future__ import annotations

import dataclasses

import pytest

from agentplane.core import EndReason, SessionNotFound, SessionRecord, SessionState
from tests.support import FakeAgents, VirtualClockLoop, joined, settle, wait_ended

from .conftest import MakeLauncher


async def test_ended_record_is_readable_with_final_metrics(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    record = await launcher.start_session("call", "video", metadata={"voice": "alloy"})
    session = await joined(factory.last)
    for value in (10.0, 20.0, 30.0):
        session.observe("llm_latency_ms", value)
    session.add("llm_output_tokens", 42)
    factory.last.release.set()

    ended = await wait_ended(launcher, record.session_id)
    assert ended.session_id == record.session_id
    assert ended.call_id == "call"
    assert ended.call_type == "video"
    assert ended.metadata == {"voice": "alloy"}
    assert ended.state is SessionState.ENDED
    assert ended.ended
    assert ended.end_reason is EndReason.COMPLETED
    assert ended.ended_at is not None
    assert ended.started_at <= ended.ended_at
    assert ended.started_at == record.started_at
    assert ended.final_metrics is not None
    assert ended.final_metrics["llm_latency_ms__avg"] == 20.0
    assert ended.final_metrics["llm_latency_ms__count"] == 3.0
    assert ended.final_metrics["llm_output_tokens__total"] == 42.0

    read, metrics = await launcher.get_metrics(record.session_id)
    assert read == ended
    assert metrics == ended.final_metrics


async def test_ended_session_is_forgotten_after_retention(
    make_launcher: MakeLauncher, factory: FakeAgents, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(session_retention_seconds=0.3)
    record = await launcher.start_session("call", idempotency_key="k")
    await launcher.close_session(record.session_id)

    await clock.advance(0.299)
    assert (await launcher.get_session(record.session_id)).state is SessionState.ENDED
    assert record.session_id in launcher.events._sessions

    await clock.advance(0.002)
    with pytest.raises(SessionNotFound):
        await launcher.get_session(record.session_id)
    with pytest.raises(SessionNotFound):
        await launcher.get_metrics(record.session_id)
    with pytest.raises(SessionNotFound):
        await launcher.close_session(record.session_id)
    assert len(launcher._registry) == 0
    assert len(launcher._retention) == 0
    assert launcher.events._sessions == {}
    # A watcher of the forgotten session gets nothing and stops.
    events = [e async for e in launcher.events.watch(record.session_id, None)]
    assert events == []


async def test_running_sessions_are_not_expired(
    make_launcher: MakeLauncher, factory: FakeAgents, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(session_retention_seconds=0.05)
    record = await launcher.start_session("call")
    await clock.advance(60)
    assert (await launcher.get_session(record.session_id)).state is SessionState.RUNNING


async def test_max_retained_sessions_bounds_the_retained_count(
    make_launcher: MakeLauncher,
) -> None:
    launcher = await make_launcher(session_retention_seconds=60, max_retained_sessions=3)
    ids = []
    for i in range(10):
        record = await launcher.start_session(f"call-{i}")
        await launcher.close_session(record.session_id)
        ids.append(record.session_id)
        assert len(launcher._retention) <= 3
    await settle()

    assert len(launcher._retention) == 3
    assert len(launcher._registry) == 3
    assert set(launcher.events._sessions) == set(ids[-3:])
    for session_id in ids[-3:]:
        assert (await launcher.get_session(session_id)).state is SessionState.ENDED
    for session_id in ids[:-3]:
        with pytest.raises(SessionNotFound):
            await launcher.get_session(session_id)


async def test_no_retention_at_all(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher(max_retained_sessions=0)
    record = await launcher.start_session("call")
    closed = await launcher.close_session(record.session_id)
    assert closed.end_reason is EndReason.CLOSED_BY_REQUEST  # the closer still gets it
    await settle()
    with pytest.raises(SessionNotFound):
        await launcher.get_session(record.session_id)
    assert len(launcher._registry) == 0


async def test_returned_records_are_snapshots(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher()
    record = await launcher.start_session("call", metadata={"voice": "alloy"})
    assert record.state is SessionState.RUNNING

    # Changing what the caller got does not change what the launcher keeps...
    record.metadata["voice"] = "changed"
    record.state = SessionState.ENDED
    stored = await launcher.get_session(record.session_id)
    assert stored.metadata == {"voice": "alloy"}
    assert stored.state is SessionState.RUNNING

    # ...and later changes of the session do not show in an earlier snapshot.
    closed = await launcher.close_session(record.session_id)
    assert stored.state is SessionState.RUNNING
    assert stored.end_reason is None
    assert closed.final_metrics is not None
    closed.final_metrics["injected"] = 1.0
    again = await launcher.get_session(record.session_id)
    assert again.final_metrics == {}


def test_a_snapshot_copies_every_field() -> None:
    # snapshot() sets the fields one by one: a new field must be copied too.
    record = SessionRecord(
        session_id="s",
        call_id="c",
        call_type="video",
        started_at=1.5,
        created_by="u",
        metadata={"voice": "alloy"},
        idempotency_key="k",
        state=SessionState.ENDED,
        end_reason=EndReason.ERROR,
        ended_at=2.5,
        error_message="boom",
        final_metrics={"m": 1.0},
    )
    defaults = SessionRecord("", "", "", 0.0)
    assert all(
        getattr(record, f.name) != getattr(defaults, f.name) for f in dataclasses.fields(record)
    )
    copy = record.snapshot()
    assert copy == record
    assert copy.metadata is not record.metadata
    assert copy.final_metrics is not record.final_metrics
