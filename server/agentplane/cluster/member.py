"""``ClusterMember``: this node in a cluster, from joining to leaving.

It owns the node's Redis client, its lease and the heartbeat task that
renews it (with what the node advertises: its gRPC address, capacity, load,
draining), and gives the launcher the cluster's registry. ``Runner`` joins
before the launcher starts and leaves after it shut down.

Heartbeat failures (Redis unreachable) are logged once per interval and
retried every heartbeat; a node whose lease lapsed is fenced by Redis (its
Starts are refused with UNAVAILABLE) until it rejoins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from agentplane.core.launcher import AgentLauncher
from agentplane.net import RateLimitedLog

from .keys import ClusterKeys
from .node import NodeLease
from .registry import RedisSessionRegistry

logger = logging.getLogger("agentplane.cluster")

DEFAULT_HEARTBEAT = 1.0


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
        import redis.asyncio as aioredis  # the optional extra: only a cluster needs it

        self.advertise_address = advertise_address
        self.keys = keys or ClusterKeys()
        self.redis: Any = aioredis.Redis.from_url(redis_url)
        self.lease = NodeLease(self.redis, heartbeat=heartbeat, keys=self.keys)
        self.registry = RedisSessionRegistry(
            self.redis, self.lease.node_id, keys=self.keys, retention_seconds=retention_seconds
        )
        self.fenced = False
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
        if not await self.lease.renew(**self._advertised()):
            raise RuntimeError(f"node id {self.node_id} is fenced already")
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
        with contextlib.suppress(Exception):  # Redis may be gone: the lease lapses by itself
            await asyncio.wait_for(self.lease.leave(), self.lease.heartbeat)
        await self.redis.aclose()

    def _advertised(self) -> dict[str, str | int | float | bool]:
        launcher = self._launcher
        assert launcher is not None
        stats = launcher.stats()
        return {
            "address": self.advertise_address,
            "capacity": stats.capacity or 0,
            "load": stats.in_flight,
            "draining": stats.draining,
        }

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.lease.heartbeat)
            try:
                renewed = await asyncio.wait_for(
                    self.lease.renew(**self._advertised()), self.lease.heartbeat
                )
            except Exception as error:  # Redis unreachable or slow: retry next beat
                self._failures.warning("cluster heartbeat failed: %r", error)
                continue
            if not renewed and not self.fenced:
                self.fenced = True
                logger.error(
                    "node %s was declared dead by the cluster (its lease lapsed): it takes "
                    "no new sessions",
                    self.node_id,
                )
