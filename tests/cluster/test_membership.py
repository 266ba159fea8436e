"""A node declared dead ends what it runs and rejoins under a new id; nothing is resurrected."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

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
        # Sessions run on and stay readable here; one ends meanwhile (Redis cannot hear of it yet).
        assert launcher.agent_of(running.session_id) is not None
        assert (await launcher.get_session(running.session_id)).state is SessionState.RUNNING
        ended = await launcher.close_session(closing.session_id)
        assert ended.end_reason is EndReason.CLOSED_BY_REQUEST
        assert (await launcher.get_session(closing.session_id)).state is SessionState.ENDED
        # Another node's session cannot be read now: UNAVAILABLE, not a server error.
        with pytest.raises(Unavailable) as unreadable:
            await launcher.get_session("0f0e0d0c-0000-4000-8000-000000000000")
        assert unreadable.value.reason == "CLUSTER_UNAVAILABLE"
        assert "does not run on this node" in unreadable.value.message
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


async def test_a_redis_outage_with_its_data_kept_ends_no_healthy_nodes_sessions(
    tmp_path: Path, keys: ClusterKeys
) -> None:
    """Every lease lapses while Redis is down; when it comes back with its data, no
    node may declare the others dead for heartbeats that nobody could send."""
    port = free_port()
    redis = start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    launchers = [AgentLauncher(create_agent=_agent, join_call=_join) for _ in range(3)]
    members = [
        ClusterMember(url, advertise_address=f"n{i}", heartbeat=0.1, keys=keys) for i in range(3)
    ]
    try:
        for member, launcher in zip(members, launchers, strict=True):
            await member.join(launcher)
            await launcher.start()
        sessions = [
            await launcher.start_session(f"call-{i}") for i, launcher in enumerate(launchers)
        ]
        admin = aioredis.Redis.from_url(url)
        with contextlib.suppress(Exception):  # the server closes the connection
            await admin.execute_command("SHUTDOWN", "SAVE")
        await admin.aclose()
        redis.wait(10)
        # Down for longer than a lease (three heartbeats): every node notices.
        for launcher in launchers:
            await wait_until(
                lambda node=launcher: node.admission_held == "CLUSTER_UNAVAILABLE", timeout=10
            )
        redis = start_redis(port, tmp_path)  # back, with what it saved
        for launcher in launchers:
            await wait_until(lambda node=launcher: node.admission_held is None, timeout=10)
        # A few more heartbeats and sweeps: still nobody declared dead.
        beats = [m.lease.renewals for m in members]
        await wait_until(
            lambda: all(m.lease.renewals >= b + 5 for m, b in zip(members, beats, strict=True)),
            timeout=10,
        )
        assert [m.rejoined for m in members] == [0, 0, 0]
        for launcher, session in zip(launchers, sessions, strict=True):
            assert launcher.agent_of(session.session_id) is not None
            record = await members[0].registry.get(session.session_id)
            assert record is not None and record.state is SessionState.RUNNING
    finally:
        for launcher in launchers:
            await launcher.shutdown()
        for member in members:
            await member.leave()
        redis.kill()
        redis.wait(10)


def test_a_wildcard_bind_advertises_the_host_name() -> None:
    """0.0.0.0 names no address another machine could use; the host name does."""
    from agentplane.server.runner import _reachable

    assert _reachable("0.0.0.0", 50051) == f"{socket.gethostname()}:50051"
    assert _reachable("::", 7) == f"{socket.gethostname()}:7"
    assert _reachable("10.0.0.5", 50051) == "10.0.0.5:50051"
