"""Live watchers: a caught-up watch sends events through its ``live`` sender.

What a live watch sends and what it yields are, together, exactly what a
plain watch yields: same events, same order, no duplicates, the same gaps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from agentplane.core import EventKind, EventLog, SessionEvent
from tests.support import collect, settle

AGENT = EventKind.AGENT


class Sender:
    """A live sender that takes events until told to decline some."""

    def __init__(self, declines: Callable[[SessionEvent], bool] = lambda event: False) -> None:
        self.sent: list[SessionEvent] = []
        self.declines = declines

    def __call__(self, event: SessionEvent) -> bool:
        if self.declines(event):
            return False
        self.sent.append(event)
        return True


def publish(log: EventLog, n: int, session_id: str = "s", start: int = 0) -> list[SessionEvent]:
    return [log.publish(session_id, "call", AGENT, {"i": start + i}) for i in range(n)]


async def until(condition: Callable[[], bool], rounds: int = 1000) -> None:
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_a_caught_up_watcher_gets_events_through_its_sender() -> None:
    log = EventLog()
    sender = Sender()
    stream = log.watch(None, None, live=sender)
    yielded = asyncio.create_task(collect(stream))
    await settle()
    assert set(log._live) == {None}
    expected = publish(log, 3, "a") + publish(log, 2, "b")
    await until(lambda: len(sender.sent) == 5)
    assert sender.sent == expected
    assert not yielded.done()  # nothing was yielded: every event went live
    yielded.cancel()
    await asyncio.gather(yielded, return_exceptions=True)
    assert log._live == {}
    assert not log.watched("a")


async def test_a_declined_event_is_yielded_then_the_watch_follows_live_again() -> None:
    log = EventLog()
    sender = Sender(declines=lambda event: event.payload["i"] in (2, 5))
    stream = log.watch(None, None, live=sender)
    first = asyncio.create_task(anext(stream))
    await settle()
    events = publish(log, 4)
    assert await asyncio.wait_for(first, 1) == events[2]
    assert sender.sent == events[:2]  # sent before the decline, in order
    # Handed back, the watch yields until it has caught up...
    assert await asyncio.wait_for(anext(stream), 1) == events[3]
    # ...then follows live again.
    second = asyncio.create_task(anext(stream))
    await settle()
    events += publish(log, 4, start=4)
    assert await asyncio.wait_for(second, 1) == events[5]
    assert sender.sent == [*events[:2], events[4]]
    assert [await anext(stream), await anext(stream)] == events[6:8]
    third = asyncio.create_task(anext(stream))
    await settle()
    events += publish(log, 1, start=8)
    await until(lambda: len(sender.sent) == 4)
    assert sender.sent == [*events[:2], events[4], events[8]]
    third.cancel()
    await asyncio.gather(third, return_exceptions=True)
    await stream.aclose()
    assert log._live == {}


async def test_many_events_of_one_turn_go_out_in_one_pass_in_order() -> None:
    log = EventLog()
    senders = [Sender() for _ in range(5)]
    tasks = [asyncio.create_task(collect(log.watch(None, None, live=s))) for s in senders]
    await settle()
    expected = publish(log, 50)
    await asyncio.sleep(0)  # the one delivery pass for all of them
    assert all(sender.sent == expected for sender in senders)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_session_watch_yields_its_ended_event_and_ends() -> None:
    log = EventLog()
    log.open_session("s")
    sender = Sender()
    watched = asyncio.create_task(collect(log.watch("s", None, live=sender)))
    await settle()
    events = publish(log, 2) + publish(log, 1, "other")
    ended = log.publish("s", "call", EventKind.ENDED, {})
    assert await asyncio.wait_for(watched, 1) == [ended]
    assert sender.sent == events[:2]  # only its own session's
    assert log._live == {}


async def test_a_live_session_watcher_stops_when_the_session_is_forgotten() -> None:
    log = EventLog()
    log.open_session("s")
    watched = asyncio.create_task(collect(log.watch("s", None, live=Sender())))
    await settle()
    assert set(log._live) == {"s"}
    log.forget_session("s")
    assert await asyncio.wait_for(watched, 1) == []
    assert log._live == {}


async def test_close_ends_live_watchers_after_the_last_events() -> None:
    log = EventLog()
    log.open_session("s")
    everyone, one = Sender(), Sender()
    tasks = [
        asyncio.create_task(collect(log.watch(None, None, live=everyone))),
        asyncio.create_task(collect(log.watch("s", None, live=one))),
    ]
    await settle()
    last = publish(log, 1)
    log.close()
    # Closing hands back at once: each watch yields what the pass had not sent, then ends.
    assert await asyncio.wait_for(asyncio.gather(*tasks), 1) == [last, last]
    assert everyone.sent == one.sent == []
    assert log._live == {}


async def test_a_live_watcher_that_fell_out_of_the_ring_gets_its_gap() -> None:
    log = EventLog(buffer_size=8)
    sender = Sender()
    stream = log.watch(None, None, live=sender)
    first = asyncio.create_task(anext(stream))
    await settle()
    publish(log, 20)  # in one turn: more than the ring holds
    gap = await asyncio.wait_for(first, 1)
    assert gap.kind is EventKind.GAP
    assert gap.payload == {"after_cursor": 0, "next_cursor": 13}
    # It catches up by itself, then follows live again.
    caught_up = [await anext(stream) for _ in range(8)]
    assert [event.cursor for event in caught_up] == list(range(13, 21))
    rest = asyncio.create_task(anext(stream))
    await settle()
    later = publish(log, 1, start=20)
    await until(lambda: sender.sent == later)
    rest.cancel()
    await asyncio.gather(rest, return_exceptions=True)
    await stream.aclose()


async def test_a_reset_log_hands_live_watchers_back_with_a_gap() -> None:
    log = EventLog()
    publish(log, 3)
    sender = Sender()
    stream = log.watch(None, None, live=sender)
    first = asyncio.create_task(anext(stream))
    await settle()
    log.reset("another-log", last_cursor=40)
    gap = await asyncio.wait_for(first, 1)
    assert gap.kind is EventKind.GAP
    assert gap.payload["after_cursor"] == 0
    assert sender.sent == []
    await stream.aclose()
    assert log._live == {}


async def test_a_failing_sender_hands_its_event_back_and_spares_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = EventLog()

    def broken(event: SessionEvent) -> bool:
        raise RuntimeError("sender bug")

    fine = Sender()
    stream = log.watch(None, None, live=broken)
    first = asyncio.create_task(anext(stream))
    other = asyncio.create_task(collect(log.watch(None, None, live=fine)))
    await settle()
    with caplog.at_level(logging.ERROR, logger="agentplane.core.events"):
        events = publish(log, 2)
        assert await asyncio.wait_for(first, 1) == events[0]
    assert "live event sender failed" in caplog.text
    assert fine.sent == events
    other.cancel()
    await asyncio.gather(other, return_exceptions=True)
    await stream.aclose()


async def test_live_and_plain_watchers_see_the_same_events() -> None:
    log = EventLog(buffer_size=32)
    flip = Sender(declines=lambda event: event.payload["i"] % 3 == 0)
    yielded: list[SessionEvent] = []

    async def consume() -> None:
        async for event in log.watch(None, None, live=flip):
            yielded.append(event)

    plain = asyncio.create_task(collect(log.watch(None, None), limit=100))
    consumer = asyncio.create_task(consume())
    await settle()
    expected = []
    for i in range(100):
        expected.append(log.publish(f"s{i % 4}", "call", AGENT, {"i": i}))
        if i % 5 == 0:
            await asyncio.sleep(0)
    assert await asyncio.wait_for(plain, 2) == expected
    await until(lambda: len(yielded) + len(flip.sent) >= 100)
    assert sorted(yielded + flip.sent, key=lambda event: event.cursor) == expected
    assert yielded and flip.sent  # both ways were taken
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)
    assert log._live == {}
