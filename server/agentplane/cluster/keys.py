"""Every Redis key a cluster uses, in one place.

All keys start with the cluster's prefix (``agentplane:`` by default), so
several clusters can share one Redis, and an operator can find ours with
``--scan --pattern 'agentplane:*'``. Nothing in agentplane itself scans:
every key an operation needs is computed from what it already knows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClusterKeys:
    prefix: str = "agentplane:"

    @property
    def nodes(self) -> str:
        """ZSET node id -> lease expiry (ms): the live nodes."""
        return f"{self.prefix}nodes"

    @property
    def dead(self) -> str:
        """ZSET node id -> when it was declared dead (ms): fenced nodes."""
        return f"{self.prefix}dead"

    @property
    def beat(self) -> str:
        """STRING when any node last renewed its lease (ms, Redis's clock)."""
        return f"{self.prefix}beat"

    @property
    def since(self) -> str:
        """STRING since when this Redis holds the cluster's sessions (ms; ``heartbeat.lua``)."""
        return f"{self.prefix}since"

    @property
    def counts(self) -> str:
        """HASH node id -> admitted sessions the node holds."""
        return f"{self.prefix}counts"

    @property
    def rate(self) -> str:
        """ZSET session id -> admission time (ms) over the last minute."""
        return f"{self.prefix}rate"

    @property
    def events(self) -> str:
        """STREAM the cluster's events, entry id ``<cursor>-1`` (``events.py``)."""
        return f"{self.prefix}events"

    @property
    def events_meta(self) -> str:
        """HASH e: the event stream's epoch, s: the last cursor given."""
        return f"{self.prefix}events:meta"

    def node_info(self, node_id: str) -> str:
        """HASH what a node advertises: address, capacity, load, draining."""
        return f"{self.prefix}node:{node_id}"

    @property
    def owned_prefix(self) -> str:
        return f"{self.prefix}owned:"

    def owned(self, node_id: str) -> str:
        """SET the session ids a node holds (admitted, not yet released)."""
        return f"{self.owned_prefix}{node_id}"

    def commands(self, node_id: str) -> str:
        """Pub/sub channel of the commands a node runs (``commands.py``)."""
        return f"{self.prefix}cmd:{node_id}"

    def call(self, call_id: str) -> str:
        """HASH session id -> node id: the sessions of one call."""
        return f"{self.prefix}call:{call_id}"

    @property
    def sessions(self) -> str:
        """ZSET session id -> started_at (s): every held session, for ListSessions."""
        return f"{self.prefix}sessions"

    def call_sessions(self, call_id: str) -> str:
        """ZSET session id -> started_at (s): one call's held sessions, for ListSessions."""
        return f"{self.prefix}call-sessions:{call_id}"

    def record(self, session_id: str) -> str:
        """STRING the session's record as JSON."""
        return f"{self.prefix}session:{session_id}"

    def idempotency(self, created_by: str, key: str) -> str:
        """STRING session id: keys are per user, as on one node."""
        return f"{self.prefix}idem:{len(created_by)}:{created_by}:{key}"
