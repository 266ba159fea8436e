"""ListSessions across a cluster on a real redis-server.

The cluster's walk must page exactly as one node's does: the same records in
the same order on the same pages, whichever node answers, ties included.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from agentplane.cluster import ClusterKeys, NodeLease, RedisSessionRegistry
from agentplane.core import (
    EndReason,
    InMemorySessionRegistry,
    Limits,
    ListPosition,
    SessionQuery,
    SessionRecord,
    SessionRegistry,
    SessionState,
)


class Node:
    def __init__(self, url: str, keys: ClusterKeys) -> None:
        self.redis = aioredis.Redis.from_url(url)
        self.lease = NodeLease(self.redis, heartbeat=5.0, keys=keys)
        self.registry = RedisSessionRegistry(self.redis, self.lease.node_id, keys=keys)


@pytest.fixture
async def nodes(redis_url: str, keys: ClusterKeys) -> AsyncIterator[list[Node]]:
    three = [Node(redis_url, keys) for _ in range(3)]
    for i, node in enumerate(three):
        assert await node.lease.renew(address=f"127.0.0.1:{5000 + i}")
    yield three
    for node in three:
        await node.redis.aclose()


def sessions(count: int, seed: int) -> list[SessionRecord]:
    """Sessions with many equal start times, a few calls, users and end reasons."""
    rng = random.Random(seed)
    base = time.time() - 3600
    made = []
    for n in range(count):
        ended = rng.random() < 0.4
        started = base + rng.choice([0.0, 0.5, 1.0, 1.0, 1.0, 2.25]) + rng.randrange(20)
        made.append(
            SessionRecord(
                session_id=f"{rng.randrange(16**8):08x}-{n}",
                call_id=f"call-{rng.randrange(4)}",
                call_type="default",
                started_at=started,
                created_by=rng.choice(["ann", "bob"]),
                state=SessionState.ENDED if ended else SessionState.RUNNING,
                end_reason=rng.choice(list(EndReason)) if ended else None,
                ended_at=started + 30 if ended else None,
            )
        )
    return made


async def fill(nodes: list[Node], made: list[SessionRecord]) -> InMemorySessionRegistry:
    """Admit ``made`` across the nodes (ended ones then end); the same into one node's registry."""
    single = InMemorySessionRegistry()
    for n, item in enumerate(made):
        running = SessionRecord(
            session_id=item.session_id,
            call_id=item.call_id,
            call_type=item.call_type,
            started_at=item.started_at,
            created_by=item.created_by,
            state=SessionState.RUNNING,
        )
        node = nodes[n % len(nodes)].registry
        assert await node.admit(running, Limits(), item.started_at) is None
        assert await single.admit(running, Limits(), item.started_at) is None
        if item.ended:
            await node.release(item)
            await node.update(item)
            await single.update(item)
    return single


async def walk(
    registry: SessionRegistry, query: SessionQuery, limit: int, max_examined: int
) -> list[list[str]]:
    pages: list[list[str]] = []
    after: ListPosition | None = None
    while True:
        page = await registry.list(query, after, limit, max_examined)
        pages.append([r.session_id for r in page.records])
        if page.resume is None:
            return pages
        assert len(pages) < 1000
        after = page.resume


QUERIES = [
    SessionQuery(),
    SessionQuery(newest_first=False),
    SessionQuery(call_id="call-1"),
    SessionQuery(call_id="call-2", newest_first=False),
    SessionQuery(states=frozenset({SessionState.RUNNING}), created_by="ann"),
    SessionQuery(end_reasons=frozenset({EndReason.ERROR, EndReason.NODE_LOST})),
]


@pytest.mark.parametrize("query", QUERIES, ids=range(len(QUERIES)))
async def test_every_node_pages_exactly_as_one_node_does(
    nodes: list[Node], query: SessionQuery
) -> None:
    made = sessions(300, seed=15)
    single = await fill(nodes, made)
    start = min(item.started_at for item in made)
    ranged = [
        query,
        SessionQuery(
            call_id=query.call_id,
            states=query.states,
            end_reasons=query.end_reasons,
            created_by=query.created_by,
            newest_first=query.newest_first,
            started_after=start + 3.0,
            started_before=start + 12.0,
        ),
    ]
    for q in ranged:
        for limit, max_examined in ((7, 5000), (50, 5000), (5, 40), (1000, 5000)):
            expected = await walk(single, q, limit, max_examined)
            for node in nodes:
                assert await walk(node.registry, q, limit, max_examined) == expected, (
                    q,
                    limit,
                    max_examined,
                )


async def test_more_ties_than_a_batch_are_neither_lost_nor_repeated(nodes: list[Node]) -> None:
    at = time.time()
    made = [
        SessionRecord(session_id=f"tie-{n:03}", call_id="c", call_type="t", started_at=at)
        for n in range(300)
    ]
    for item in made:
        assert await nodes[0].registry.admit(item, Limits(), at) is None
    for newest_first, limit in ((True, 10), (False, 70), (True, 1000)):
        pages = await walk(nodes[1].registry, SessionQuery(newest_first=newest_first), limit, 5000)
        ids = [sid for page in pages for sid in page]
        expected = sorted(item.session_id for item in made)
        assert ids == (expected[::-1] if newest_first else expected)


async def test_forgotten_and_expired_sessions_leave_the_index(
    nodes: list[Node], keys: ClusterKeys, redis: aioredis.Redis
) -> None:
    made = sessions(20, seed=3)
    for item in made:
        item.state, item.end_reason, item.ended_at = SessionState.RUNNING, None, None
    await fill(nodes, made)
    await nodes[0].registry.forget(made[0].session_id)
    # An ended session of a node that died expires without anyone forgetting it.
    await redis.delete(keys.record(made[1].session_id))
    page = await nodes[2].registry.list(SessionQuery(), None, 100)
    listed = {r.session_id for r in page.records}
    assert listed == {item.session_id for item in made[2:]}
    assert await redis.zscore(keys.sessions, made[0].session_id) is None
    assert await redis.zscore(keys.sessions, made[1].session_id) is None
    assert await redis.zcard(keys.sessions) == 18
    assert await redis.zscore(keys.call_sessions(made[0].call_id), made[0].session_id) is None


async def test_the_owner_answers_its_own_sessions_fresher_than_redis(nodes: list[Node]) -> None:
    item = SessionRecord(session_id="mine", call_id="c", call_type="t", started_at=time.time())
    owner = nodes[0].registry
    assert await owner.admit(item, Limits(), item.started_at) is None
    # Admitted here, the owner keeps the record; a change not yet written to Redis:
    item.metadata = {"seen": "locally"}
    page = await owner.list(SessionQuery(), None, 10)
    assert page.records[0].metadata == {"seen": "locally"}
    other = await nodes[1].registry.list(SessionQuery(), None, 10)
    assert other.records[0].session_id == "mine" and other.records[0].metadata == {}
