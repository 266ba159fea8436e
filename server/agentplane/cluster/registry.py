"""``RedisSessionRegistry``: the launcher's ``SessionRegistry`` shared by every node.

Admission is one Lua script (``admit.lua``): idempotency key, cluster-wide
``max_concurrent_sessions``, ``max_sessions_per_call`` and
``permits_per_minute`` are checked and the slot taken in one atomic step, so
three nodes receiving 100 concurrent Starts each against a limit of 50 admit
exactly 50. A slot belongs to the admitting node and counts only while that
node's lease is live (``NodeLease``): a node that dies gives its slots back
when its lease lapses. The node's own capacity is checked by the launcher on
top (its in-process limits).

Records are JSON strings; an ended record and its idempotency key expire
after ``retention_seconds``, the single-node retention rule.

Redis may be unreachable for a while, or come back empty (no persistence).
The registry keeps what only this node knows: the records of the sessions it
runs, and the ends and slot releases it could not write. ``resync`` writes
them once Redis answers, registering the running sessions again (slots
included) when Redis lost them, so no session is lost from view. Meanwhile
``get`` answers this node's sessions from what it keeps, and UNAVAILABLE for
the others.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

from agentplane.core.errors import AdmissionRejected, Unavailable
from agentplane.core.listing import MAX_EXAMINED, ListPosition, SessionPage, SessionQuery
from agentplane.core.models import SessionRecord
from agentplane.core.registry import Limits
from agentplane.net import RateLimitedLog

from .keys import ClusterKeys
from .listing import list_page
from .records import record_from_json, record_to_json
from .scripts import lua

logger = logging.getLogger("agentplane.cluster")


class Fenced(Unavailable):
    """This node holds no live lease (declared dead, or not yet joined): it admits nothing."""

    REASON = "NODE_FENCED"

    def __init__(self, node_id: str) -> None:
        super().__init__(
            self.REASON,
            f"this node ({node_id}) holds no live lease in the cluster and takes no new "
            "sessions; retry on another node",
        )


class RedisUnavailable(Unavailable):
    """Redis did not answer: cluster limits cannot be checked, so nothing is admitted."""

    REASON = "CLUSTER_UNAVAILABLE"

    def __init__(self, error: BaseException) -> None:
        super().__init__(
            self.REASON,
            f"the cluster's Redis cannot be reached ({type(error).__name__}): no session can "
            "be admitted against the cluster's limits; retry shortly",
        )


class RedisSessionRegistry:
    """A ``SessionRegistry`` over Redis for the node ``node_id`` (see the module doc)."""

    def __init__(
        self,
        redis: Any,
        node_id: str,
        *,
        keys: ClusterKeys | None = None,
        retention_seconds: float = 300.0,
        lease_ms: int = 3000,
    ) -> None:
        self.redis = redis
        # How long after Redis lost its data every live node has registered again.
        self.lease_ms = lease_ms
        self.node_id = node_id
        self.keys = keys or ClusterKeys()
        self.retention_ms = max(1, int(retention_seconds * 1000))
        # Set while this node is fenced: its writes would overwrite what the
        # cluster decided (its sessions ended NODE_LOST), so none are made.
        self.fenced: bool = False
        # Sessions this node runs, by id (the launcher's records, kept current).
        self._owned: dict[str, SessionRecord] = {}
        # Ends and slot releases Redis did not take (it was unreachable).
        self._unwritten: dict[str, SessionRecord] = {}
        self._unreleased: dict[str, SessionRecord] = {}
        self._failures = RateLimitedLog(logger, 10.0)
        self._register = redis.register_script(lua("register"))
        self._admit = redis.register_script(lua("admit"))
        self._release = redis.register_script(lua("release"))
        self._forget = redis.register_script(lua("forget"))

    async def admit(
        self, record: SessionRecord, limits: Limits, now: float
    ) -> SessionRecord | None:
        keys = self.keys
        has_key = bool(record.idempotency_key)
        idem = keys.idempotency(record.created_by, record.idempotency_key) if has_key else ""
        try:
            answer = await self._call_admit(record, limits, idem, has_key)
        except RedisError as error:
            raise RedisUnavailable(error) from error
        return await self._verdict(answer, record, limits)

    async def _call_admit(
        self, record: SessionRecord, limits: Limits, idem: str, has_key: bool
    ) -> Any:
        keys = self.keys
        return await self._admit(
            keys=[
                keys.nodes,
                keys.counts,
                keys.call(record.call_id),
                keys.rate,
                idem or keys.prefix + "idem:-",
                keys.record(record.session_id),
                keys.owned(self.node_id),
                keys.sessions,
                keys.call_sessions(record.call_id),
            ],
            args=[
                self.node_id,
                record.session_id,
                limits.max_concurrent_sessions or 0,
                limits.max_sessions_per_call or 0,
                limits.permits_per_minute or 0,
                record_to_json(record),
                "1" if has_key else "0",
                limits.max_sessions_per_node or 0,
                repr(record.started_at),
            ],
        )

    async def _verdict(
        self, answer: Any, record: SessionRecord, limits: Limits
    ) -> SessionRecord | None:
        verdict = _text(answer[0])
        if verdict == "ok":
            self._owned[record.session_id] = record
            return None
        if verdict == "dup":
            existing = await self.get(_text(answer[1]))
            if existing is not None:
                return existing
            raise AdmissionRejected(  # the key outlived its record: a race with expiry
                "IDEMPOTENCY_KEY_EXPIRED",
                "the session of this idempotency key has expired",
                # The key goes with its record's forget, a moment later: the
                # same Start then starts a new session.
                retry_after=1.0,
            )
        if verdict == "fenced":
            raise Fenced(self.node_id)
        value = int(float(_text(answer[1])))
        if verdict == "node_full":
            raise AdmissionRejected(
                "MAX_SESSIONS_PER_NODE",
                f"this node runs its maximum of {limits.max_sessions_per_node} sessions and "
                "no other node had room",
                # A heartbeat from now, the nodes' room is known anew.
                retry_after=1.0,
            )
        if verdict == "full":
            cap = limits.max_concurrent_sessions
            raise AdmissionRejected(
                "MAX_CONCURRENT_SESSIONS",
                f"the cluster runs its maximum of {cap} concurrent sessions",
            )
        if verdict == "call_full":
            raise AdmissionRejected(
                "MAX_SESSIONS_PER_CALL",
                f"call '{record.call_id}' already has its maximum of "
                f"{limits.max_sessions_per_call} sessions in the cluster",
            )
        retry_after = max(value / 1000, 0.0)
        raise AdmissionRejected(
            "RATE_LIMITED",
            f"at most {limits.permits_per_minute} sessions may start per minute in the "
            f"cluster; retry in {retry_after:.1f} s",
            retry_after=retry_after,
        )

    async def update(self, record: SessionRecord) -> None:
        if self.fenced:
            return
        if not record.ended:
            if record.session_id in self._owned:
                self._owned[record.session_id] = record
            try:
                await self.redis.set(
                    self.keys.record(record.session_id), record_to_json(record), xx=True
                )
            except RedisError as error:  # resync writes it (from _owned)
                self._failures.warning("cluster registry: a session update waits: %r", error)
            return
        self._owned.pop(record.session_id, None)
        try:
            await self._write_ended(record, only_existing=True)
        except RedisError as error:
            self._unwritten[record.session_id] = record
            self._failures.warning("cluster registry: a session end waits: %r", error)

    async def _write_ended(self, record: SessionRecord, *, only_existing: bool) -> None:
        """The ended record and its idempotency key, for the retention window."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(
                self.keys.record(record.session_id),
                record_to_json(record),
                px=self.retention_ms,
                xx=only_existing,
            )
            if record.idempotency_key:
                idem = self.keys.idempotency(record.created_by, record.idempotency_key)
                pipe.pexpire(idem, self.retention_ms)
            if not only_existing:  # written anew (Redis lost it): listed again too
                for index in (self.keys.sessions, self.keys.call_sessions(record.call_id)):
                    pipe.zadd(index, {record.session_id: record.started_at})
            await pipe.execute()

    async def release(self, record: SessionRecord) -> None:
        if self.fenced:
            return
        self._owned.pop(record.session_id, None)
        try:
            await self._release_slot(record)
        except RedisError as error:
            self._unreleased[record.session_id] = record
            self._failures.warning("cluster registry: a slot release waits: %r", error)

    async def _release_slot(self, record: SessionRecord) -> None:
        keys = self.keys
        await self._release(
            keys=[keys.counts, keys.call(record.call_id), keys.owned_prefix],
            args=[record.session_id],
        )

    async def resync(self, *, reregister: bool) -> int:
        """Write what Redis missed; with ``reregister``, the running sessions too.

        Returns how many running sessions took a slot again (Redis had lost them).
        """
        added = 0
        if reregister and self._owned:
            args: list[str] = [self.node_id]
            for record in self._owned.values():
                idem = (
                    self.keys.idempotency(record.created_by, record.idempotency_key)
                    if record.idempotency_key
                    else ""
                )
                args += [
                    record.session_id,
                    self.keys.call(record.call_id),
                    self.keys.record(record.session_id),
                    record_to_json(record),
                    idem,
                    self.keys.call_sessions(record.call_id),
                    repr(record.started_at),
                ]
            added = int(
                await self._register(
                    keys=[self.keys.counts, self.keys.owned(self.node_id), self.keys.sessions],
                    args=args,
                )
            )
        for session_id, record in list(self._unreleased.items()):
            await self._release_slot(record)
            del self._unreleased[session_id]
        for session_id, record in list(self._unwritten.items()):
            await self._write_ended(record, only_existing=False)
            del self._unwritten[session_id]
        return added

    async def forget(self, session_id: str) -> None:
        if self.fenced:
            return
        record = await self._read(session_id)
        if record is None:
            return
        await self.release(record)
        idem = (
            self.keys.idempotency(record.created_by, record.idempotency_key)
            if record.idempotency_key
            else self.keys.prefix + "idem:-"
        )
        await self._forget(
            keys=[
                self.keys.record(session_id),
                idem,
                self.keys.sessions,
                self.keys.call_sessions(record.call_id),
            ],
            args=[session_id],
        )

    async def get(self, session_id: str) -> SessionRecord | None:
        """The session's record; None only when the cluster surely has no such session.

        Moments after Redis lost its data, the nodes are still registering
        their sessions again: a miss then is UNAVAILABLE, not "not found".
        """
        owned = self._owned.get(session_id)
        if owned is not None:
            return owned  # it runs here: the launcher's own record, fresher than Redis's copy
        found = await self._read(session_id)
        if found is not None:
            return found
        try:  # a miss (rare): one more round trip to tell "none" from "not yet again"
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(self.keys.since)
                pipe.time()
                since, (seconds, micros) = await pipe.execute()
        except RedisError as error:
            return self._known(session_id, error)
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        if since is None or now_ms - int(since) < self.lease_ms:
            raise Unavailable(
                RedisUnavailable.REASON,
                f"session {session_id} is not in the cluster's Redis, which lost its data moments "
                "ago; the nodes are registering their sessions again: retry shortly",
            )
        return None

    async def list(
        self,
        query: SessionQuery,
        after: ListPosition | None,
        limit: int,
        max_examined: int = MAX_EXAMINED,
    ) -> SessionPage:
        try:
            return await list_page(
                self.redis, self.keys, self._owned, query, after, limit, max_examined
            )
        except RedisError as error:
            raise Unavailable(
                RedisUnavailable.REASON,
                f"the cluster's Redis cannot be reached ({type(error).__name__}): sessions "
                "cannot be listed; retry shortly",
            ) from error

    async def _read(self, session_id: str) -> SessionRecord | None:
        try:
            text = await self.redis.get(self.keys.record(session_id))
        except RedisError as error:
            return self._known(session_id, error)
        return None if text is None else record_from_json(text)

    def _known(self, session_id: str, error: RedisError) -> SessionRecord:
        """While Redis is away: what this node keeps of ``session_id``, or UNAVAILABLE."""
        known = self._owned.get(session_id) or self._unwritten.get(session_id)
        if known is not None:
            return known
        raise Unavailable(
            RedisUnavailable.REASON,
            f"the cluster's Redis cannot be reached ({type(error).__name__}) and session "
            f"{session_id} does not run on this node; retry shortly",
        ) from error


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
