"""The transport-free core of agentplane: sessions, limits, timers, events."""

from .context import SessionContext, current_session
from .errors import (
    AdmissionRejected,
    AgentStartFailed,
    Draining,
    FieldViolation,
    IdempotencyConflict,
    InvalidArgument,
    LauncherError,
    NotReady,
    SessionNotFound,
    Unavailable,
)
from .events import EventLog
from .launcher import AgentLauncher
from .listing import ListPosition, SessionPage, SessionQuery
from .metrics import SessionMetrics
from .models import EndReason, EventKind, LauncherStats, SessionEvent, SessionRecord, SessionState
from .observers import LauncherHooks
from .registry import InMemorySessionRegistry, Limits, SessionRegistry
from .settings import LauncherSettings

__all__ = [
    "AdmissionRejected",
    "AgentLauncher",
    "AgentStartFailed",
    "Draining",
    "EndReason",
    "EventKind",
    "EventLog",
    "FieldViolation",
    "IdempotencyConflict",
    "InMemorySessionRegistry",
    "InvalidArgument",
    "LauncherError",
    "LauncherHooks",
    "LauncherSettings",
    "LauncherStats",
    "Limits",
    "ListPosition",
    "NotReady",
    "SessionContext",
    "SessionEvent",
    "SessionMetrics",
    "SessionNotFound",
    "SessionPage",
    "SessionQuery",
    "SessionRecord",
    "SessionRegistry",
    "SessionState",
    "Unavailable",
    "current_session",
]
