"""The one error path: what SessionAPI raised, as the status every transport answers.

``error_status`` turns an error into an ``ErrorStatus`` (a gRPC status code, a
message and ``google.rpc`` details) once; each transport only translates it:
the grpclib servicer raises a ``GRPCError``, the in-process gateway backend the
gateway's ``RpcError``. Details follow google.rpc conventions so any client can
act on them: ``ErrorInfo`` carries the error's stable reason (each error class
names its own: MAX_CONCURRENT_SESSIONS, DRAINING, ...), ``RetryInfo`` says when
a retry can succeed, ``BadRequest`` names each bad field. The gateway maps the
codes to HTTP with its own single table.

Anything that is not a ``LauncherError`` (a permission hook that raised
``RuntimeError``, a bug) is logged here, once, with its traceback, and
answered INTERNAL with a fixed message: its text is for the operator, not the
caller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2

from agentplane.core.errors import (
    AdmissionRejected,
    AgentStartFailed,
    IdempotencyConflict,
    InvalidArgument,
    LauncherError,
    SessionNotFound,
    Unavailable,
)

from .auth import PermissionDenied, Refused, Unauthenticated

logger = logging.getLogger("agentplane.service")

ERROR_DOMAIN = "agentplane"
# What a caller hears of an unexpected failure.
INTERNAL_MESSAGE = "internal error"

# Error class -> gRPC status code (google.rpc.Code); the first match wins.
_CODES: tuple[tuple[type[LauncherError], int], ...] = (
    (InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (SessionNotFound, code_pb2.NOT_FOUND),
    (AdmissionRejected, code_pb2.RESOURCE_EXHAUSTED),
    (Unavailable, code_pb2.UNAVAILABLE),
    # The user's agent factory failed: a server-side fault, not the caller's.
    (AgentStartFailed, code_pb2.INTERNAL),
    (IdempotencyConflict, code_pb2.ALREADY_EXISTS),
    (Unauthenticated, code_pb2.UNAUTHENTICATED),
    (PermissionDenied, code_pb2.PERMISSION_DENIED),
)


@dataclass(frozen=True, slots=True)
class ErrorStatus:
    """A failed call as every transport reports it (``google.rpc.Status``, unpacked)."""

    code: int  # google.rpc.Code, the gRPC status code
    message: str
    details: tuple[Message, ...] = ()


def error_status(error: Exception, rpc: str = "") -> ErrorStatus:
    """The status a caller of ``rpc`` gets for ``error``; unexpected ones are logged."""
    if not isinstance(error, LauncherError):
        logger.error("unexpected error in %s", rpc or "an RPC", exc_info=error)
        info = error_details_pb2.ErrorInfo(reason=LauncherError.reason, domain=ERROR_DOMAIN)
        return ErrorStatus(code_pb2.INTERNAL, INTERNAL_MESSAGE, (info,))
    if isinstance(error, Refused):
        code = error.code
    else:
        code = next((code for cls, code in _CODES if isinstance(error, cls)), code_pb2.INTERNAL)
    details: list[Message] = [error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)]
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
    if isinstance(error, AdmissionRejected | Refused) and error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return ErrorStatus(code, error.message, tuple(details))
