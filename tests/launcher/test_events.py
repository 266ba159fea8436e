"""The event log: fan-out, resume, gaps, slow and cancelled watchers; the launcher's events."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from agentplane.core import (
    EndReason,
    EventKind,
    EventLog,
    SessionEvent,
    SessionState,
)
from tests.support import (
    FakeAgents,
    VirtualClockLoop,
    collect,
    ended_event_of,
    joined,
    kinds,
    settle,
    wait_ended,
)

from .conftest import MakeLauncher

AGENT = EventKind.AGENT


def publish(log: EventLog, n: int, session_id: str = "s", start: int = 0) -> list[SessionEvent]:
    return [log.publish(session_id, "call", AGENT, {"i": start + i}) for i in range(n)]


def assert_increasing(events: list[SessionEvent]) -> None:
    cursors = [e.cursor for e in events]
    assert all(a < b for a, b in itertools.pairwise(cursors)), cursors


# ------------------------------------------------------------------ EventLog


def test_cursors_strictly_increase_from_one() -> None:
    log = EventLog()
    assert log.last_cursor == 0
    events = publish(log, 5) + publish(log, 5, "other")
    assert [e.cursor for e in events] == list(range(1, 11))
    assert log.last_cursor == 10
    assert events[0].session_id == "s"
    assert events[0].call_id == "call"
    assert events[0].kind is AGENT
    assert events[0].payload == {"i": 0}
    assert events[0].time > 0


@pytest.mark.parametrize(("size", "session_size"), [(0, 10), (10, 1)])
def test_buffers_must_hold_something(size: int, session_size: int) -> None:
    with pytest.raises(ValueError):
        EventLog(buffer_size=size, session_buffer_size=session_size)


async def test_watch_all_from_now_on() -> None:
    log = EventLog()
    publish(log, 3)  # before the watcher: not delivered
    watcher = asyncio.create_task(collect(log.watch(None, None), limit=4))
    await settle()
    expected = publish(log, 2, "a") + publish(log, 2, "b")
    assert await asyncio.wait_for(watcher, 1) == expected


async def test_watch_from_cursor_zero_replays_everything_held() -> None:
    log = EventLog()
    expected = publish(log, 5)
    assert await collect(log.watch(None, 0), limit=5) == expected


async def test_resume_after_a_cursor_gives_exactly_the_missed_events() -> None:
    log = EventLog()
    events = publish(log, 10)
    seen = await collect(log.watch(None, 0), limit=4)
    assert seen == events[:4]
    missed_later = publish(log, 3, start=10)
    resumed = await collect(log.watch(None, seen[-1].cursor), limit=9)
    assert resumed == events[4:] + missed_later
    assert {e.cursor for e in seen}.isdisjoint(e.cursor for e in resumed)


async def test_cursor_from_before_a_restart_gets_a_gap_then_everything_held() -> None:
    log = EventLog()
    held = publish(log, 3)
    events = await collect(log.watch(None, 1000), limit=4)
    gap, rest = events[0], events[1:]
    assert gap.kind is EventKind.GAP
    assert gap.payload == {"after_cursor": 1000, "next_cursor": 1}
    assert rest == held


async def test_one_session_cursor_from_before_a_restart_replays_that_session() -> None:
    log = EventLog()
    log.open_session("s1")
    mine = log.publish("s1", "c1", EventKind.AGENT, {"name": "a", "data": {}})
    log.publish("s2", "c2", EventKind.AGENT, {"name": "b", "data": {}})
    events = await collect(log.watch("s1", 1000), limit=2)
    assert events[0].kind is EventKind.GAP
    assert events[0].payload == {"after_cursor": 1000, "next_cursor": mine.cursor}
    assert events[1:] == [mine]


async def test_close_ends_caught_up_watchers_after_the_last_events() -> None:
    log = EventLog()
    log.open_session("s1")
    everyone = asyncio.create_task(collect(log.watch(None, None), limit=100))
    one = asyncio.create_task(collect(log.watch("s1", None), limit=100))
    await settle()
    last = log.publish("s1", "c1", EventKind.AGENT, {"name": "bye", "data": {}})
    log.close()
    assert await asyncio.wait_for(everyone, 1) == [last]
    assert await asyncio.wait_for(one, 1) == [last]
    assert not log._wakeups


async def test_watcher_behind_the_buffer_gets_one_gap_then_continues() -> None:
    log = EventLog(buffer_size=8)
    publish(log, 20)
    events = await collect(log.watch(None, 0), limit=9)
    gap, rest = events[0], events[1:]
    assert gap.kind is EventKind.GAP
    assert gap.payload == {"after_cursor": 0, "next_cursor": 13}
    assert [e.cursor for e in rest] == list(range(13, 21))
    assert_increasing(events)


async def test_gap_while_watching_then_no_duplicates() -> None:
    log = EventLog(buffer_size=8)
    stream = log.watch(None, 0)
    publish(log, 3)
    first = [await anext(stream), await anext(stream)]
    assert [e.cursor for e in first] == [1, 2]
    publish(log, 30)  # the watcher, paused at cursor 2, falls far behind
    rest = []
    for _ in range(9):
        rest.append(await anext(stream))
    await stream.aclose()
    assert rest[0].kind is EventKind.GAP
    assert rest[0].payload == {"after_cursor": 2, "next_cursor": 26}
    assert [e.cursor for e in rest[1:]] == list(range(26, 34))
    assert_increasing(first + rest)
    assert sum(e.kind is EventKind.GAP for e in rest) == 1


async def test_gap_cursor_resumes_where_the_gap_says() -> None:
    log = EventLog(buffer_size=8)
    publish(log, 20)
    (gap,) = await collect(log.watch(None, 0), limit=1)
    resumed = await collect(log.watch(None, gap.cursor), limit=8)
    assert [e.cursor for e in resumed] == list(range(gap.payload["next_cursor"], 21))


async def test_per_session_buffer_gap() -> None:
    log = EventLog(session_buffer_size=4)
    log.open_session("s")
    mine = []
    for i in range(10):
        mine.append(log.publish("s", "call", AGENT, {"i": i}))
        log.publish("other", "call", AGENT, {"i": i})
    held = log._sessions["s"].events
    assert 0 < len(held) <= 4

    events = await collect(log.watch("s", 0), limit=1 + len(held))
    gap, rest = events[0], events[1:]
    assert gap.kind is EventKind.GAP
    assert gap.payload == {"after_cursor": 0, "next_cursor": held[0].cursor}
    assert rest == mine[-len(held) :]
    assert all(e.session_id == "s" for e in rest)
    assert_increasing(events)


async def test_per_session_gap_while_watching() -> None:
    log = EventLog(session_buffer_size=4)
    log.open_session("s")
    stream = log.watch("s", 0)
    first = log.publish("s", "call", AGENT, {"i": 0})
    assert await anext(stream) == first
    later = [log.publish("s", "call", AGENT, {"i": i}) for i in range(1, 12)]
    gap = await anext(stream)
    assert gap.kind is EventKind.GAP
    assert gap.payload["after_cursor"] == first.cursor
    rest = [await anext(stream) for _ in range(len(log._sessions["s"].events))]
    await stream.aclose()
    assert rest == later[-len(rest) :]
    assert gap.payload["next_cursor"] == rest[0].cursor
    assert_increasing([first, gap, *rest])


async def test_one_session_watch_sees_only_that_session_and_ends_after_ended() -> None:
    log = EventLog()
    log.open_session("s")
    log.open_session("t")
    watcher = asyncio.create_task(collect(log.watch("s", None)))
    await settle()
    a = log.publish("s", "call", AGENT, {})
    log.publish("t", "call", AGENT, {})
    b = log.publish("s", "call", EventKind.ENDED, {})
    log.publish("s", "call", AGENT, {"after": "end"})
    assert await asyncio.wait_for(watcher, 1) == [a, b]


async def test_one_session_watch_of_an_ended_session_yields_ended_and_stops() -> None:
    log = EventLog()
    log.open_session("s")
    publish(log, 3)
    ended = log.publish("s", "call", EventKind.ENDED, {})
    assert await asyncio.wait_for(collect(log.watch("s", None)), 1) == [ended]


async def test_one_session_watch_of_an_unknown_session_stops_at_once() -> None:
    log = EventLog()
    assert await asyncio.wait_for(collect(log.watch("nope", None)), 1) == []


async def test_forgetting_a_session_stops_its_watchers() -> None:
    log = EventLog()
    log.open_session("s")
    watcher = asyncio.create_task(collect(log.watch("s", None)))
    await settle()
    event = log.publish("s", "call", AGENT, {})
    await settle()
    log.forget_session("s")
    assert await asyncio.wait_for(watcher, 1) == [event]
    assert log._wakeups == {}


async def test_a_watcher_that_never_reads_blocks_nobody() -> None:
    log = EventLog(buffer_size=64)
    slow = log.watch(None, 0)
    log.publish("s", "call", AGENT, {"i": 0})
    first = await anext(slow)  # ...and then never reads again
    fast = asyncio.create_task(collect(log.watch(None, first.cursor), limit=1000))
    await settle()
    for i in range(1, 1001):
        log.publish("s", "call", AGENT, {"i": i})  # returns at once, never waits
        if i % 16 == 0:
            await asyncio.sleep(0)
    received = await asyncio.wait_for(fast, 2)
    assert [e.payload["i"] for e in received] == list(range(1, 1001))
    assert EventKind.GAP not in kinds(received)
    # The slow watcher only delayed itself: it learns of its gap when it reads again.
    resumed = await anext(slow)
    assert resumed.kind is EventKind.GAP
    assert resumed.payload["after_cursor"] == first.cursor
    await slow.aclose()


async def test_cancelled_watchers_leave_no_waiter_behind() -> None:
    log = EventLog()
    log.open_session("s")
    all_watcher = asyncio.create_task(collect(log.watch(None, None)))
    one_watcher = asyncio.create_task(collect(log.watch("s", None)))
    await settle()
    assert set(log._wakeups) == {None, "s"}
    all_watcher.cancel()
    one_watcher.cancel()
    await asyncio.gather(all_watcher, one_watcher, return_exceptions=True)
    assert all_watcher.cancelled()
    assert one_watcher.cancelled()
    assert log._wakeups == {}


async def test_cancelling_one_of_two_watchers_keeps_the_other() -> None:
    log = EventLog()
    leaving = asyncio.create_task(collect(log.watch(None, None)))
    staying = asyncio.create_task(collect(log.watch(None, None), limit=2))
    await settle()
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    expected = publish(log, 2)
    assert await asyncio.wait_for(staying, 1) == expected
    assert log._wakeups == {}


async def test_many_watchers_each_get_everything() -> None:
    log = EventLog()
    watchers = [asyncio.create_task(collect(log.watch(None, None), limit=50)) for _ in range(20)]
    await settle()
    expected = []
    for i in range(50):
        expected.append(log.publish(f"s{i % 3}", "call", AGENT, {"i": i}))
        if i % 7 == 0:
            await asyncio.sleep(0)
    results = await asyncio.wait_for(asyncio.gather(*watchers), 2)
    assert all(result == expected for result in results)


# ------------------------------------------------------------- via launcher


async def test_launcher_events_for_a_session_lifecycle(
    make_launcher: MakeLauncher, factory: FakeAgents, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(metrics_event_interval=0.05)
    before = launcher.events.last_cursor
    all_watcher = asyncio.create_task(
        collect(launcher.events.watch(None, None), until=lambda e: e.kind is EventKind.ENDED)
    )
    await settle()

    record = await launcher.start_session("call", metadata={"voice": "alloy"})
    session = await joined(factory.last)
    one_watcher = asyncio.create_task(collect(launcher.events.watch(record.session_id, before)))
    for value in range(1, 101):  # a burst of observations: one coalesced update
        session.observe("llm_latency_ms", value)
    session.add("llm_output_tokens", 5)
    session.emit("turn_finished", {"text": "hi", "n": 1})
    await clock.advance(0.25)  # five metrics intervals
    factory.last.release.set()

    everything = await asyncio.wait_for(all_watcher, 2)
    one = await asyncio.wait_for(one_watcher, 2)  # ends by itself after ENDED
    assert one == everything
    assert_increasing(everything)
    assert all(e.session_id == record.session_id and e.call_id == "call" for e in everything)
    assert kinds(everything) == [
        EventKind.STARTED,
        EventKind.AGENT,
        EventKind.METRICS_UPDATED,
        EventKind.STATE_CHANGED,
        EventKind.STATE_CHANGED,
        EventKind.ENDED,
    ]
    started, agent_event, metrics_event, ending, ended_state, ended = everything

    assert started.payload["session"].session_id == record.session_id
    assert started.payload["session"].state is SessionState.RUNNING
    assert started.payload["session"].metadata == {"voice": "alloy"}
    assert agent_event.payload == {"name": "turn_finished", "data": {"text": "hi", "n": 1}}
    assert metrics_event.payload["metrics"]["llm_latency_ms__count"] == 100.0
    assert metrics_event.payload["metrics"]["llm_latency_ms__p95"] == 95.0
    assert metrics_event.payload["metrics"]["llm_output_tokens__total"] == 5.0
    assert ending.payload == {
        "previous_state": SessionState.RUNNING,
        "state": SessionState.ENDING,
    }
    assert ended_state.payload == {
        "previous_state": SessionState.ENDING,
        "state": SessionState.ENDED,
    }
    final = ended.payload["session"]
    assert final.state is SessionState.ENDED
    assert final.end_reason is EndReason.COMPLETED
    assert final.session_id == record.session_id
    assert ended.payload["metrics"]["llm_latency_ms__avg"] == 50.5
    assert ended.payload["metrics"] == final.final_metrics


async def test_metrics_updates_are_coalesced_per_interval(
    make_launcher: MakeLauncher, factory: FakeAgents, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(metrics_event_interval=0.1)
    record = await launcher.start_session("call")
    session = await joined(factory.last)
    watcher = asyncio.create_task(
        collect(
            launcher.events.watch(record.session_id, None),
            until=ended_event_of(record.session_id),
        )
    )
    await settle()

    for i in range(200):
        session.observe("x", i)
        if i % 50 == 0:
            await asyncio.sleep(0)  # spread over several loop iterations, within one interval
    await clock.advance(0.25)
    for _ in range(50):
        session.add("y")
    await clock.advance(0.25)
    await clock.advance(0.25)  # quiet: no update without new figures
    await launcher.close_session(record.session_id)

    events = await asyncio.wait_for(watcher, 2)
    updates = [e for e in events if e.kind is EventKind.METRICS_UPDATED]
    assert len(updates) == 2
    assert updates[0].payload["metrics"]["x__count"] == 200.0
    assert "y__total" not in updates[0].payload["metrics"]
    assert updates[1].payload["metrics"]["y__total"] == 50.0


async def test_no_metrics_update_after_the_end(
    make_launcher: MakeLauncher, factory: FakeAgents, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(metrics_event_interval=0.1)
    record = await launcher.start_session("call")
    session = await joined(factory.last)
    session.observe("x", 1.0)  # the update is due in 0.1 s, but the session ends first
    await launcher.close_session(record.session_id)
    await clock.advance(0.2)
    stream = launcher.events.watch(record.session_id, 0)
    events = await collect(stream)
    assert EventKind.METRICS_UPDATED not in kinds(events)
    assert kinds(events)[-1] is EventKind.ENDED
    assert events[-1].payload["metrics"]["x__count"] == 1.0


async def test_one_session_watcher_gets_only_its_session(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    a = await launcher.start_session("call-a")
    agent_a = factory.last
    b = await launcher.start_session("call-b")
    agent_b = factory.last
    session_a = await joined(agent_a)
    session_b = await joined(agent_b)
    watcher = asyncio.create_task(collect(launcher.events.watch(a.session_id, None)))
    await settle()
    session_b.emit("from_b")
    session_a.emit("from_a")
    await launcher.close_session(b.session_id)
    await launcher.close_session(a.session_id)
    events = await asyncio.wait_for(watcher, 2)
    assert {e.session_id for e in events} == {a.session_id}
    assert kinds(events) == [
        EventKind.AGENT,
        EventKind.STATE_CHANGED,
        EventKind.STATE_CHANGED,
        EventKind.ENDED,
    ]
    assert events[0].payload["name"] == "from_a"


async def test_resume_a_launcher_watch_without_duplicates(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    record = await launcher.start_session("call")
    session = await joined(factory.last)
    session.emit("one")
    # A watcher reads the first two events, then its connection drops.
    first = await collect(launcher.events.watch(None, 0), limit=2)
    assert kinds(first) == [EventKind.STARTED, EventKind.AGENT]
    session.emit("two")
    session.emit("three")
    await launcher.close_session(record.session_id)

    resumed = await collect(
        launcher.events.watch(None, first[-1].cursor), until=ended_event_of(record.session_id)
    )
    assert kinds(resumed) == [
        EventKind.AGENT,
        EventKind.AGENT,
        EventKind.STATE_CHANGED,
        EventKind.STATE_CHANGED,
        EventKind.ENDED,
    ]
    assert [e.payload.get("name") for e in resumed[:2]] == ["two", "three"]
    assert resumed[0].cursor == first[-1].cursor + 1
    assert_increasing(first + resumed)
    # The same resume on the one-session feed.
    resumed_one = await collect(launcher.events.watch(record.session_id, first[-1].cursor))
    assert resumed_one == resumed


async def test_watch_of_an_ended_session_yields_ended_and_stops(
    make_launcher: MakeLauncher,
) -> None:
    launcher = await make_launcher()
    record = await launcher.start_session("call")
    await launcher.close_session(record.session_id)
    events = await asyncio.wait_for(collect(launcher.events.watch(record.session_id, None)), 1)
    assert kinds(events) == [EventKind.ENDED]
    assert events[0].payload["session"].end_reason is EndReason.CLOSED_BY_REQUEST


async def test_launcher_watcher_behind_a_small_buffer_gets_a_gap(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher(event_buffer_size=8)
    record = await launcher.start_session("call")
    session = await joined(factory.last)
    stream = launcher.events.watch(None, 0)
    started = await anext(stream)
    assert started.kind is EventKind.STARTED
    for i in range(20):
        session.emit("tick", {"i": i})
    await launcher.close_session(record.session_id)
    rest = await collect(stream, until=ended_event_of(record.session_id))
    assert rest[0].kind is EventKind.GAP
    assert rest[0].payload["after_cursor"] == started.cursor
    assert rest[0].payload["next_cursor"] == rest[1].cursor
    assert len(rest) == 1 + 8
    assert kinds(rest)[-3:] == [EventKind.STATE_CHANGED, EventKind.STATE_CHANGED, EventKind.ENDED]
    assert_increasing([started, *rest])


async def test_events_of_many_sessions_interleave_in_cursor_order(
    make_launcher: MakeLauncher,
) -> None:
    async def join(agent: Any, call_type: str, call_id: str, *, session: Any) -> None:
        for i in range(5):
            session.emit("tick", {"i": i})
            await asyncio.sleep(0)

    ended: set[str] = set()

    def all_four_ended(event: SessionEvent) -> bool:
        if event.kind is EventKind.ENDED:
            ended.add(event.session_id)
        return len(ended) == 4

    launcher = await make_launcher(create_agent=lambda **_: object(), join=join)
    watcher = asyncio.create_task(collect(launcher.events.watch(None, None), until=all_four_ended))
    await settle()
    records = await asyncio.gather(*(launcher.start_session(f"c{i}") for i in range(4)))
    for record in records:
        await wait_ended(launcher, record.session_id)
    events = await asyncio.wait_for(watcher, 2)
    assert_increasing(events)
    for record in records:
        own = [e for e in events if e.session_id == record.session_id]
        assert kinds(own)[0] is EventKind.STARTED
        assert [e.payload["data"]["i"] for e in own if e.kind is AGENT] == list(range(5))
        assert kinds(own)[-1] is EventKind.ENDED


async def test_one_session_watch_resumed_after_its_end_stops(
    make_launcher: MakeLauncher,
) -> None:
    launcher = await make_launcher()
    record = await launcher.start_session("call")
    await launcher.close_session(record.session_id)
    other = await launcher.start_session("other")  # the feed moves on
    (ended,) = await collect(launcher.events.watch(record.session_id, None))
    # Resuming from the ENDED cursor, or from any later one, has nothing to wait for.
    for cursor in (ended.cursor, launcher.events.last_cursor):
        events = await asyncio.wait_for(
            collect(launcher.events.watch(record.session_id, cursor)), 1
        )
        assert events == []
    await launcher.close_session(other.session_id)


async def test_event_log_resume_after_ended_stops() -> None:
    log = EventLog()
    log.open_session("s")
    ended = log.publish("s", "call", EventKind.ENDED, {})
    publish(log, 3, "other")
    for cursor in (ended.cursor, log.last_cursor):
        assert await asyncio.wait_for(collect(log.watch("s", cursor)), 1) == []
    assert log._wakeups == {}
