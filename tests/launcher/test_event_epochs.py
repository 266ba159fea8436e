"""A cursor carries the identity of its log: a resume against another log is a GAP, never a skip (issue 12)."""

from __future__ import annotations

import asyncio

from agentplane.core import EventKind, EventLog
from agentplane.core.models import SessionEvent


def _publish(log: EventLog, session_id: str, count: int) -> None:
    log.open_session(session_id)
    for n in range(count):
        log.publish(session_id, "call", EventKind.AGENT, {"name": "n", "data": {"n": n}})


async def _first(log: EventLog, session_id: str | None, after: int, epoch: str, count: int
                 ) -> list[SessionEvent]:  # fmt: skip
    seen: list[SessionEvent] = []

    async def read() -> None:
        async for event in log.watch(session_id, after, epoch):
            seen.append(event)
            if len(seen) == count:
                return

    await asyncio.wait_for(read(), 5)
    return seen


def test_every_log_has_its_own_epoch() -> None:
    assert EventLog().epoch != EventLog().epoch


async def test_a_cursor_of_another_log_gets_a_gap_then_everything_held() -> None:
    before_restart, after_restart = EventLog(), EventLog()
    _publish(before_restart, "old", 3)
    _publish(after_restart, "new", 6)
    # A watcher saw cursor 2 of the old log; the new log is already past it.
    seen = await _first(after_restart, None, 2, before_restart.epoch, 7)
    assert seen[0].kind is EventKind.GAP
    assert seen[0].payload == {"after_cursor": 2, "next_cursor": 1}
    assert [e.cursor for e in seen[1:]] == [1, 2, 3, 4, 5, 6]  # nothing skipped


async def test_the_same_log_resumes_after_its_cursor() -> None:
    log = EventLog()
    _publish(log, "s", 6)
    seen = await _first(log, None, 2, log.epoch, 4)
    assert [e.cursor for e in seen] == [3, 4, 5, 6]


async def test_without_an_epoch_a_cursor_is_taken_as_this_logs() -> None:
    """Older clients send no epoch: the old rule holds (a gap only past the last cursor)."""
    log = EventLog()
    _publish(log, "s", 6)
    assert [e.cursor for e in await _first(log, None, 2, "", 4)] == [3, 4, 5, 6]
    ahead = await _first(log, None, 9, "", 7)
    assert ahead[0].kind is EventKind.GAP
    assert [e.cursor for e in ahead[1:]] == [1, 2, 3, 4, 5, 6]


async def test_one_sessions_watch_resuming_from_another_log() -> None:
    other, log = EventLog(), EventLog()
    _publish(log, "a", 2)
    _publish(log, "b", 3)
    seen = await _first(log, "b", 1, other.epoch, 4)
    assert seen[0].kind is EventKind.GAP
    assert [e.cursor for e in seen[1:]] == [3, 4, 5]
    assert {e.session_id for e in seen[1:]} == {"b"}
