"""``NodeLease``: a node's membership in the cluster.

A node holds a lease in Redis (``nodes``: id -> expiry on Redis's clock) and
renews it every ``heartbeat`` seconds together with what it advertises
(address, capacity, load, draining). The lease lasts three heartbeats: a node
missing three in a row is dead. Any node may then *claim* it
(``claim_dead.lua``; exactly one claimer wins), end its sessions NODE_LOST
and free their slots. The dead node is fenced: if it comes back, its next
heartbeat answers ``fenced`` and it must stop what it runs and rejoin under a
new id, never resurrect the sessions the cluster already ended. A silence
of every node (Redis was away, or restarted from a snapshot) moves every
lease on by its length: nobody is declared dead for beats nobody could send.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .keys import ClusterKeys
from .scripts import lua

LEASE_HEARTBEATS = 3
# How long a fenced node's id is remembered: long past any pause it could wake from.
FENCE_KEEP_SECONDS = 24 * 3600.0


def new_node_id() -> str:
    return secrets.token_hex(6)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a live node advertises."""

    node_id: str
    fields: Mapping[str, str]


class NodeLease:
    """Register, renew and check one node's lease (see the module doc)."""

    def __init__(
        self,
        redis: Any,
        node_id: str | None = None,
        *,
        heartbeat: float = 1.0,
        keys: ClusterKeys | None = None,
    ) -> None:
        if heartbeat <= 0:
            raise ValueError("heartbeat must be positive")
        self.redis = redis
        self.node_id = node_id or new_node_id()
        self.heartbeat = heartbeat
        self.keys = keys or ClusterKeys()
        self.was_new = False
        # Heartbeats Redis answered (operators and tests watch it advance).
        self.renewals = 0
        self._beat = redis.register_script(lua("heartbeat"))
        self._claim = redis.register_script(lua("claim_dead"))

    @property
    def lease_ms(self) -> int:
        return int(self.heartbeat * LEASE_HEARTBEATS * 1000)

    async def renew(self, **advertised: str | int | float | bool) -> bool:
        """Renew the lease; False when this node was declared dead (fenced).

        ``was_new`` tells afterwards whether the node held no lease before
        (its first beat, or a Redis that lost its data): it must then
        register what it runs.
        """
        pairs: list[str] = []
        for name, value in advertised.items():
            pairs += [name, _field(value)]
        keys = self.keys
        answer = await self._beat(
            keys=[keys.nodes, keys.node_info(self.node_id), keys.dead, keys.beat, keys.since],
            args=[self.node_id, self.lease_ms, "1" if self.renewals else "0", *pairs],
        )
        status = _text(answer)
        self.was_new = status == "new"
        self.renewals += 1
        return status != "fenced"

    async def leave(self) -> None:
        """Give the lease up (a clean stop): no one will claim this node."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.nodes, self.node_id)
            pipe.delete(self.keys.node_info(self.node_id))
            await pipe.execute()

    async def lapsed(self) -> list[str]:
        """Ids of nodes whose lease has lapsed (candidates to claim), on Redis's clock."""
        seconds, micros = await self.redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        ids = await self.redis.zrangebyscore(self.keys.nodes, "-inf", f"({now_ms}")
        return [_text(node_id) for node_id in ids]

    async def claim(self, node_id: str) -> bool:
        """Declare ``node_id`` dead; True for the one caller that must clean up after it."""
        keys = self.keys
        won = await self._claim(
            keys=[keys.nodes, keys.dead], args=[node_id, int(FENCE_KEEP_SECONDS * 1000)]
        )
        return bool(int(won))

    async def owned_by(self, node_id: str) -> list[str]:
        """The session ids ``node_id`` held (admitted and not released)."""
        return sorted(_text(s) for s in await self.redis.smembers(self.keys.owned(node_id)))

    async def live_nodes(self) -> list[NodeInfo]:
        """Every node with a live lease, with what it advertises."""
        seconds, micros = await self.redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        ids = [_text(n) for n in await self.redis.zrangebyscore(self.keys.nodes, now_ms, "+inf")]
        async with self.redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.hgetall(self.keys.node_info(node_id))
            infos = await pipe.execute()
        return [
            NodeInfo(node_id, {_text(k): _text(v) for k, v in info.items()})
            for node_id, info in zip(ids, infos, strict=True)
        ]


def _field(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
