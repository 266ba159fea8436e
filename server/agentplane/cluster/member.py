"""``ClusterMember``: this node in a cluster, from joining to leaving.

It owns the node's Redis client, its lease and the heartbeat task that
renews it (with what the node advertises: its gRPC address, capacity, load,
draining), and gives the launcher the cluster's registry, the command channel
to other nodes and the relay that makes its event log the cluster's. ``Runner`` joins
before the launcher starts and leaves after it shut down.

Every heartbeat also looks for nodes whose lease lapsed (three heartbeats
missed): the one node that claims a dead node ends its sessions NODE_LOST
and frees their slots. A node that finds itself declared dead (it was
paused, or cut off from Redis, for three heartbeats) ends what it still runs
(NODE_LOST, without writing over what the cluster recorded) and rejoins
under a new id: nothing is resurrected or run twice.

Heartbeat failures (Redis unreachable) are logged once per interval and
retried every heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from agentplane.core.launcher import AgentLauncher
from agentplane.core.models import EndReason
from agentplane.net import RateLimitedLog

from .commands import NodeCommands
from .events import RedisEventStream
from .keys import ClusterKeys
from .node import LEASE_HEARTBEATS, NodeLease, new_node_id
from .registry import RedisSessionRegistry
from .relay import BLOCK_MS as FOLLOW_BLOCK_MS
from .relay import EventRelay

logger = logging.getLogger("agentplane.cluster")

DEFAULT_HEARTBEAT = 1.0
# Redis connections of one node: Starts, reads, the heartbeat, the command
# channel and cross-node replies share them.
MAX_CONNECTIONS = 64
CONNECT_WAIT_SECONDS = 10.0
# An unreachable Redis host fails a call in this long, not in TCP's minutes.
CONNECT_TIMEOUT_SECONDS = 2.0
RETRIES = 2


class ClusterMember:
    """Join, heartbeat, leave (see the module doc)."""

    def __init__(
        self,
        redis_url: str,
        *,
        advertise_address: str,
        heartbeat: float = DEFAULT_HEARTBEAT,
        keys: ClusterKeys | None = None,
        retention_seconds: float = 300.0,
    ) -> None:
        # The optional extra: only a cluster needs redis-py.
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        self.advertise_address = advertise_address
        self.keys = keys or ClusterKeys()
        # A bounded pool that makes callers wait for a connection (a burst of
        # Starts queues here) instead of failing past the limit.
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=MAX_CONNECTIONS,
            timeout=CONNECT_WAIT_SECONDS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            # A pooled connection to a Redis that restarted fails on first use:
            # try again on a fresh one. Only connection errors (the command did
            # not run), never timeouts (it may have run: admission is no replay).
            retry=Retry(
                ExponentialBackoff(cap=0.5, base=0.02),
                RETRIES,
                supported_errors=(RedisConnectionError,),
            ),
        )
        self.redis: Any = aioredis.Redis(connection_pool=pool)
        # The event follower's own connection: its blocking read must never
        # hold a pooled one, and a socket timeout (not a cancellation, which
        # redis-py does not always carry through a blocking read) bounds it.
        self.follower_redis: Any = aioredis.Redis.from_url(
            redis_url,
            max_connections=1,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=FOLLOW_BLOCK_MS / 1000 + CONNECT_TIMEOUT_SECONDS,
        )
        self.lease = NodeLease(self.redis, heartbeat=heartbeat, keys=self.keys)
        self.registry = RedisSessionRegistry(
            self.redis,
            self.lease.node_id,
            keys=self.keys,
            retention_seconds=retention_seconds,
            lease_ms=self.lease.lease_ms,
        )
        self.retention_seconds = retention_seconds
        self.rejoined = 0
        self.commands: NodeCommands | None = None
        self.events: EventRelay | None = None
        self._launcher: AgentLauncher | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._failures = RateLimitedLog(logger, 10.0)

    @property
    def node_id(self) -> str:
        return self.lease.node_id

    async def join(self, launcher: AgentLauncher) -> None:
        """Take the lease (Redis must answer) and hand the launcher the cluster's registry."""
        self._launcher = launcher
        launcher.registry = self.registry
        self.commands = NodeCommands(
            self.redis, launcher, self.node_id, keys=self.keys, live_nodes=self.lease.live_nodes
        )
        launcher.remote = self.commands
        if not await self.lease.renew(**self._advertised()):
            raise RuntimeError(f"node id {self.node_id} is fenced already")
        self.events = EventRelay(
            RedisEventStream(self.redis, keys=self.keys),
            launcher.events,
            retention_seconds=self.retention_seconds,
            reader=RedisEventStream(self.follower_redis, keys=self.keys),
        )
        await self.events.start()
        await self.commands.listen()
        self._beat_task = asyncio.get_running_loop().create_task(
            self._beat(), name=f"agentplane-cluster-heartbeat-{self.node_id}"
        )
        logger.info(
            "joined the cluster as node %s, advertising %s", self.node_id, self.advertise_address
        )

    async def leave(self) -> None:
        """Stop the heartbeat and give the lease up; close the Redis client."""
        if self._beat_task is not None:
            self._beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat_task
            self._beat_task = None
        if self.commands is not None:
            await self.commands.stop()
        if self.events is not None:
            await self.events.stop()
        with contextlib.suppress(Exception):  # Redis may be gone: the lease lapses by itself
            await asyncio.wait_for(self.lease.leave(), self.lease.heartbeat)
        await self.redis.aclose()
        await self.follower_redis.aclose()

    def _advertised(self) -> dict[str, str | int | float | bool]:
        launcher = self._launcher
        assert launcher is not None
        stats = launcher.stats()
        return {
            "address": self.advertise_address,
            # This node's own cap (0: none); the cluster's limits live in Redis.
            "capacity": launcher.max_sessions_per_node or 0,
            "load": stats.in_flight,
            "draining": stats.draining,
        }

    async def _beat(self) -> None:
        launcher = self._launcher
        assert launcher is not None
        failed = 0
        while True:
            await asyncio.sleep(self.lease.heartbeat)
            try:
                renewed = await asyncio.wait_for(
                    self.lease.renew(**self._advertised()), self.lease.heartbeat
                )
            except Exception as error:  # Redis unreachable or slow: retry next beat
                self._failures.warning("cluster heartbeat failed: %r", error)
                failed += 1
                if failed == LEASE_HEARTBEATS:
                    # As long as a lease: the cluster's limits cannot be checked.
                    logger.error("the cluster's Redis is unreachable: admitting no sessions")
                    launcher.hold_admission(
                        "CLUSTER_UNAVAILABLE",
                        "the cluster's Redis cannot be reached: no session can be admitted "
                        "against the cluster's limits; retry shortly",
                    )
                continue
            try:
                if not renewed:
                    await self._rejoin()
                elif self.lease.was_new or failed:
                    # Redis answers again; if it lost its data (it knew this
                    # node no more), the sessions running here take their slots again.
                    added = await self.registry.resync(reregister=self.lease.was_new)
                    if added:
                        logger.warning(
                            "re-registered %d running sessions into the cluster's Redis", added
                        )
                if failed >= LEASE_HEARTBEATS:
                    logger.info("the cluster's Redis answers again: admitting sessions")
                    launcher.hold_admission(None)
                failed = 0
                await self._sweep()
            except Exception as error:
                self._failures.warning("cluster upkeep failed: %r", error)

    async def _sweep(self) -> None:
        """Claim nodes whose lease lapsed; end the sessions of those this node won."""
        launcher = self._launcher
        assert launcher is not None
        for node_id in await self.lease.lapsed():
            if not await self.lease.claim(node_id):
                continue  # another node cleans up after it
            lost = await self.lease.owned_by(node_id)
            logger.warning(
                "node %s missed its heartbeats: ending its %d sessions (node_lost)",
                node_id,
                len(lost),
            )
            for session_id in lost:
                await launcher.end_lost_session(session_id)
            await self.redis.delete(self.keys.owned(node_id))
            await self.redis.hdel(self.keys.counts, node_id)

    async def _rejoin(self) -> None:
        """Declared dead: end what still runs here, then join again under a new id."""
        launcher = self._launcher
        assert launcher is not None
        old = self.node_id
        logger.error(
            "node %s was declared dead by the cluster (its lease lapsed): ending its "
            "sessions and rejoining under a new id",
            old,
        )
        self.registry.fenced = True
        await launcher.end_local_sessions(
            EndReason.NODE_LOST, "this node was declared dead by the cluster"
        )
        self.lease.node_id = self.registry.node_id = new_node_id()
        self.registry.fenced = False
        if await self.lease.renew(**self._advertised()):
            if self.commands is not None:
                await self.commands.rename(self.node_id)
            logger.info("rejoined the cluster as node %s (was %s)", self.node_id, old)
        self.rejoined += 1
