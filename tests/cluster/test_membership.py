"""A node declared dead ends what it runs and rejoins under a new id; nothing is resurrected."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agentplane.cluster import ClusterKeys
from agentplane.cluster.member import ClusterMember
from agentplane.core import AgentLauncher, EndReason, SessionState
from agentplane.core.errors import AdmissionRejected, Unavailable
from tests.support import wait_until

from .conftest import free_port, start_redis


async def _agent(**_: Any) -> dict[str, str]:
    return {}


async def _join(agent: dict[str, str], call_type: str, call_id: str) -> None:
    await asyncio.Event().wait()


async def test_a_paused_node_is_declared_dead_then_rejoins_without_resurrecting(
    redis_url: str, keys: ClusterKeys
) -> None:
    launchers = [AgentLauncher(create_agent=_agent, join_call=_join) for _ in range(2)]
    members = [
        ClusterMember(redis_url, advertise_address=f"n{i}", heartbeat=0.1, keys=keys)
        for i in range(2)
    ]
    try:
        for member, launcher in zip(members, launchers, strict=True):
            await member.join(launcher)
            await launcher.start()
        sleeper = members[0]
        record = await launchers[0].start_session("call-1")
        old_id = sleeper.node_id
        # The node stops heartbeating (a long GC pause, a frozen VM): it misses three.
        assert sleeper._beat_task is not None
        sleeper._beat_task.cancel()
        lost = await wait_until(
            lambda: _ended(launchers[1], record.session_id), timeout=10, interval=0.05
        )
        assert lost.end_reason is EndReason.NODE_LOST
        # It wakes up: fenced, it ends its own copy and rejoins under a new id.
        sleeper._beat_task = asyncio.get_running_loop().create_task(sleeper._beat())
        await wait_until(lambda: sleeper.rejoined == 1, timeout=10)
        assert sleeper.node_id != old_id
        assert launchers[0].stats().in_flight == 0  # the agent no longer runs
        # What the cluster recorded stands: NODE_LOST, not overwritten by the old node.
        shared = await launchers[1].get_session(record.session_id)
        assert shared.state is SessionState.ENDED and shared.end_reason is EndReason.NODE_LOST
        # And the node takes new sessions again under its new id.
        again = await launchers[0].start_session("call-2")
        assert (await launchers[1].get_session(again.session_id)).call_id == "call-2"
    finally:
        for launcher in launchers:
            await launcher.shutdown()
        for member in members:
            await member.leave()


async def _ended(launcher: AgentLauncher, session_id: str) -> Any:
    record = await launcher.get_session(session_id)
    return record if record.state is SessionState.ENDED else None


async def test_while_redis_is_down_the_node_admits_nothing_and_then_loses_nothing(
    tmp_path: Path, keys: ClusterKeys
) -> None:
    port = free_port()
    redis = start_redis(port, tmp_path)
    launcher = AgentLauncher(create_agent=_agent, join_call=_join, max_concurrent_sessions=2)
    member = ClusterMember(
        f"redis://127.0.0.1:{port}/0", advertise_address="n", heartbeat=0.1, keys=keys
    )
    try:
        await member.join(launcher)
        await launcher.start()
        running = await launcher.start_session("runs-through")
        closing = await launcher.start_session("ends-during")
        redis.kill()  # an outage, and Redis comes back empty (no persistence)
        redis.wait(10)
        await wait_until(lambda: launcher.admission_held == "CLUSTER_UNAVAILABLE", timeout=10)
        assert not launcher.accepting  # /ready and gRPC health say so
        with pytest.raises(Unavailable) as refused:
            await launcher.start_session("during")
        assert refused.value.reason == "CLUSTER_UNAVAILABLE"
        # Sessions run on; one ends meanwhile (Redis cannot hear of it yet).
        assert launcher.agent_of(running.session_id) is not None
        ended = await launcher.close_session(closing.session_id)
        assert ended.end_reason is EndReason.CLOSED_BY_REQUEST
        redis = start_redis(port, tmp_path)
        await wait_until(lambda: launcher.admission_held is None, timeout=10)
        assert launcher.accepting
        # Nothing is lost from view: the running session is registered again, with its
        # slot, and the end that happened during the outage is recorded.
        shared = member.registry
        again = await shared.get(running.session_id)
        assert again is not None and again.state is SessionState.RUNNING
        gone = await shared.get(closing.session_id)
        assert gone is not None and gone.end_reason is EndReason.CLOSED_BY_REQUEST
        await launcher.start_session("after")  # the second slot
        with pytest.raises(AdmissionRejected):  # the running session holds the other
            await launcher.start_session("one-too-many")
    finally:
        await launcher.shutdown()
        await member.leave()
        redis.kill()
        redis.wait(10)
