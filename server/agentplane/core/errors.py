"""The launcher's own error taxonomy.

The core raises only these; one table maps them to the status every transport
answers (``agentplane.service.status``). Messages name the
problem so they can be shown to a client as they are: none carries the text
of an exception raised by the user's code unless the operator opted in
(``failure_message``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


class LauncherError(Exception):
    """Base class of every error the launcher reports to a caller.

    ``reason`` is the stable machine-readable code a caller can act on
    (``google.rpc.ErrorInfo``'s reason); each subclass names its own.
    """

    reason: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid request field, as ``google.rpc.BadRequest`` reports it."""

    field: str
    description: str


class InvalidArgument(LauncherError):
    """The request is malformed; ``violations`` name each bad field."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation]) -> None:
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {message}")
        self.violations = violations


class SessionNotFound(LauncherError):
    """No session with this id (never existed, or ended and was forgotten)."""

    reason = "SESSION_NOT_FOUND"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"Session with id '{session_id}' not found")
        self.session_id = session_id


class AdmissionRejected(LauncherError):
    """A limit refused a new session.

    ``reason`` is a stable machine-readable code (``MAX_CONCURRENT_SESSIONS``,
    ``MAX_SESSIONS_PER_CALL``, ``RATE_LIMITED``); ``retry_after`` is set when
    the launcher knows when a retry can succeed.
    """

    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class Unavailable(LauncherError):
    """The launcher cannot take sessions right now; ``reason`` says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Draining(Unavailable):
    """The launcher is shutting down and accepts no new sessions."""

    REASON = "DRAINING"

    def __init__(self) -> None:
        super().__init__(self.REASON, "the server is draining and accepts no new sessions")


class NotReady(Unavailable):
    """The launcher has not finished warming up."""

    REASON = "NOT_READY"

    def __init__(self) -> None:
        super().__init__(self.REASON, "the server is still warming up; retry shortly")


class AgentStartFailed(LauncherError):
    """``create_agent`` raised or timed out; nothing of the session remains."""

    reason = "AGENT_START_FAILED"


class IdempotencyConflict(LauncherError):
    """An idempotency key was reused for a different call."""

    reason = "IDEMPOTENCY_KEY_REUSED"


def new_error_id() -> str:
    """A short id that ties a caller's failure message to its log line."""
    return uuid.uuid4().hex[:12]


def failure_message(what: str, exc: BaseException, error_id: str, *, expose: bool) -> str:
    """What a caller is told of the user's code raising ``exc`` (decision 29).

    The exception's type, and the id of the log line that has its traceback;
    its text only with ``expose`` (``expose_error_details``): an exception's
    text can hold a URL with a token, a key, a customer's data.

    Example::

        failure_message("create_agent failed", KeyError("sk-123"), "3f2a", expose=False)
        # "create_agent failed: KeyError (error 3f2a; details in the server log)"
    """
    name = type(exc).__name__
    if expose:
        return f"{what}: {name}: {exc} (error {error_id})"
    return f"{what}: {name} (error {error_id}; details in the server log)"


__all__ = [
    "AdmissionRejected",
    "AgentStartFailed",
    "Draining",
    "FieldViolation",
    "IdempotencyConflict",
    "InvalidArgument",
    "LauncherError",
    "NotReady",
    "SessionNotFound",
    "Unavailable",
    "failure_message",
    "new_error_id",
]
