"""Why a command failed, as one line on stderr and an exit code from the gRPC status.

Exit codes: 0 when the call succeeded; ``64 + code`` when it failed with the
gRPC status ``code`` (NOT_FOUND 5 exits 69, UNAVAILABLE 14 exits 78), so they
never collide with click's 1 (error) and 2 (usage) nor with the shell's 126 to
130. A server that cannot be reached is UNAVAILABLE (78), a call past
``--timeout`` DEADLINE_EXCEEDED (68), as gRPC clients report them.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.rpc import error_details_pb2
from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

#: Added to the gRPC status code to make the exit code.
EXIT_OFFSET = 64


def exit_code(status: Status) -> int:
    """The process exit code for a call that ended with ``status`` (0 for OK)."""
    return 0 if status is Status.OK else EXIT_OFFSET + status.value


@dataclass
class Failure(Exception):
    """A call that failed: its status, a message, and what the details add."""

    status: Status
    message: str
    reason: str | None = None
    retry_after: float | None = None
    hint: str | None = None

    @property
    def exit_code(self) -> int:
        return exit_code(self.status)

    def line(self) -> str:
        """``error: NOT_FOUND: no session 'x' (reason SESSION_NOT_FOUND)``, one line."""
        text = f"error: {self.status.name}: {self.message}"
        extras = []
        if self.reason:
            extras.append(f"reason {self.reason}")
        if self.retry_after is not None:
            extras.append(f"retry after {self.retry_after:g} s")
        if extras:
            text += f" ({', '.join(extras)})"
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.split())  # a multi-line message stays one line


def _rich(details: Sequence[Any] | None) -> tuple[str | None, float | None]:
    """The ErrorInfo reason and RetryInfo delay of grpc-status-details-bin."""
    reason: str | None = None
    retry_after: float | None = None
    for detail in details or ():
        if isinstance(detail, error_details_pb2.ErrorInfo) and reason is None:
            reason = detail.reason or None
        elif isinstance(detail, error_details_pb2.RetryInfo) and retry_after is None:
            delay = detail.retry_delay
            retry_after = delay.seconds + delay.nanos / 1e9
    return reason, retry_after


def failure(error: BaseException, address: str) -> Failure | None:
    """``error`` of a call to ``address`` as a Failure; None if it is not a call's failure."""
    unreachable = f"check --server (or AGENTPLANE_SERVER): {address}"
    if isinstance(error, GRPCError):
        reason, retry_after = _rich(error.details)
        message = error.message or "(no message)"
        hint = None
        if error.status is Status.UNAUTHENTICATED:
            hint = "check --token (or AGENTPLANE_API_TOKEN)"
        return Failure(error.status, message, reason, retry_after, hint)
    if isinstance(error, TimeoutError):
        return Failure(Status.DEADLINE_EXCEEDED, "no answer within --timeout")
    if isinstance(error, ssl.SSLError):
        # Before OSError: ssl.SSLError is one. A certificate the CA does not vouch for, say.
        return Failure(Status.UNAVAILABLE, f"TLS failed: {error}", hint=unreachable)
    if isinstance(error, OSError):
        what = (os.strerror(error.errno) if error.errno else "") or str(error)
        return Failure(Status.UNAVAILABLE, f"cannot connect: {what}", hint=unreachable)
    if isinstance(error, (StreamTerminatedError, ProtocolError)):
        # The connection went away mid-call, or the peer does not speak gRPC
        # (a TLS server to a plaintext client, an HTTP/1 server).
        text = str(error) or type(error).__name__
        return Failure(
            Status.UNAVAILABLE,
            f"the connection failed: {text}",
            hint=f"{unreachable} (TLS? --tls-ca)",
        )
    return None
