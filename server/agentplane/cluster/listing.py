"""ListSessions across the cluster: a keyset walk over Redis's session index.

Every held session is in the ZSET ``sessions`` (and its call's
``call-sessions:<call>``) scored by ``started_at``: ``admit.lua`` and
``register.lua`` add it, ``forget.lua`` removes it. The walk reads that index
in the query's order in growing batches, reads the batch's records with one
MGET, and feeds them to the core's ``PageBuilder``, which bounds how many a
page examines. An index entry whose record has expired (an ended session of a
node that died before forgetting it) is dropped from the index on the way.

Sessions with equal scores are ordered by id (Redis's own order for equal
scores); a batch resumes at the last score seen, skipping the members of that
score it already returned, so no tie is lost or repeated between batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from agentplane.core.listing import (
    MAX_EXAMINED,
    ListPosition,
    PageBuilder,
    SessionPage,
    SessionQuery,
)
from agentplane.core.models import SessionRecord

from .keys import ClusterKeys
from .records import record_from_json

_FIRST_BATCH = 64
_MAX_BATCH = 1024


async def list_page(
    redis: Redis,
    keys: ClusterKeys,
    owned: Mapping[str, SessionRecord],
    query: SessionQuery,
    after: ListPosition | None,
    limit: int,
    max_examined: int = MAX_EXAMINED,
) -> SessionPage:
    """A page of the cluster's sessions matching ``query``, strictly after ``after``.

    ``owned``: this node's running sessions, fresher than their copies in Redis.
    """
    index = keys.call_sessions(query.call_id) if query.call_id else keys.sessions
    builder = PageBuilder(query, limit, max_examined)
    walk = _IndexWalk(query)
    await walk.start_after(redis, index, after)
    batch = min(_MAX_BATCH, max(_FIRST_BATCH, limit + 1))
    while True:
        entries = await walk.next_batch(redis, index, batch)
        if not entries:
            return builder.page
        records = await _records(redis, keys, index, [member for member, _ in entries], owned)
        for record in records:
            if builder.offer(record):
                return builder.page
        if len(entries) < batch:
            return builder.page
        batch = min(_MAX_BATCH, batch * 4)


class _IndexWalk:
    """A position in a ZSET walk: a score bound and how many of its members are behind."""

    def __init__(self, query: SessionQuery) -> None:
        self.desc = query.newest_first
        # The bound the walk starts from, as ZRANGE takes it ("(x": exclusive).
        if self.desc:
            self.bound = "+inf" if query.started_before is None else f"({query.started_before!r}"
            self.end = "-inf" if query.started_after is None else repr(query.started_after)
        else:
            self.bound = "-inf" if query.started_after is None else repr(query.started_after)
            self.end = "+inf" if query.started_before is None else f"({query.started_before!r}"
        self.skip = 0  # members at the bound's score already walked past

    async def start_after(self, redis: Redis, index: str, after: ListPosition | None) -> None:
        if after is None:
            return
        if self.desc and self.bound != "+inf" and _score(self.bound) <= after.started_at:
            return  # the time range starts before the position: it is the tighter bound
        if not self.desc and self.bound != "-inf" and _score(self.bound) > after.started_at:
            return
        score = repr(after.started_at)
        ties = await redis.zrange(index, score, score, byscore=True)
        members = [_text(member) for member in ties]
        if self.desc:  # walked: the members at that score from the top down to ``after``
            self.skip = sum(1 for member in members if member >= after.session_id)
        else:
            self.skip = sum(1 for member in members if member <= after.session_id)
        self.bound = score

    async def next_batch(self, redis: Redis, index: str, count: int) -> list[tuple[str, float]]:
        raw: Any = await redis.zrange(
            index,
            self.bound,
            self.end,
            desc=self.desc,
            byscore=True,
            offset=self.skip,
            num=count,
            withscores=True,
        )
        entries = [(_text(member), float(score)) for member, score in raw]
        if entries:
            last = entries[-1][1]
            at_last = sum(1 for _, score in entries if score == last)
            same_bound = self.bound not in ("+inf", "-inf") and not self.bound.startswith("(")
            if same_bound and _score(self.bound) == last:
                self.skip += at_last  # still within the same score's members
            else:
                self.skip = at_last
            self.bound = repr(last)
        return entries


async def _records(
    redis: Redis,
    keys: ClusterKeys,
    index: str,
    session_ids: list[str],
    owned: Mapping[str, SessionRecord],
) -> list[SessionRecord]:
    texts = await redis.mget([keys.record(session_id) for session_id in session_ids])
    records: list[SessionRecord] = []
    gone: list[str] = []
    for session_id, text in zip(session_ids, texts, strict=True):
        mine = owned.get(session_id)
        if mine is not None:
            records.append(mine)
        elif text is None:
            gone.append(session_id)
        else:
            records.append(record_from_json(text))
    if gone:
        # The record expired without a forget (its node died): unlist it.
        await redis.zrem(index, *gone)
        if index != keys.sessions:
            await redis.zrem(keys.sessions, *gone)
    return records


def _score(bound: str) -> float:
    return float(bound.lstrip("("))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
