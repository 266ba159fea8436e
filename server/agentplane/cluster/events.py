"""``RedisEventStream``: the one event log of a cluster, a capped Redis stream.

Every node appends its sessions' events (``append``: cursors given in the
same atomic step, ``append.lua``) and reads everybody's in cursor order
(``read``). A cursor is the stream entry's id (``<cursor>-1``), so a resume is
one ``XREAD`` from where the reader was; the stream is capped at about
``max_length`` entries, and a reader whose position was trimmed away learns
it from ``oldest`` (the caller then reports a GAP, as on one node). The
stream's epoch lives beside it: Redis restarted empty means a new epoch.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentplane.core.models import SessionEvent

from .keys import ClusterKeys
from .records import event_from_json
from .scripts import lua

DEFAULT_MAX_LENGTH = 100_000


@dataclass(frozen=True, slots=True)
class Batch:
    """Events read from the stream, with the epoch they belong to."""

    epoch: str
    events: list[SessionEvent]


class RedisEventStream:
    """Append to and read the cluster's event stream (see the module doc)."""

    def __init__(
        self, redis: Any, *, keys: ClusterKeys | None = None, max_length: int = DEFAULT_MAX_LENGTH
    ) -> None:
        self.redis = redis
        self.keys = keys or ClusterKeys()
        self.max_length = max_length
        self._append = redis.register_script(lua("append"))

    async def append(self, encoded: Sequence[str]) -> tuple[str, int]:
        """Append encoded events (``records.event_to_json``) in order: (epoch, first cursor)."""
        keys = self.keys
        epoch, first = await self._append(
            keys=[keys.events_meta, keys.events],
            args=[secrets.token_hex(8), self.max_length, *encoded],
        )
        return _text(epoch), int(first)

    async def join(self) -> tuple[str, int]:
        """The stream's epoch (made now if it has none) and its last cursor."""
        keys = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(keys.events_meta, "e", secrets.token_hex(8))
            pipe.hmget(keys.events_meta, "e", "s")
            _, (epoch, last) = await pipe.execute()
        return _text(epoch), int(last or 0)

    async def epoch(self) -> str | None:
        value = await self.redis.hget(self.keys.events_meta, "e")
        return None if value is None else _text(value)

    async def oldest(self) -> int | None:
        """The oldest cursor still held, or None when the stream is empty."""
        entries = await self.redis.xrange(self.keys.events, count=1)
        return _cursor(entries[0][0]) if entries else None

    async def read(self, after: int, *, count: int = 500, block_ms: int | None = None) -> Batch:
        """Events after cursor ``after`` (at most ``count``); waits up to ``block_ms`` for one.

        One XREAD while events flow: each entry carries its epoch. Only a
        read that found nothing asks for the stream's epoch (a stream that
        restarted empty and has not reached ``after`` yet shows it there).
        """
        keys = self.keys
        answer = await self.redis.xread(
            {keys.events: f"{after}-1"}, count=count, block=block_ms or None
        )
        events: list[SessionEvent] = []
        epoch: Any = None
        for _stream, entries in answer or ():
            for entry_id, fields in entries:
                raw = fields.get(b"e", fields.get("e"))
                epoch = fields.get(b"g", fields.get("g")) or epoch
                events.append(event_from_json(_cursor(entry_id), raw))
        if epoch is None:  # nothing read, or entries of an older version without it
            epoch = await self.redis.hget(keys.events_meta, "e")
        return Batch("" if epoch is None else _text(epoch), events)


def _cursor(entry_id: Any) -> int:
    return int(_text(entry_id).split("-", 1)[0])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
