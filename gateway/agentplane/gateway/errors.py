"""One error shape for every HTTP answer that is not a success.

Whatever fails (an RPC, a malformed body, an unknown route), the client gets
a ``google.rpc.Status`` as JSON (``code``, ``message``, ``details``) and the HTTP
status from ``HTTP_STATUS``, the table grpc-gateway uses. A ``RetryInfo``
detail becomes ``Retry-After``; UNAUTHENTICATED adds ``WWW-Authenticate``
(a Bearer challenge, with the app's ``realm`` when it has one).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from starlette.responses import Response

# gRPC code -> HTTP status, as grpc-gateway's runtime.HTTPStatusFromCode.
HTTP_STATUS: dict[Status, int] = {
    Status.OK: 200,
    # Not an HTTP standard code: nginx's "client closed request".
    Status.CANCELLED: 499,
    Status.UNKNOWN: 500,
    Status.INVALID_ARGUMENT: 400,
    Status.DEADLINE_EXCEEDED: 504,
    Status.NOT_FOUND: 404,
    Status.ALREADY_EXISTS: 409,
    Status.PERMISSION_DENIED: 403,
    Status.UNAUTHENTICATED: 401,
    Status.RESOURCE_EXHAUSTED: 429,
    # The system is not in a state for this request; the caller must change
    # something first, so it is a client error, not a conflict to retry.
    Status.FAILED_PRECONDITION: 400,
    Status.ABORTED: 409,
    Status.OUT_OF_RANGE: 400,
    Status.UNIMPLEMENTED: 501,
    Status.INTERNAL: 500,
    Status.UNAVAILABLE: 503,
    Status.DATA_LOSS: 500,
}

# The other way, for HTTP-level errors: the code whose table entry is that status.
_FROM_HTTP: dict[int, Status] = {
    400: Status.INVALID_ARGUMENT,
    401: Status.UNAUTHENTICATED,
    403: Status.PERMISSION_DENIED,
    404: Status.NOT_FOUND,
    409: Status.ABORTED,
    429: Status.RESOURCE_EXHAUSTED,
    499: Status.CANCELLED,
    501: Status.UNIMPLEMENTED,
    503: Status.UNAVAILABLE,
    504: Status.DEADLINE_EXCEEDED,
}

JSON_TYPE = "application/json"
# What a client hears of a failure the gateway did not expect (the log has the rest).
INTERNAL_MESSAGE = "internal error"
# What a client sees when even the error could not be rendered.
_FALLBACK = b'{"code": 13, "message": "failed to render the error"}'


class RpcError(Exception):
    """An RPC's failure as the gateway renders it: a gRPC status with details."""

    def __init__(
        self,
        status: Status,
        message: str,
        details: Sequence[Message] = (),
        headers: dict[str, str] | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self._http_status = http_status
        self.status = status
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})

    @classmethod
    def from_grpc(cls, error: GRPCError) -> RpcError:
        details = [d for d in (error.details or ()) if isinstance(d, Message)]
        return cls(error.status, error.message or error.status.name, details)

    @classmethod
    def invalid_argument(cls, message: str, field: str | None = None) -> RpcError:
        details: list[Message] = []
        if field is not None:
            details.append(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=field, description=message
                        )
                    ]
                )
            )
        return cls(Status.INVALID_ARGUMENT, message, details)

    @classmethod
    def from_http(cls, http_status: int, message: str) -> RpcError:
        """An HTTP-level failure (raised by middleware or a user route) in the one shape."""
        status = _FROM_HTTP.get(http_status)
        if status is None:
            status = Status.UNKNOWN if http_status >= 500 else Status.INVALID_ARGUMENT
        return cls(status, message, http_status=http_status)

    @property
    def http_status(self) -> int:
        if self._http_status is not None:
            return self._http_status
        return HTTP_STATUS.get(self.status, 500)

    def to_status(self) -> status_pb2.Status:
        packed = []
        for detail in self.details:
            item = any_pb2.Any()
            item.Pack(detail)
            packed.append(item)
        return status_pb2.Status(code=self.status.value, message=self.message, details=packed)

    def to_dict(self) -> dict[str, Any]:
        # Every key always present: clients can read `details` unconditionally.
        return json_format.MessageToDict(
            self.to_status(),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )

    def response_headers(self, realm: str | None = None) -> dict[str, str]:
        headers = dict(self.headers)
        retry = self.retry_after()
        if retry is not None:
            headers["retry-after"] = str(retry)
        if self.status is Status.UNAUTHENTICATED:
            headers["www-authenticate"] = bearer_challenge(realm)
        return headers

    def retry_after(self) -> int | None:
        """Whole seconds until a retry can succeed, from a RetryInfo detail."""
        for detail in self.details:
            if isinstance(detail, error_details_pb2.RetryInfo):
                delay = detail.retry_delay
                return max(1, math.ceil(int(delay.seconds) + int(delay.nanos) / 1e9))
        return None

    def response(self, *, realm: str | None = None) -> Response:
        """The HTTP answer; ``realm`` names the protection space of a 401's challenge."""
        try:
            body = json.dumps(self.to_dict(), separators=(",", ":")).encode()
        except Exception:  # an unrenderable detail must not turn into a 500 page
            body = _FALLBACK
        return Response(
            body, self.http_status, headers=self.response_headers(realm), media_type=JSON_TYPE
        )


def bearer_challenge(realm: str | None) -> str:
    """``WWW-Authenticate`` for a Bearer token (RFC 6750), quoting ``realm`` if given."""
    if not realm:
        return "Bearer"
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return f'Bearer realm="{quoted}"'


def internal_error() -> RpcError:
    """The answer to an unexpected failure: INTERNAL, telling nothing of its cause."""
    return RpcError(Status.INTERNAL, INTERNAL_MESSAGE)


def routing_error(http_status: int, allow: Sequence[str] = ()) -> RpcError:
    """The error for an unknown path (404) or a wrong method (405), in the one shape.

    As grpc-gateway: 405 carries UNIMPLEMENTED (its HTTP status set apart from
    the table, which would say 501) and lists the allowed methods.
    """
    if http_status == 405:
        return RpcError(
            Status.UNIMPLEMENTED,
            "Method Not Allowed",
            headers={"allow": ", ".join(sorted(set(allow)))},
            http_status=405,
        )
    return RpcError(Status.NOT_FOUND, "Not Found")


# Status codes by number, for statuses read from JSON or wire.
def status_from_code(code: int) -> Status:
    try:
        return Status(code)
    except ValueError:
        return Status.UNKNOWN


assert set(HTTP_STATUS) == set(Status), "every gRPC code needs an HTTP status"
assert Status.OK.value == code_pb2.OK
