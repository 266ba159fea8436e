"""The one table from launcher and auth errors to gRPC statuses.

Details follow google.rpc conventions so any gRPC client can act on them:
``ErrorInfo`` carries a stable reason (MAX_CONCURRENT_SESSIONS, DRAINING, ...),
``RetryInfo`` says when a retry can succeed, ``BadRequest`` names each bad
field. The gateway maps these statuses to HTTP with its own single table.
"""

from __future__ import annotations

from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from agentplane.core.errors import (
    AdmissionRejected,
    AgentStartFailed,
    IdempotencyConflict,
    InvalidArgument,
    LauncherError,
    SessionNotFound,
    Unavailable,
)

from .auth import PermissionDenied, Unauthenticated

ERROR_DOMAIN = "agentplane"

# Error class -> (status, ErrorInfo reason or None to take the error's own).
_TABLE: list[tuple[type[LauncherError], Status, str | None]] = [
    (InvalidArgument, Status.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    (SessionNotFound, Status.NOT_FOUND, "SESSION_NOT_FOUND"),
    (AdmissionRejected, Status.RESOURCE_EXHAUSTED, None),
    (Unavailable, Status.UNAVAILABLE, None),
    # The user's agent factory failed: a server-side fault, not the caller's.
    (AgentStartFailed, Status.INTERNAL, "AGENT_START_FAILED"),
    (IdempotencyConflict, Status.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED"),
    (Unauthenticated, Status.UNAUTHENTICATED, "UNAUTHENTICATED"),
    (PermissionDenied, Status.PERMISSION_DENIED, "PERMISSION_DENIED"),
]


def to_grpc_error(error: LauncherError) -> GRPCError:
    """The GRPCError a client should see for ``error``."""
    status: Status = Status.INTERNAL
    reason: str | None = "INTERNAL"
    for cls, mapped_status, mapped_reason in _TABLE:
        if isinstance(error, cls):
            status, reason = mapped_status, mapped_reason
            break
    details: list[Message] = [
        error_details_pb2.ErrorInfo(
            reason=reason or str(getattr(error, "reason", "UNKNOWN")), domain=ERROR_DOMAIN
        )
    ]
    if isinstance(error, InvalidArgument):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
    if isinstance(error, AdmissionRejected) and error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return GRPCError(status, error.message, details)
