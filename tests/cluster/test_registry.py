"""The cluster registry against a real redis-server: atomic limits, leases, fencing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from agentplane.cluster import ClusterKeys, NodeLease, RedisSessionRegistry
from agentplane.cluster.records import record_from_json, record_to_json
from agentplane.cluster.registry import Fenced
from agentplane.core.errors import AdmissionRejected
from agentplane.core.models import EndReason, SessionRecord, SessionState
from agentplane.core.registry import Limits
from tests.support import wait_until


class Node:
    """One node's view: its own Redis client, lease and registry."""

    def __init__(self, url: str, keys: ClusterKeys, heartbeat: float = 5.0) -> None:
        self.redis = aioredis.Redis.from_url(url)
        self.lease = NodeLease(self.redis, heartbeat=heartbeat, keys=keys)
        self.registry = RedisSessionRegistry(self.redis, self.lease.node_id, keys=keys)

    async def admit(self, record: SessionRecord, limits: Limits) -> str:
        """'ok', 'dup:<id>', or the rejection reason."""
        try:
            existing = await self.registry.admit(record, limits, time.monotonic())
        except AdmissionRejected as rejected:
            return rejected.reason
        return "ok" if existing is None else f"dup:{existing.session_id}"


@pytest.fixture
async def nodes(redis_url: str, keys: ClusterKeys) -> AsyncIterator[list[Node]]:
    three = [Node(redis_url, keys) for _ in range(3)]
    for node in three:
        assert await node.lease.renew(address=f"127.0.0.1:{5000 + len(node.lease.node_id)}")
    yield three
    for node in three:
        await node.redis.aclose()


def record(n: int, call_id: str = "", key: str = "", user: str = "u") -> SessionRecord:
    return SessionRecord(
        session_id=f"s-{n}",
        call_id=call_id or f"call-{n}",
        call_type="default",
        started_at=time.time(),
        created_by=user,
        idempotency_key=key,
    )


async def test_three_nodes_with_100_concurrent_starts_each_admit_exactly_the_limit(
    nodes: list[Node],
) -> None:
    limits = Limits(max_concurrent_sessions=50)
    outcomes = await asyncio.gather(*(nodes[n % 3].admit(record(n), limits) for n in range(300)))
    assert outcomes.count("ok") == 50
    assert outcomes.count("MAX_CONCURRENT_SESSIONS") == 250


async def test_one_session_per_call_across_nodes(nodes: list[Node]) -> None:
    limits = Limits(max_sessions_per_call=1)
    outcomes = await asyncio.gather(
        *(nodes[n % 3].admit(record(n, call_id="shared"), limits) for n in range(30))
    )
    assert outcomes.count("ok") == 1
    assert outcomes.count("MAX_SESSIONS_PER_CALL") == 29
    # Released, the call has room again.
    winner = outcomes.index("ok")
    await nodes[winner % 3].registry.release(record(winner, call_id="shared"))
    assert await nodes[1].admit(record(1000, call_id="shared"), limits) == "ok"


async def test_an_idempotency_key_names_one_session_on_every_node(nodes: list[Node]) -> None:
    limits = Limits()
    outcomes = await asyncio.gather(
        *(nodes[n % 3].admit(record(n, key="k1"), limits) for n in range(9))
    )
    assert outcomes.count("ok") == 1
    winner = f"s-{outcomes.index('ok')}"
    assert sorted(set(outcomes) - {"ok"}) == [f"dup:{winner}"]
    # Keys are per user: another user's identical key is another session.
    assert await nodes[0].admit(record(99, key="k1", user="other"), limits) == "ok"


async def test_permits_per_minute_hold_across_nodes(nodes: list[Node]) -> None:
    limits = Limits(permits_per_minute=5)
    outcomes = [await nodes[n % 3].admit(record(n), limits) for n in range(7)]
    assert outcomes == ["ok"] * 5 + ["RATE_LIMITED"] * 2
    with pytest.raises(AdmissionRejected) as refused:
        await nodes[0].registry.admit(record(8), limits, 0.0)
    assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 60


async def test_a_dead_nodes_slots_come_back_when_its_lease_lapses(
    redis_url: str, keys: ClusterKeys, nodes: list[Node]
) -> None:
    limits = Limits(max_concurrent_sessions=2, max_sessions_per_call=1)
    short = Node(redis_url, keys, heartbeat=0.1)  # lease: three heartbeats, 0.3 s
    try:
        assert await short.lease.renew()
        assert await short.admit(record(1, call_id="c"), limits) == "ok"
        assert await short.admit(record(2), limits) == "ok"
        assert await nodes[0].admit(record(3), limits) == "MAX_CONCURRENT_SESSIONS"
        assert await nodes[0].admit(record(4, call_id="c"), limits) == "MAX_CONCURRENT_SESSIONS"
        # The short node stops renewing (it died): its slots stop counting by themselves.
        await wait_until(lambda: _admits(nodes[0], record(4, call_id="c"), limits), timeout=5)
        assert short.lease.node_id in await nodes[0].lease.lapsed()
        assert await nodes[1].admit(record(5), limits) == "ok"
    finally:
        await short.redis.aclose()


async def _admits(node: Node, rec: SessionRecord, limits: Limits) -> bool:
    return await node.admit(rec, limits) == "ok"


async def test_a_node_declared_dead_is_fenced_and_its_sessions_are_claimed_once(
    redis_url: str, keys: ClusterKeys, nodes: list[Node]
) -> None:
    short = Node(redis_url, keys, heartbeat=0.05)
    try:
        assert await short.lease.renew()
        for n in range(3):
            assert await short.admit(record(n), Limits()) == "ok"
        await wait_until(lambda: _lapsed(nodes[0], short.lease.node_id), timeout=5)
        claims = await asyncio.gather(*(n.lease.claim(short.lease.node_id) for n in nodes))
        assert sorted(claims) == [False, False, True]
        assert await nodes[0].lease.owned_by(short.lease.node_id) == ["s-0", "s-1", "s-2"]
        # It comes back: fenced, it may neither renew nor admit.
        assert not await short.lease.renew()
        with pytest.raises(Fenced):
            await short.registry.admit(record(10), Limits(), 0.0)
        live = {info.node_id for info in await nodes[0].lease.live_nodes()}
        assert live == {n.lease.node_id for n in nodes}
    finally:
        await short.redis.aclose()


async def _lapsed(node: Node, node_id: str) -> bool:
    return node_id in await node.lease.lapsed()


async def test_release_is_once_and_forget_keeps_a_newer_sessions_key(nodes: list[Node]) -> None:
    a, b = nodes[0], nodes[1]
    limits = Limits(max_concurrent_sessions=1)
    first = record(1, key="k")
    assert await a.admit(first, limits) == "ok"
    await a.registry.release(first)
    await b.registry.release(first)  # a second release frees nothing more
    assert await b.admit(record(2), limits) == "ok"
    assert await a.admit(record(3), limits) == "MAX_CONCURRENT_SESSIONS"
    # Forget removes the record and its key, so the key can start a new session.
    await a.registry.forget("s-1")
    assert await a.registry.get("s-1") is None
    await b.registry.release(record(2))
    assert await b.admit(record(4, key="k"), limits) == "ok"
    await a.registry.forget("s-1")  # idempotent, and the newer session keeps the key
    assert await a.admit(record(5, key="k"), Limits()) == "dup:s-4"


async def test_records_round_trip_and_ended_ones_expire_with_retention(
    redis_url: str, keys: ClusterKeys
) -> None:
    node = Node(redis_url, keys)
    node.registry.retention_ms = 200
    try:
        assert await node.lease.renew()
        rec = record(1, key="k")
        rec.metadata = {"lang": "fr", "n": 2}
        assert await node.admit(rec, Limits()) == "ok"
        rec.state = SessionState.RUNNING
        await node.registry.update(rec)
        assert await node.registry.get("s-1") == rec
        rec.state, rec.end_reason, rec.ended_at = SessionState.ENDED, EndReason.COMPLETED, 1.5
        rec.final_metrics = {"x": 1.0}
        await node.registry.update(rec)
        assert await node.registry.get("s-1") == rec
        assert record_from_json(record_to_json(rec)) == rec
        # Record and idempotency key go when the retention window ends.
        await wait_until(lambda: _gone(node, "s-1"), timeout=5)
        assert await node.admit(record(2, key="k"), Limits()) == "ok"
    finally:
        await node.redis.aclose()


async def _gone(node: Node, session_id: str) -> bool:
    return await node.registry.get(session_id) is None


async def test_starts_are_unavailable_while_redis_cannot_be_reached(keys: ClusterKeys) -> None:
    """Cluster limits cannot be checked without Redis: a Start is refused, UNAVAILABLE."""
    from agentplane.cluster.registry import RedisUnavailable
    from agentplane.core.errors import Unavailable

    unreachable = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        registry = RedisSessionRegistry(unreachable, "n1", keys=keys)
        with pytest.raises(RedisUnavailable) as refused:
            await registry.admit(record(1), Limits(), 0.0)
        assert isinstance(refused.value, Unavailable)
        assert refused.value.reason == "CLUSTER_UNAVAILABLE"
        assert "retry shortly" in str(refused.value)
    finally:
        await unreachable.aclose()
