"""``EventRelay``: this node's event log as a replica of the cluster's stream.

The launcher publishes into its ``EventLog`` as on one node; relayed, the log
hands each event here. A shipper task appends them to the cluster's stream in
batches (one script call per batch, cursors given in Redis), and a follower
task reads the stream (one blocking ``XREAD`` from where it is) and feeds
every event back into the log with the stream's cursor and epoch, this node's
own events included. So every node holds the same events under the same
cursors: a watcher can move between nodes with its cursor and epoch.

What the follower sees decides what watchers see: a new epoch (Redis
restarted empty) resets the log, and open watchers get a GAP; a hole (the
stream was trimmed past this node while it lagged) is a GAP too. Another
node's ended session is forgotten here after the retention window, as its
owner forgets it.

While Redis cannot be reached, events wait here in order (up to
``outbox_limit``; past it the oldest metrics and agent events are dropped
first, never a session's lifecycle events) and reach the stream, and every
watcher, when Redis answers again. An append whose answer was lost may be
appended twice (delivery is at least once).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

from agentplane.core.events import EventLog
from agentplane.core.expiry import ExpiryQueue
from agentplane.core.models import EventKind
from agentplane.net import RateLimitedLog

from .events import RedisEventStream
from .records import event_to_json

logger = logging.getLogger("agentplane.cluster")

DEFAULT_OUTBOX_LIMIT = 10_000
BATCH = 500
# A blocking read returns at least this often: a paused Redis cannot hang the
# follower, and a stream that restarted empty is noticed within it.
BLOCK_MS = 1_000
RETRY_MIN_SECONDS = 0.05
RETRY_MAX_SECONDS = 1.0
FLUSH_SECONDS = 2.0
# Ended sessions of other nodes waiting to be forgotten, at most.
MAX_FORGETTING = 100_000
# What can be dropped from a full outbox: a later event supersedes or outweighs it.
DROPPABLE = (EventKind.METRICS_UPDATED.value, EventKind.AGENT.value)


class EventRelay:
    """Ship this node's events to the stream; follow the stream into the log."""

    def __init__(
        self,
        stream: RedisEventStream,
        log: EventLog,
        *,
        retention_seconds: float,
        outbox_limit: int = DEFAULT_OUTBOX_LIMIT,
        backfill: int | None = None,
        reader: RedisEventStream | None = None,
    ) -> None:
        self.stream = stream
        # What the follower reads through: best a client of its own (ClusterMember's).
        self.reader = reader or stream
        self.log = log
        self.outbox_limit = outbox_limit
        # How much history a joining node reads in: as much as its ring holds.
        self.backfill = backfill
        self.dropped = 0
        # Encoded events not yet appended, oldest first, with their kind.
        self._outbox: collections.deque[tuple[str, str]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._forgetting = ExpiryQueue(retention_seconds, MAX_FORGETTING, self._forget)
        self._tasks: list[asyncio.Task[None]] = []
        self._position = 0
        self._failures = RateLimitedLog(logger, 10.0)

    @property
    def position(self) -> int:
        """The last cursor read from the stream."""
        return self._position

    @property
    def pending(self) -> int:
        """Events waiting to be appended."""
        return len(self._outbox)

    async def start(self) -> None:
        """Join the stream (Redis must answer), read recent history, relay from now on."""
        epoch, last = await self.stream.join()
        held = self.backfill if self.backfill is not None else self.log.buffer_size
        self._position = max(0, last - held)
        self.log.reset(epoch, self._position)
        await self._catch_up()
        self.log.relay_to(self._send)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._ship(), name="agentplane-cluster-event-shipper"),
            loop.create_task(self._follow(), name="agentplane-cluster-event-follower"),
        ]

    async def stop(self) -> None:
        """Append what is waiting (bounded), then stop both tasks (bounded too)."""
        if self._outbox and self._tasks:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._drained(), FLUSH_SECONDS)
            if self._outbox:
                logger.warning(
                    "%d events were not appended to the cluster's stream", len(self._outbox)
                )
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=FLUSH_SECONDS)
            if stuck:
                # A Redis command that did not take the cancellation: it ends
                # when its client is closed (the owner of the client does that).
                logger.warning("the event relay did not stop within %.0f s", FLUSH_SECONDS)
        await self._forgetting.aclose()

    async def _drained(self) -> None:
        while self._outbox:
            self._wakeup.set()
            await asyncio.sleep(0.01)  # the shipper empties the outbox; bounded by stop()

    # ---------------------------------------------------------------- shipping

    def _send(
        self, session_id: str, call_id: str, time: float, kind: EventKind, payload: dict[str, Any]
    ) -> None:
        self._outbox.append((kind.value, event_to_json(session_id, call_id, time, kind, payload)))
        if len(self._outbox) > self.outbox_limit:
            self._drop_one()
        self._wakeup.set()

    def _drop_one(self) -> None:
        for index, (kind, _) in enumerate(self._outbox):
            if kind in DROPPABLE:
                del self._outbox[index]
                break
        else:
            return  # only lifecycle events: they are few per session and all kept
        self.dropped += 1
        self._failures.warning(
            "the cluster's stream is unreachable and %d events wait: dropped %d metrics or "
            "agent events so far",
            len(self._outbox),
            self.dropped,
        )

    async def _ship(self) -> None:
        delay = RETRY_MIN_SECONDS
        while True:
            if not self._outbox:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = [encoded for _, encoded in list(self._outbox)[:BATCH]]
            try:
                await self.stream.append(batch)
            except Exception as error:  # Redis unreachable: keep them, in order
                self._failures.warning("appending events to the cluster's stream failed: %r", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay = RETRY_MIN_SECONDS
            for _ in batch:
                self._outbox.popleft()

    # ---------------------------------------------------------------- following

    async def _catch_up(self) -> None:
        """Read everything after ``position`` that is already in the stream."""
        while True:
            batch = await self.reader.read(self._position, count=BATCH)
            if not self._take(batch.epoch, batch.events):
                continue
            if len(batch.events) < BATCH:
                return

    async def _follow(self) -> None:
        delay = RETRY_MIN_SECONDS
        while True:
            try:
                batch = await self.reader.read(self._position, count=BATCH, block_ms=BLOCK_MS)
            except Exception as error:  # Redis unreachable, or paused past the socket timeout
                self._failures.warning("reading the cluster's event stream failed: %r", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay = RETRY_MIN_SECONDS
            self._take(batch.epoch, batch.events)

    def _take(self, epoch: str, events: list[Any]) -> bool:
        """Feed a batch to the log; False when the stream restarted (read again from 0)."""
        if epoch and epoch != self.log.epoch:
            logger.warning(
                "the cluster's event stream restarted (epoch %s -> %s): watchers get a gap",
                self.log.epoch,
                epoch,
            )
            self._position = 0
            self.log.reset(epoch, 0)
            return False
        if not events:
            return True
        self.log.ingest(events)
        self._position = events[-1].cursor
        for event in events:
            if event.kind is EventKind.ENDED:
                self._forgetting.add(event.session_id)
        return True

    async def _forget(self, session_id: str) -> None:
        # The owner forgets its own sessions (the launcher's retention); this
        # is for everybody else's, and harmless twice.
        self.log.forget_session(session_id)
