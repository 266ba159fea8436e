"""Each node's event log is a replica of the cluster's stream: same cursors, same epoch, everywhere."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from agentplane.cluster import ClusterKeys
from agentplane.cluster.events import RedisEventStream
from agentplane.cluster.relay import EventRelay
from agentplane.core.events import EventLog
from agentplane.core.models import EventKind, SessionEvent
from tests.support import wait_until

from .conftest import free_port, start_redis

AGENT = EventKind.AGENT


class Node:
    """An event log relayed through the cluster's stream, as ClusterMember sets it up."""

    def __init__(
        self, url: str, keys: ClusterKeys, *, retention: float = 60.0, **options: int
    ) -> None:
        self.redis = aioredis.Redis.from_url(url)
        self.log = EventLog(buffer_size=options.pop("buffer_size", 1000))
        max_length = options.pop("max_length", 100_000)
        self.relay = EventRelay(
            RedisEventStream(self.redis, keys=keys, max_length=max_length),
            self.log,
            retention_seconds=retention,
            **options,
        )

    async def close(self) -> None:
        await self.relay.stop()
        await self.redis.aclose()


@contextlib.asynccontextmanager
async def nodes(
    url: str, keys: ClusterKeys, count: int = 2, **options: float
) -> AsyncIterator[list[Node]]:
    started = [Node(url, keys, **options) for _ in range(count)]  # type: ignore[arg-type]
    try:
        for node in started:
            await node.relay.start()
        yield started
    finally:
        for node in started:
            await node.close()


async def take(watch: AsyncIterator[SessionEvent], count: int) -> list[SessionEvent]:
    got = []
    async with asyncio.timeout(10):
        while len(got) < count:
            got.append(await anext(watch))
    return got


def emit(log: EventLog, numbers: range, session_id: str = "s") -> None:
    """Publish one agent event per number, as a session's agent would."""
    for n in numbers:
        log.publish(session_id, "call", AGENT, {"name": "x", "data": {"n": n}})


async def until_ended(watch: AsyncIterator[SessionEvent]) -> list[SessionEvent]:
    """Events up to the first ENDED, GAPs left out (how many depends on timing)."""
    got = []
    async with asyncio.timeout(10):
        async for event in watch:
            if event.kind is not EventKind.GAP:
                got.append(event)
            if event.kind is EventKind.ENDED:
                return got
    raise AssertionError("the watch ended before an ENDED event")


def data(events: list[SessionEvent]) -> list[object]:
    return [e.payload.get("data", {}).get("n") if e.kind is AGENT else e.kind for e in events]


async def test_every_node_sees_every_nodes_events_under_the_same_cursors(
    redis_url: str, keys: ClusterKeys
) -> None:
    async with nodes(redis_url, keys, 3) as (a, b, c):
        assert a.log.epoch == b.log.epoch == c.log.epoch
        watchers = [n.log.watch(None, None) for n in (a, b, c)]
        for watcher in watchers:  # each is waiting before anything is published
            waiting = asyncio.ensure_future(anext(watcher))
            await asyncio.sleep(0)
            waiting.cancel()
        a.log.open_session("sa")
        for n in range(5):
            a.log.publish("sa", "call", AGENT, {"name": "x", "data": {"n": n}})
            b.log.publish("sb", "call", AGENT, {"name": "x", "data": {"n": 100 + n}})
        seen = [await take(n.log.watch(None, 0), 10) for n in (a, b, c)]
        cursors = [[e.cursor for e in events] for events in seen]
        assert cursors[0] == cursors[1] == cursors[2] == list(range(1, 11))
        assert data(seen[0]) == data(seen[1]) == data(seen[2])
        # Each node's events keep the order it published them in.
        assert [e.payload["data"]["n"] for e in seen[2] if e.session_id == "sa"] == [0, 1, 2, 3, 4]
        # Another node's session has its own list too: a watcher of one session works anywhere.
        only_b = await take(c.log.watch("sb", 0), 5)
        assert [e.payload["data"]["n"] for e in only_b] == [100, 101, 102, 103, 104]


async def test_a_watcher_moves_to_another_node_with_its_cursor_and_loses_nothing(
    redis_url: str, keys: ClusterKeys
) -> None:
    async with nodes(redis_url, keys, 2) as (a, b):
        emit(b.log, range(4))
        on_a = a.log.watch(None, 0)
        first = await take(on_a, 2)
        await on_a.aclose()  # the connection to node A dropped
        emit(a.log, range(4, 8))
        # It resumes on node B with the cursor and epoch it had.
        on_b = b.log.watch(None, first[-1].cursor, a.log.epoch)
        rest = await take(on_b, 6)
        assert [e.kind for e in rest] == [AGENT] * 6  # no GAP: the same log
        assert data(first + rest) == list(range(8))


async def test_a_node_that_joins_later_holds_the_recent_history(
    redis_url: str, keys: ClusterKeys
) -> None:
    async with nodes(redis_url, keys, 1) as (a,):
        emit(a.log, range(30))
        await wait_until(lambda: a.log.last_cursor == 30, timeout=10)
        late = Node(redis_url, keys, buffer_size=10)
        try:
            await late.relay.start()
            assert late.log.epoch == a.log.epoch and late.log.last_cursor == 30
            # It holds what its ring holds (10); an older cursor gets an explicit GAP.
            events = await take(late.log.watch(None, 5, a.log.epoch), 11)
            assert events[0].kind is EventKind.GAP
            assert events[0].payload == {"after_cursor": 5, "next_cursor": 21}
            assert [e.cursor for e in events[1:]] == list(range(21, 31))
        finally:
            await late.close()


async def test_history_trimmed_from_the_stream_is_an_explicit_gap(
    redis_url: str, keys: ClusterKeys
) -> None:
    async with nodes(redis_url, keys, 1, max_length=100) as (a,):
        emit(a.log, range(1000))
        await wait_until(lambda: a.log.last_cursor == 1000, timeout=10)
        # A node whose history reaches further back than the stream still holds.
        late = Node(redis_url, keys, buffer_size=1000, max_length=100)
        try:
            await late.relay.start()
            events = await take(late.log.watch(None, 0, a.log.epoch), 2)
            gap, first = events
            assert gap.kind is EventKind.GAP and gap.payload["after_cursor"] == 0
            assert first.cursor == gap.payload["next_cursor"] > 1
            # A watcher of one session waiting from before the hole is told too.
            watch = late.log.watch("s", 0)
            told = await take(watch, 1)
            assert told[0].kind is EventKind.GAP
        finally:
            await late.close()


async def test_a_stream_restarted_empty_is_a_gap_then_the_new_log(
    redis_url: str, keys: ClusterKeys
) -> None:
    async with nodes(redis_url, keys, 2) as (a, b):
        emit(a.log, range(3))
        watch = b.log.watch(None, 0)
        assert data(await take(watch, 3)) == [0, 1, 2]
        old = b.log.epoch
        await a.redis.delete(keys.events, keys.events_meta)  # Redis lost its data
        a.log.publish("s", "call", AGENT, {"name": "x", "data": {"n": 3}})
        gap, event = await take(watch, 2)
        assert gap.kind is EventKind.GAP
        assert (event.cursor, event.payload["data"]["n"]) == (1, 3)
        assert b.log.epoch != old and b.log.epoch == a.log.epoch
        # A watcher resuming with the old epoch is told as well.
        resumed = await take(a.log.watch(None, 3, old), 2)
        assert resumed[0].kind is EventKind.GAP and resumed[1].cursor == 1


async def test_events_published_while_redis_is_down_arrive_when_it_is_back(
    tmp_path: Path, keys: ClusterKeys
) -> None:
    port = free_port()
    server = start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        async with nodes(url, keys, 2) as (a, b):
            a.log.open_session("s")
            a.log.publish("s", "call", EventKind.STARTED, {})
            watch = b.log.watch(None, 0)
            assert [e.kind for e in await take(watch, 1)] == [EventKind.STARTED]
            server.kill()
            server.wait(10)
            emit(a.log, range(5))
            a.log.publish("s", "call", EventKind.ENDED, {})
            await wait_until(lambda: a.relay.pending == 6, timeout=10)
            server = start_redis(port, tmp_path)  # back, and empty
            gap, *events = await take(watch, 7)
            assert gap.kind is EventKind.GAP
            assert data(events) == [0, 1, 2, 3, 4, EventKind.ENDED]
            assert [e.cursor for e in events] == list(range(1, 7))
            await wait_until(lambda: a.relay.pending == 0, timeout=10)
    finally:
        server.kill()
        server.wait(10)


async def test_a_full_outbox_drops_metrics_and_agent_events_never_lifecycle_ones(
    tmp_path: Path, keys: ClusterKeys
) -> None:
    port = free_port()
    server = start_redis(port, tmp_path)
    try:
        async with nodes(f"redis://127.0.0.1:{port}/0", keys, 1, outbox_limit=4) as (a,):
            server.kill()
            server.wait(10)
            a.log.publish("s", "call", EventKind.STARTED, {})
            emit(a.log, range(6))
            a.log.publish("s", "call", EventKind.ENDED, {})
            assert a.relay.pending == 4 and a.relay.dropped == 4
            server = start_redis(port, tmp_path)
            events = await until_ended(a.log.watch(None, 0, "old"))
            assert data(events) == [EventKind.STARTED, 4, 5, EventKind.ENDED]
    finally:
        server.kill()
        server.wait(10)


async def test_another_nodes_ended_session_is_forgotten_after_the_retention_window(
    redis_url: str, keys: ClusterKeys
) -> None:
    async with nodes(redis_url, keys, 2, retention=0.2) as (a, b):
        a.log.open_session("s")
        a.log.publish("s", "call", EventKind.STARTED, {})
        await wait_until(lambda: b.log.holds("s"), timeout=10)
        a.log.publish("s", "call", EventKind.ENDED, {})
        await wait_until(lambda: not b.log.holds("s"), timeout=10)


async def test_watching_another_nodes_session_before_any_of_its_events_arrived(
    redis_url: str, keys: ClusterKeys
) -> None:
    async with nodes(redis_url, keys, 2) as (a, b):
        assert not b.log.holds("s")
        watch = b.log.watch("s", None)
        waiting = asyncio.ensure_future(anext(watch))
        await wait_until(lambda: b.log.holds("s"), timeout=10)
        a.log.open_session("s")
        a.log.publish("s", "call", EventKind.ENDED, {})
        ended = await asyncio.wait_for(waiting, 10)
        assert ended.kind is EventKind.ENDED
        with pytest.raises(StopAsyncIteration):
            await anext(watch)
