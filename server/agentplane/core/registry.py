"""Where session records and admission counters live.

The launcher talks to a ``SessionRegistry``; the in-memory implementation
here serves a single node. A shared implementation (Redis) can replace it
without touching the launcher, as long as ``admit`` stays atomic.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Protocol

from .errors import AdmissionRejected
from .listing import (
    MAX_EXAMINED,
    AdmissionOrder,
    ListPosition,
    SessionKey,
    SessionPage,
    SessionQuery,
    collect,
    walk_keys,
)
from .models import SessionRecord

RATE_WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Admission limits; None switches a limit off."""

    max_concurrent_sessions: int | None = None
    max_sessions_per_call: int | None = None
    permits_per_minute: int | None = None
    # Sessions the admitting node itself may hold (in a cluster, on top of the cluster's).
    max_sessions_per_node: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_concurrent_sessions",
            "max_sessions_per_call",
            "permits_per_minute",
            "max_sessions_per_node",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None, got {value}")


class SessionRegistry(Protocol):
    """Session records, idempotency keys and admission counters."""

    async def admit(
        self, record: SessionRecord, limits: Limits, now: float
    ) -> SessionRecord | None:
        """Atomically admit ``record`` or answer the session it duplicates.

        Returns the existing record when ``record.idempotency_key`` (scoped by
        ``record.created_by``) is already known; otherwise checks every limit,
        raises AdmissionRejected when one is reached, and stores the record
        holding one admission slot. Returns None on admission.
        """
        ...

    async def update(self, record: SessionRecord) -> None:
        """Store the record's current state."""
        ...

    async def release(self, record: SessionRecord) -> None:
        """Give back the record's admission slot (the session ended). Idempotent."""
        ...

    async def forget(self, session_id: str) -> None:
        """Remove the record and its idempotency key. Idempotent."""
        ...

    async def get(self, session_id: str) -> SessionRecord | None:
        """The stored record, or None."""
        ...

    async def list(
        self,
        query: SessionQuery,
        after: ListPosition | None,
        limit: int,
        max_examined: int = MAX_EXAMINED,
    ) -> SessionPage:
        """A page of the stored records matching ``query`` (``listing.collect``'s rules)."""
        ...


class RemoteSessions(Protocol):
    """Sessions that run on other nodes of a cluster (``agentplane.cluster``).

    The launcher asks it for what only the running session's node knows:
    closing it, and its live metrics (both raise ``Unavailable`` when the
    owner cannot be reached in time), and to place a Start it cannot take.
    """

    async def close(self, record: SessionRecord) -> SessionRecord:
        """Close the session on its node; its final record."""
        ...

    async def metrics(self, record: SessionRecord) -> dict[str, float]:
        """The session's live metrics, from its node."""
        ...

    async def start(
        self, record: SessionRecord, video_track_override_path: str | None
    ) -> SessionRecord | None:
        """Start ``record``'s session on another node with room (placement).

        Answers that node's record, raises what that node raised, or returns
        None when no node could take it.
        """
        ...


def _scoped_key(record: SessionRecord) -> str:
    # Keys are per user: one user's key never answers another user's session.
    return f"{record.created_by}\x00{record.idempotency_key}"


class InMemorySessionRegistry:
    """A ``SessionRegistry`` for one process.

    Every method runs without suspending, so each call is atomic on the event
    loop: 200 concurrent admissions against a limit of 50 admit exactly 50.
    """

    def __init__(self) -> None:
        self._records: dict[str, SessionRecord] = {}
        self._by_key: dict[str, str] = {}
        self._admitted: set[str] = set()
        self._per_call: collections.Counter[str] = collections.Counter()
        self._recent_admissions: collections.deque[float] = collections.deque()
        self._order = AdmissionOrder()
        # A call's sessions in admission order: the key its one session shares
        # with ``_order`` (most calls have one agent), an AdmissionOrder from
        # its second session on. An order per call cost ~0.25 KiB per held
        # session of its own call (the object, its list, a second key).
        self._call_order: dict[str, SessionKey | AdmissionOrder] = {}

    async def admit(
        self, record: SessionRecord, limits: Limits, now: float
    ) -> SessionRecord | None:
        if record.idempotency_key:
            existing_id = self._by_key.get(_scoped_key(record))
            if existing_id is not None and existing_id in self._records:
                return self._records[existing_id]
        self._check_limits(record.call_id, limits, now)
        self._records[record.session_id] = record
        key = (record.started_at, record.session_id)
        self._order.add_key(key)
        in_call = self._call_order.get(record.call_id)
        if in_call is None:
            self._call_order[record.call_id] = key
        elif isinstance(in_call, AdmissionOrder):
            in_call.add_key(key)
        else:
            order = self._call_order[record.call_id] = AdmissionOrder()
            order.add_key(in_call)
            order.add_key(key)
        self._admitted.add(record.session_id)
        # get, not Counter's += (a Python __missing__ call for each new call).
        self._per_call[record.call_id] = self._per_call.get(record.call_id, 0) + 1
        if limits.permits_per_minute is not None:
            self._recent_admissions.append(now)
        if record.idempotency_key:
            self._by_key[_scoped_key(record)] = record.session_id
        return None

    def _check_limits(self, call_id: str, limits: Limits, now: float) -> None:
        node_cap = limits.max_sessions_per_node
        if node_cap is not None and len(self._admitted) >= node_cap:
            raise AdmissionRejected(
                "MAX_SESSIONS_PER_NODE", f"this node runs its maximum of {node_cap} sessions"
            )
        cap = limits.max_concurrent_sessions
        if cap is not None and len(self._admitted) >= cap:
            raise AdmissionRejected(
                "MAX_CONCURRENT_SESSIONS",
                f"the server runs its maximum of {cap} concurrent sessions",
            )
        per_call = limits.max_sessions_per_call
        if per_call is not None and self._per_call[call_id] >= per_call:
            raise AdmissionRejected(
                "MAX_SESSIONS_PER_CALL",
                f"call '{call_id}' already has its maximum of {per_call} sessions",
            )
        rate = limits.permits_per_minute
        if rate is not None:
            window = self._recent_admissions
            while window and window[0] <= now - RATE_WINDOW_SECONDS:
                window.popleft()
            if len(window) >= rate:
                retry_after = window[0] + RATE_WINDOW_SECONDS - now
                raise AdmissionRejected(
                    "RATE_LIMITED",
                    f"at most {rate} sessions may start per minute; retry in {retry_after:.1f} s",
                    retry_after=max(retry_after, 0.0),
                )

    async def update(self, record: SessionRecord) -> None:
        if record.session_id in self._records:
            self._records[record.session_id] = record

    async def release(self, record: SessionRecord) -> None:
        if record.session_id in self._admitted:
            self._admitted.discard(record.session_id)
            self._per_call[record.call_id] -= 1
            if self._per_call[record.call_id] <= 0:
                del self._per_call[record.call_id]

    async def forget(self, session_id: str) -> None:
        record = self._records.pop(session_id, None)
        if record is None:
            return
        await self.release(record)
        key = (record.started_at, session_id)
        self._order.remove_key(key)
        in_call = self._call_order.get(record.call_id)
        if isinstance(in_call, AdmissionOrder):
            in_call.remove_key(key)
            if not in_call:
                del self._call_order[record.call_id]
        elif in_call == key:
            del self._call_order[record.call_id]
        if record.idempotency_key:
            scoped = _scoped_key(record)
            if self._by_key.get(scoped) == session_id:
                del self._by_key[scoped]

    async def get(self, session_id: str) -> SessionRecord | None:
        return self._records.get(session_id)

    async def list(
        self,
        query: SessionQuery,
        after: ListPosition | None,
        limit: int,
        max_examined: int = MAX_EXAMINED,
    ) -> SessionPage:
        if query.call_id:
            in_call = self._call_order.get(query.call_id)
            if in_call is None:
                return SessionPage()
            if isinstance(in_call, AdmissionOrder):
                ids = in_call.walk(query, after)
            else:
                ids = walk_keys((in_call,), query, after)
        else:
            ids = self._order.walk(query, after)
        records = self._records
        walk = (records[session_id] for session_id in ids)
        return collect(walk, query, limit, max_examined)

    def __len__(self) -> int:
        return len(self._records)
