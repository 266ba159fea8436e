"""Plain data the launcher hands out: session records and events.

Nothing here knows about protobuf or HTTP; transports translate these records
into their own messages.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class SessionState(enum.IntEnum):
    """Lifecycle of a session; values match ``agentplane.v1.SessionState``."""

    STARTING = 1
    RUNNING = 2
    ENDING = 3
    ENDED = 4


class EndReason(enum.IntEnum):
    """Why a session ended; values match ``agentplane.v1.EndReason``."""

    COMPLETED = 1
    CLOSED_BY_REQUEST = 2
    ERROR = 3
    IDLE_TIMEOUT = 4
    MAX_DURATION = 5
    SHUTDOWN = 6
    NODE_LOST = 7


@dataclass(slots=True)
class SessionRecord:
    """What the control plane knows about one session.

    Kept in the registry while the session runs and for the retention window
    after it ended. Times are Unix seconds (UTC).
    """

    session_id: str
    call_id: str
    call_type: str
    started_at: float
    created_by: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str = ""
    state: SessionState = SessionState.STARTING
    end_reason: EndReason | None = None
    ended_at: float | None = None
    error_message: str = ""
    # The metrics snapshot taken when the session ended (live metrics are read
    # from the running session instead).
    final_metrics: dict[str, float] | None = None

    @property
    def ended(self) -> bool:
        return self.state is SessionState.ENDED

    def snapshot(self) -> SessionRecord:
        """A copy safe to hand to a caller: later changes do not show in it."""
        # Field by field on a bare instance: several per call, and a third of
        # what the keyword-argument __init__ costs. A field missing here fails
        # loudly (an unset slot raises AttributeError).
        copy = _new_record(SessionRecord)
        copy.session_id = self.session_id
        copy.call_id = self.call_id
        copy.call_type = self.call_type
        copy.started_at = self.started_at
        copy.created_by = self.created_by
        copy.metadata = dict(self.metadata)
        copy.idempotency_key = self.idempotency_key
        copy.state = self.state
        copy.end_reason = self.end_reason
        copy.ended_at = self.ended_at
        copy.error_message = self.error_message
        copy.final_metrics = None if self.final_metrics is None else dict(self.final_metrics)
        return copy


_new_record = object.__new__


class EventKind(enum.Enum):
    """What an event reports; mirrors the ``event`` oneof of the proto."""

    STARTED = "started"
    STATE_CHANGED = "state_changed"
    METRICS_UPDATED = "metrics_updated"
    ENDED = "ended"
    AGENT = "agent_event"
    GAP = "gap"


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One entry of the event log.

    ``payload`` depends on ``kind``:
    STARTED and ENDED carry ``session`` (a SessionRecord snapshot), ENDED also
    ``metrics``; STATE_CHANGED ``previous_state`` and ``state``;
    METRICS_UPDATED ``metrics``; AGENT ``name`` and ``data``; GAP
    ``after_cursor`` and ``next_cursor``.
    """

    cursor: int
    session_id: str
    call_id: str
    time: float
    kind: EventKind
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LauncherStats:
    """Operator figures, as ``AgentLauncher.stats()`` reports them."""

    in_flight: int
    capacity: int | None
    draining: bool
    started: int
    completed: int
    failed: int
    ended_by_reason: dict[str, int]
    rejected_by_reason: dict[str, int]
    mean_duration_seconds: float | None
    # Starts whose create_agent failed or timed out (nothing of them remains).
    failed_starts: int = 0
    # Agent tasks that ignored cancellation and still run (each holds a slot).
    abandoned: int = 0
