"""The event log: one cursor sequence, many independent watchers.

Every event gets the next cursor and goes into a fixed-size ring (for the feed
of all sessions) and into its session's own short list (for watchers of one
session). Watchers do not have queues: each keeps its own position and reads
the shared log at its own pace, so publishing never waits for anyone and a
slow watcher only delays itself. A watcher whose position fell out of the
buffer gets one explicit GAP event and continues from the oldest event still
held: no silent holes, no duplicates.

Cursors belong to one log: each log has an ``epoch`` (a random id made when it
is), and a watcher resuming with the epoch of another log (this server before a
restart, another node) gets an explicit GAP and everything still held, never a
silent skip of events whose cursors happen to be lower than its own.

An ended session keeps its list for the retention window, within one byte
budget for all of them (``retained_bytes``): past it, the oldest ended
sessions lose every event but their last (ENDED), and a watcher resuming into
what was dropped gets the usual GAP.

In a cluster the log is a replica of one shared log kept elsewhere
(``relay_to``): ``publish`` hands the event to the relay, which gives it its
cursor there, and every node's log takes the shared log's events back with
their cursors (``ingest``), the node's own included. Watchers read the
replica exactly as they read a local log, so cursors and epochs mean the same
on every node. A hole in what arrives (the shared log was trimmed past this
node, or it restarted empty: ``reset``) is a GAP for whoever it skips.

A watcher that has caught up may follow the log live (``watch(live=...)``):
its consumer gives a function that sends an event at once, without waiting,
when it can (a transport with room in its buffers and windows). Events then
go to such watchers in one pass per loop turn, with no task woken and no
generator resumed for each (issue 16: this was most of a fan-out's cost).
Whatever the function declines (a full buffer, an event needing a check that
awaits, the end of a session) is handed back: the watch yields it as usual
and follows live again once caught up. Live or not, a watcher sees the same
events in the same order.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from .models import EventKind, SessionEvent

logger = logging.getLogger(__name__)

DEFAULT_BUFFER = 10_000
DEFAULT_SESSION_BUFFER = 256
DEFAULT_RETAINED_BYTES = 64 * 1024 * 1024
# What an event costs besides its data: the event, its dict, the list slot.
EVENT_OVERHEAD_BYTES = 400


def _cursor_of(event: SessionEvent) -> int:
    return event.cursor


def approx_bytes(event: SessionEvent) -> int:
    """About how much memory ``event`` holds; only agent events carry much data."""
    if event.kind is EventKind.AGENT:
        data = event.payload.get("data")
        return EVENT_OVERHEAD_BYTES + len(json.dumps(data, default=str))
    if event.kind is EventKind.METRICS_UPDATED:
        return EVENT_OVERHEAD_BYTES + 64 * len(event.payload.get("metrics", ()))
    return EVENT_OVERHEAD_BYTES


# Where a relayed log sends what is published: (session_id, call_id, time, kind, payload).
Relay = Callable[[str, str, float, EventKind, dict[str, Any]], None]

# A live watcher's sender: True when ``event`` was sent (or is not for this
# watcher), False to have the watch yield it instead. It must not block.
LiveSend = Callable[[SessionEvent], bool]


class _LiveWatch:
    """A caught-up watcher that takes events from the delivery pass."""

    __slots__ = ("generation", "handback", "position", "send")

    def __init__(
        self, send: LiveSend, position: int, generation: int, handback: asyncio.Future[None]
    ) -> None:
        self.send = send
        self.position = position
        self.generation = generation
        # Done when the watch should go on by itself from ``position``.
        self.handback = handback

    def hand_back(self) -> None:
        if not self.handback.done():
            self.handback.set_result(None)


class _SessionLog:
    __slots__ = ("closed", "ended", "events", "evicted_upto")

    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        # Highest cursor dropped from this session's list (0: none dropped).
        self.evicted_upto = 0
        # Set once the session is forgotten: its watchers stop.
        self.closed = False
        # Set once its ENDED event was published: nothing more is awaited.
        self.ended = False


class EventLog:
    """Bounded, resumable fan-out of session events.

    Example::

        log = EventLog()
        async for event in log.watch(session_id=None, after_cursor=None):
            ...  # every event published from now on
    """

    def __init__(
        self,
        buffer_size: int = DEFAULT_BUFFER,
        session_buffer_size: int = DEFAULT_SESSION_BUFFER,
        retained_bytes: int = DEFAULT_RETAINED_BYTES,
    ) -> None:
        if buffer_size < 1 or session_buffer_size < 2:
            raise ValueError("event buffers must hold at least one event (two per session)")
        if retained_bytes < 0:
            raise ValueError("retained_bytes must be >= 0")
        # Names this log: cursors mean nothing in another one.
        self.epoch = secrets.token_hex(8)
        self._retained_budget = retained_bytes
        # Ended sessions, oldest first -> the bytes their lists hold.
        self._retained: OrderedDict[str, int] = OrderedDict()
        self._retained_total = 0
        self._size = buffer_size
        self._session_size = session_buffer_size
        self._ring: list[SessionEvent | None] = [None] * buffer_size
        self._last_cursor = 0
        self._sessions: dict[str, _SessionLog] = {}
        # The waiting watchers per watched key (None: the feed of all sessions);
        # a key is present only while somebody waits on it.
        self._wakeups: dict[str | None, dict[asyncio.Future[None], None]] = {}
        # Open watches per watched key (None: the feed of all sessions).
        self._watching: dict[str | None, int] = {}
        self._closed = False
        # Relayed (a cluster): where publish() sends events; None: this log gives cursors.
        self._relay: Relay | None = None
        # Cursors below this were never held here (a hole, a reset).
        self._floor = 1
        # Bumped by reset(): a watcher from an older generation is told of the gap.
        self._generation = 0
        # Watchers following live, per watched key (None: the feed of all sessions).
        self._live: dict[str | None, dict[_LiveWatch, None]] = {}
        self._delivery_due = False

    @property
    def last_cursor(self) -> int:
        return self._last_cursor

    @property
    def buffer_size(self) -> int:
        """How many events of all sessions the ring holds."""
        return self._size

    @property
    def retained_bytes(self) -> int:
        """About how much the ended sessions' event lists hold (ENDED events aside)."""
        return self._retained_total

    def watched(self, session_id: str) -> bool:
        """Whether anyone watches ``session_id``'s events (or the feed of all sessions).

        Relayed, watchers on other nodes count too and cannot be seen from
        here: always True.
        """
        if self._relay is not None:
            return True
        return bool(self._watching.get(session_id) or self._watching.get(None))

    @property
    def parked(self) -> int:
        """How many watchers have caught up and wait for events (live ones included)."""
        waiting = sum(
            1 for waiters in self._wakeups.values() for waiter in waiters if not waiter.done()
        )
        return waiting + sum(len(watches) for watches in self._live.values())

    @property
    def relayed(self) -> bool:
        return self._relay is not None

    def holds(self, session_id: str) -> bool:
        """Whether this log keeps a list for ``session_id``."""
        return session_id in self._sessions

    def relay_to(self, relay: Relay) -> None:
        """Make this log a replica: ``publish`` goes to ``relay``, events come back by ``ingest``."""
        self._relay = relay

    def reset(self, epoch: str, last_cursor: int = 0) -> None:
        """Become the replica of the shared log ``epoch``, positioned after ``last_cursor``.

        Everything held is dropped (its cursors belong to the old log); open
        watchers get a GAP and continue in the new log.
        """
        self.epoch = epoch
        self._generation += 1
        self._ring = [None] * self._size
        self._last_cursor = last_cursor
        self._floor = last_cursor + 1
        self._retained.clear()
        self._retained_total = 0
        for log in self._sessions.values():
            log.events.clear()
            log.evicted_upto = last_cursor
        for key in list(self._wakeups):
            self._wake(key)
        for key in list(self._live):
            self._hand_back(key)

    def ingest(self, events: Sequence[SessionEvent]) -> None:
        """Take events of the shared log, in cursor order, with the cursors it gave."""
        for event in events:
            if event.cursor <= self._last_cursor:
                continue  # already held (a re-read)
            if event.cursor > self._last_cursor + 1:
                self._hole(event.cursor)
            self._place(event)

    def _hole(self, next_cursor: int) -> None:
        """Cursors before ``next_cursor`` never arrived: whoever waits on them gets a GAP."""
        self._floor = next_cursor
        for log in self._sessions.values():
            if not log.ended:
                log.evicted_upto = max(log.evicted_upto, next_cursor - 1)
        self._last_cursor = next_cursor - 1

    def close(self) -> None:
        """End every watch once it has caught up (the launcher shut down)."""
        self._closed = True
        for key in list(self._wakeups):
            self._wake(key)
        for key in list(self._live):
            self._hand_back(key)

    def open_session(self, session_id: str) -> None:
        """Start keeping a per-session list for ``session_id``."""
        self._sessions.setdefault(session_id, _SessionLog())

    def forget_session(self, session_id: str) -> None:
        """Drop the per-session list; watchers of that session stop."""
        log = self._sessions.pop(session_id, None)
        self._retained_total -= self._retained.pop(session_id, 0)
        if log is not None:
            log.closed = True
            self._wake(session_id)
            self._hand_back(session_id)

    def _retain(self, session_id: str, log: _SessionLog) -> None:
        """Account an ended session's list; trim the oldest ones past the budget."""
        size = sum(approx_bytes(event) for event in log.events[:-1])
        self._retained[session_id] = size
        self._retained_total += size
        while self._retained_total > self._retained_budget and self._retained:
            oldest, held = self._retained.popitem(last=False)
            self._retained_total -= held
            trimmed = self._sessions.get(oldest)
            if trimmed is not None and len(trimmed.events) > 1:
                # Keep the ENDED event: a late watcher still learns how it ended.
                trimmed.evicted_upto = trimmed.events[-2].cursor
                del trimmed.events[:-1]

    def publish(
        self, session_id: str, call_id: str, kind: EventKind, payload: dict[str, Any]
    ) -> SessionEvent:
        """Append an event and wake its watchers; never blocks.

        Relayed, the event goes to the relay and comes back by ``ingest``;
        the event returned then has no cursor yet (0).
        """
        now = time.time()
        if self._relay is not None:
            self._relay(session_id, call_id, now, kind, payload)
            return SessionEvent(0, session_id, call_id, now, kind, payload)
        event = SessionEvent(self._last_cursor + 1, session_id, call_id, now, kind, payload)
        self._place(event)
        return event

    def _place(self, event: SessionEvent) -> None:
        self._last_cursor = event.cursor
        self._ring[event.cursor % self._size] = event
        session_id, kind = event.session_id, event.kind
        log = self._sessions.get(session_id)
        if log is None and self._relay is not None and session_id:
            # Another node's session: keep its list as its owner does. Every
            # event since the floor came here, so none of its was missed since.
            log = self._sessions[session_id] = _SessionLog()
            log.evicted_upto = self._floor - 1
        if log is not None:
            log.events.append(event)
            if len(log.events) > self._session_size:
                # Drop the older half at once: amortised O(1) per event.
                drop = len(log.events) - self._session_size // 2
                log.evicted_upto = log.events[drop - 1].cursor
                del log.events[:drop]
            if kind is EventKind.ENDED:
                log.ended = True
                self._retain(session_id, log)
            self._wake(session_id)
        self._wake(None)
        if self._live and not self._delivery_due:
            # One pass for every event placed in this loop turn.
            self._delivery_due = True
            asyncio.get_running_loop().call_soon(self._deliver_live)

    def _wake(self, key: str | None) -> None:
        for waiter in self._wakeups.pop(key, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _hand_back(self, key: str | None) -> None:
        """Every live watcher of ``key`` goes on by itself."""
        for watch in self._live.pop(key, ()):
            watch.hand_back()

    def _deliver_live(self) -> None:
        """Send what was placed to every live watcher; hand back the ones that cannot take it."""
        self._delivery_due = False
        for key, watches in list(self._live.items()):
            stopped = [watch for watch in watches if not self._send_live(key, watch)]
            for watch in stopped:
                del watches[watch]
                watch.hand_back()
            if not watches and self._live.get(key) is watches:
                del self._live[key]

    def _send_live(self, key: str | None, watch: _LiveWatch) -> bool:
        """Send ``watch`` the events after its position; False: the watch must go on by itself."""
        if watch.generation != self._generation or self._closed:
            return False
        send = watch.send
        try:
            if key is None:
                oldest = self._oldest()
                while watch.position < self._last_cursor:
                    if watch.position < oldest - 1:
                        return False  # fell out of the ring: the watch reports the gap
                    event = self._ring[(watch.position + 1) % self._size]
                    if event is None or event.cursor != watch.position + 1 or not send(event):
                        return False
                    watch.position = event.cursor
                return True
            log = self._sessions.get(key)
            if log is None or log.closed or watch.position < log.evicted_upto:
                return False
            events = log.events
            index = bisect.bisect_right(events, watch.position, key=_cursor_of)
            for event in events[index:]:
                # The watch itself ends with the session's last event.
                if event.kind is EventKind.ENDED or not send(event):
                    return False
                watch.position = event.cursor
            return not log.ended
        except Exception:
            # A sender's bug: this watcher goes on by itself, the others are unaffected.
            logger.exception("live event sender failed")
            return False

    async def _follow_live(self, key: str | None, position: int, send: LiveSend) -> int:
        """Take events from the delivery pass until handed back; returns the position reached."""
        handback: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watch = _LiveWatch(send, position, self._generation, handback)
        watches = self._live.setdefault(key, {})
        watches[watch] = None
        try:
            await handback
        finally:
            # A cancelled watcher must not stay behind.
            if watches.pop(watch, 0) is None and not watches and self._live.get(key) is watches:
                del self._live[key]
        return watch.position

    async def _wait(self, key: str | None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._wakeups.setdefault(key, {})
        waiters[waiter] = None
        try:
            await waiter
        finally:
            # A cancelled watcher must not leave its waiter behind.
            if self._wakeups.get(key) is waiters:
                waiters.pop(waiter, None)
                if not waiters:
                    del self._wakeups[key]

    def _gap(self, after: int, next_cursor: int) -> SessionEvent:
        return SessionEvent(
            cursor=next_cursor - 1,
            session_id="",
            call_id="",
            time=time.time(),
            kind=EventKind.GAP,
            payload={"after_cursor": after, "next_cursor": next_cursor},
        )

    def watch(
        self,
        session_id: str | None,
        after_cursor: int | None,
        epoch: str = "",
        live: LiveSend | None = None,
    ) -> AsyncIterator[SessionEvent]:
        """Yield events after ``after_cursor`` (None: from now on), forever.

        With ``session_id`` only that session's events are yielded, and the
        iteration ends after its ENDED event (or when it is forgotten).
        ``epoch`` is the log ``after_cursor`` came from (empty: unknown, taken
        as this one); another log's cursor starts with a GAP and replays
        everything still held. Nothing happens until the first event is
        asked for: the watch counts as open from then until it ends or is
        closed. With ``live``, a caught-up watch hands events to ``live``
        (see the module's docstring) and yields only what it declines.
        """
        # The watcher's own generator, not one wrapping it: every event to
        # every watcher passes one generator fewer (issue 16).
        if session_id is None:
            return self._watch_all(after_cursor, epoch, live)
        return self._watch_session(session_id, after_cursor, epoch, live)

    def _opened(self, key: str | None) -> None:
        self._watching[key] = self._watching.get(key, 0) + 1

    def _closed_watch(self, key: str | None) -> None:
        left = self._watching[key] - 1
        if left:
            self._watching[key] = left
        else:
            del self._watching[key]

    def _foreign(self, after_cursor: int, epoch: str) -> bool:
        """Whether ``after_cursor`` cannot be a position in this log."""
        if epoch:
            return epoch != self.epoch
        # No epoch (an older client): a cursor this log never issued still tells.
        return after_cursor > self._last_cursor

    def _oldest(self) -> int:
        """The oldest cursor the ring can still hold."""
        return max(self._floor, self._last_cursor - self._size + 1, 1)

    async def _watch_all(
        self, after_cursor: int | None, epoch: str, live: LiveSend | None
    ) -> AsyncIterator[SessionEvent]:
        foreign = after_cursor is not None and self._foreign(after_cursor, epoch)
        self._opened(None)
        try:
            generation = self._generation
            if after_cursor is None:
                position = self._last_cursor
            elif foreign:
                # Another log's cursor (a restart, another node): say so, then
                # replay everything still held.
                oldest = self._oldest()
                yield self._gap(after_cursor, oldest)
                position = oldest - 1
            else:
                position = max(after_cursor, 0)
            while True:
                if generation != self._generation:
                    # The shared log restarted: this position means nothing in it.
                    generation = self._generation
                    position = -1
                oldest = self._oldest()
                if position < oldest - 1:
                    yield self._gap(max(position, 0), oldest)
                    position = oldest - 1
                if position < self._last_cursor:
                    event = self._ring[(position + 1) % self._size]
                    if event is None or event.cursor != position + 1:
                        continue  # overwritten while we yielded: the check above reports the gap
                    position = event.cursor
                    yield event
                    continue
                if self._closed:
                    return
                if live is not None:
                    position = await self._follow_live(None, position, live)
                    continue
                await self._wait(None)
        finally:
            self._closed_watch(None)

    async def _watch_session(
        self, session_id: str, after_cursor: int | None, epoch: str, live: LiveSend | None
    ) -> AsyncIterator[SessionEvent]:
        foreign = after_cursor is not None and self._foreign(after_cursor, epoch)
        self._opened(session_id)
        try:
            generation = self._generation
            log = self._sessions.get(session_id)
            if log is None:
                if self._relay is None:
                    return
                # Another node's session with no event here since the floor: wait for its next.
                log = self._sessions[session_id] = _SessionLog()
                log.evicted_upto = self._floor - 1
            if after_cursor is None:
                ended = [e for e in log.events if e.kind is EventKind.ENDED]
                if ended:
                    # Nothing new will ever come: tell the watcher how it ended.
                    yield ended[-1]
                    return
                position = self._last_cursor
            elif foreign:
                # Another log's cursor (a restart, another node).
                first = log.events[0].cursor if log.events else self._last_cursor + 1
                yield self._gap(after_cursor, first)
                position = first - 1
            else:
                position = max(after_cursor, 0)
            while True:
                if generation != self._generation:
                    generation = self._generation
                    position = -1
                if position < log.evicted_upto:
                    index = bisect.bisect_right(log.events, log.evicted_upto, key=_cursor_of)
                    first = (
                        log.events[index].cursor
                        if index < len(log.events)
                        else log.evicted_upto + 1
                    )
                    yield self._gap(max(position, 0), first)
                    position = first - 1
                index = bisect.bisect_right(log.events, position, key=_cursor_of)
                if index < len(log.events):
                    event = log.events[index]
                    position = event.cursor
                    yield event
                    if event.kind is EventKind.ENDED:
                        return
                    continue
                if log.closed or log.ended or self._closed:
                    return  # a watcher resumed after the ENDED event: nothing will come
                if live is not None:
                    position = await self._follow_live(session_id, position, live)
                    continue
                await self._wait(session_id)
        finally:
            self._closed_watch(session_id)
