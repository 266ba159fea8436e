"""A Start that reaches a full or draining node runs on the node with the most room."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentplane.cluster import ClusterKeys
from agentplane.cluster.member import ClusterMember
from agentplane.core import AgentLauncher
from agentplane.core.errors import AdmissionRejected, Draining
from tests.support import wait_until


async def _agent(**_: Any) -> dict[str, str]:
    return {}


async def _join(agent: dict[str, str], call_type: str, call_id: str) -> None:
    await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def cluster(
    redis_url: str, keys: ClusterKeys, count: int, **limits: Any
) -> AsyncIterator[list[AgentLauncher]]:
    launchers = [
        AgentLauncher(create_agent=_agent, join_call=_join, drain_timeout=30, **limits)
        for _ in range(count)
    ]
    members = [
        ClusterMember(redis_url, advertise_address=f"n{i}", heartbeat=0.1, keys=keys)
        for i in range(count)
    ]
    try:
        for member, launcher in zip(members, launchers, strict=True):
            await member.join(launcher)
            await launcher.start()

        async def all_advertised() -> bool:
            return len(await members[0].lease.live_nodes()) == count

        await wait_until(all_advertised, timeout=10)
        yield launchers
    finally:
        for launcher in launchers:
            await launcher.shutdown()
        for member in members:
            await member.leave()


def runs_on(launchers: list[AgentLauncher], session_id: str) -> list[int]:
    return [i for i, launcher in enumerate(launchers) if launcher.agent_of(session_id) is not None]


async def test_a_full_node_places_the_start_on_the_least_loaded_node(
    redis_url: str, keys: ClusterKeys
) -> None:
    async with cluster(redis_url, keys, 3, max_sessions_per_node=2) as launchers:
        a = launchers[0]
        local = [await a.start_session(f"local-{i}") for i in range(2)]
        assert [runs_on(launchers, r.session_id) for r in local] == [[0], [0]]
        # Node 1 holds one session, node 2 none: node 2 has the most room.
        await launchers[1].start_session("on-1")
        placed = await a.start_session("placed", metadata={"k": "v"}, created_by="alice")
        assert runs_on(launchers, placed.session_id) == [2]
        assert (placed.call_id, placed.metadata, placed.created_by) == (
            "placed",
            {"k": "v"},
            "alice",
        )
        # The placed session is the cluster's like any other: readable and closable anywhere.
        assert (await a.get_session(placed.session_id)).state.name == "RUNNING"
        closed = await a.close_session(placed.session_id)
        assert closed.end_reason is not None and closed.end_reason.name == "CLOSED_BY_REQUEST"
        # A full node still says it is ready: it can place Starts elsewhere.
        assert a.accepting


async def test_when_no_node_has_room_the_start_is_refused_with_a_retry_hint(
    redis_url: str, keys: ClusterKeys
) -> None:
    async with cluster(redis_url, keys, 2, max_sessions_per_node=1) as launchers:
        await launchers[0].start_session("a")
        await launchers[1].start_session("b")
        with pytest.raises(AdmissionRejected) as refused:
            await launchers[0].start_session("c")
        assert refused.value.reason == "MAX_SESSIONS_PER_NODE"
        assert refused.value.retry_after == 1.0
        assert "no other node had room" in refused.value.message
        assert launchers[0].stats().rejected_by_reason.get("MAX_SESSIONS_PER_NODE") == 1


async def test_the_placed_node_applies_the_cluster_limits_and_idempotency(
    redis_url: str, keys: ClusterKeys
) -> None:
    async with cluster(
        redis_url, keys, 2, max_sessions_per_node=1, max_sessions_per_call=1
    ) as launchers:
        a, b = launchers
        first = await a.start_session("call")
        # Placed on node 1, which refuses a second session of the call: the caller hears it.
        with pytest.raises(AdmissionRejected) as refused:
            await a.start_session("call")
        assert refused.value.reason == "MAX_SESSIONS_PER_CALL"
        # A retried Start with the same key answers the same session, wherever it
        # runs, even when every node is full.
        placed = await a.start_session("other", idempotency_key="k1")
        assert runs_on(launchers, placed.session_id) == [1]
        for node in (a, b):
            again = await node.start_session("other", idempotency_key="k1")
            assert again.session_id == placed.session_id != first.session_id


async def test_a_draining_node_places_starts_and_keeps_its_sessions_visible(
    redis_url: str, keys: ClusterKeys
) -> None:
    async with cluster(redis_url, keys, 2) as launchers:
        a, b = launchers
        held = await a.start_session("held")
        drain = asyncio.create_task(a.drain())
        await wait_until(lambda: not a.accepting, timeout=10)
        placed = await a.start_session("during-drain")
        assert runs_on(launchers, placed.session_id) == [1]
        # The draining node's session stays visible everywhere until it ends.
        assert (await b.get_session(held.session_id)).state.name == "RUNNING"
        await b.close_session(held.session_id)  # reaches the draining owner
        await asyncio.wait_for(drain, 10)  # nothing left to wait for
        # A draining node that cannot place anything says so as a draining node.
        await b.close_session(placed.session_id)
        await asyncio.wait_for(b.drain(), 10)
        with pytest.raises(Draining):
            await a.start_session("nowhere")


async def test_a_node_cap_alone_admits_exactly_up_to_it() -> None:
    launcher = AgentLauncher(create_agent=_agent, join_call=_join, max_sessions_per_node=2)
    async with launcher:
        results = await asyncio.gather(
            *(launcher.start_session(f"c{i}", idempotency_key=f"k{i}") for i in range(5)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, AdmissionRejected)]
        assert len(refused) == 3 and {r.reason for r in refused} == {"MAX_SESSIONS_PER_NODE"}
        assert refused[0].retry_after == 5.0  # limit_retry_after: a session may end any time
        assert not launcher.accepting
        # An idempotent retry of a held session still answers it.
        admitted = next(i for i, r in enumerate(results) if not isinstance(r, BaseException))
        again = await launcher.start_session(f"c{admitted}", idempotency_key=f"k{admitted}")
        assert again.session_id == results[admitted].session_id  # type: ignore[union-attr]
