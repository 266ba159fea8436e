"""``sessions watch``: live events, and a resume after a dropped connection that misses and repeats nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agentplane.clients.betterproto import (
    CloseRequest,
    StartRequest,
    StreamEventsRequest,
    StreamEventsResponse,
)
from agentplane.console.connection import Connection
from agentplane.console.render import event_kind
from agentplane.console.watching import Backoff, Position, watch
from agentplane.server import AgentLauncher
from agentplane.testing import Served, serving, wait_until

from .support import HOST, Relay, cli, create_agent, join_call, on

FAST = Backoff(first=0.02, factor=2.0, most=0.2)


def launcher() -> AgentLauncher:
    return AgentLauncher(create_agent, join_call, max_sessions_per_call=10)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serving(launcher(), http=False) as served:
        yield served


async def test_watch_of_a_session_replays_it_and_ends_with_it(served: Served) -> None:
    started = await served.stub.start(StartRequest(call_id="call-w"), timeout=5)
    await served.stub.close(CloseRequest(session_id=started.session_id), timeout=5)

    ran = await cli(
        "sessions", "watch", started.session_id, "--after-cursor", "0", "-o", "json",
        *on(served.grpc_port),
    )  # fmt: skip
    assert ran.code == 0, ran.err
    events = ran.lines()
    kinds = [next(k for k in ("started", "state_changed", "ended") if k in e) for e in events]
    assert kinds[0] == "started" and kinds[-1] == "ended"
    assert events[-1]["ended"]["session"]["end_reason"] == "END_REASON_CLOSED_BY_REQUEST"
    assert all(e["session_id"] == started.session_id for e in events)
    assert all(isinstance(e["cursor"], str) for e in events)  # uint64: a string in protojson
    assert f"watching session {started.session_id}" in ran.err

    human = await cli(
        "sessions", "watch", started.session_id, "--after-cursor", "0", *on(served.grpc_port)
    )
    assert human.code == 0, human.err
    lines = human.out.splitlines()
    assert len(lines) == len(events)
    assert lines[0].split()[3:6] == ["started", started.session_id, "call-w"]
    assert lines[-1].split()[3:7] == [
        "ended",
        started.session_id,
        "call-w",
        "reason=closed_by_request",
    ]


async def test_watch_resumes_after_the_connection_drops_without_gaps_or_repeats(
    served: Served,
) -> None:
    events: list[StreamEventsResponse] = []
    notes: list[str] = []
    async with Relay(served.grpc_port) as relay:
        connection = Connection(HOST, relay.port, timeout=5)
        watching = asyncio.create_task(
            watch(connection, "", Position(), events.append, notes.append, FAST)
        )
        try:
            await wait_until(lambda: any(n.startswith("watching every session") for n in notes))
            first = await served.stub.start(StartRequest(call_id="call-r"), timeout=5)
            await wait_until(lambda: any(e.started for e in events))

            relay.cut(refuse=True)  # the connection drops; reconnecting fails until reopened
            await wait_until(lambda: any("connection lost" in n for n in notes))
            second = await served.stub.start(StartRequest(call_id="call-r"), timeout=5)
            await served.stub.close(CloseRequest(session_id=first.session_id), timeout=5)
            relay.reopen()

            def seen(kind: str, session_id: str) -> bool:
                return any(event_kind(e) == kind and e.session_id == session_id for e in events)

            await wait_until(lambda: seen("ended", first.session_id))
            await wait_until(lambda: seen("started", second.session_id))
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        assert relay.connections >= 2

    assert any(n.startswith("resumed every session") for n in notes), notes
    cursors = [e.cursor for e in events]
    assert cursors == sorted(set(cursors)), "repeated or out of order"
    assert not any(e.gap for e in events)
    assert len({e.epoch for e in events}) == 1
    # Nothing missed: the server's own replay up to the last cursor is the same list.
    replayed: list[int] = []
    async for event in served.stub.stream_events(StreamEventsRequest(after_cursor=0)):
        replayed.append(event.cursor)
        if event.cursor >= cursors[-1]:
            break
    assert replayed == cursors


async def test_watch_reports_a_gap_when_the_server_restarted(served: Served) -> None:
    events: list[StreamEventsResponse] = []
    notes: list[str] = []
    async with Relay(served.grpc_port) as relay:
        connection = Connection(HOST, relay.port, timeout=5)
        watching = asyncio.create_task(
            watch(connection, "", Position(), events.append, notes.append, FAST)
        )
        try:
            await wait_until(lambda: any(n.startswith("watching") for n in notes))
            await served.stub.start(StartRequest(call_id="call-old"), timeout=5)
            await wait_until(lambda: any(e.started for e in events))
            relay.cut(refuse=True)
            await wait_until(lambda: any("connection lost" in n for n in notes))
            async with serving(launcher(), http=False) as restarted:  # a new event log
                fresh = await restarted.stub.start(StartRequest(call_id="call-new"), timeout=5)
                relay.reopen(restarted.grpc_port)
                await wait_until(
                    lambda: any(e.started and e.session_id == fresh.session_id for e in events)
                )
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

    gaps = [e for e in events if e.gap]
    assert len(gaps) == 1
    gap_at = events.index(gaps[0])
    assert events[gap_at - 1].epoch != gaps[0].epoch
    assert all(e.epoch == gaps[0].epoch for e in events[gap_at:])


def test_a_gap_reads_as_a_gap() -> None:
    from agentplane.clients.betterproto import EventsGap
    from agentplane.console.render import event_line, gap_text

    event = StreamEventsResponse(
        cursor=3, epoch="e2", gap=EventsGap(after_cursor=41, next_cursor=1)
    )
    assert "GAP" in event_line(event)
    assert "event log changed" in gap_text(event)
    lost = StreamEventsResponse(cursor=9, epoch="e", gap=EventsGap(after_cursor=2, next_cursor=9))
    assert "missed the events after #2 and before #9" in event_line(lost)
