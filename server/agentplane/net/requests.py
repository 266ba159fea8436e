"""Request ids and the access log, shared by the gRPC and the HTTP port.

Every HTTP request and gRPC call gets a request id: the caller's
``x-request-id`` (an HTTP header or gRPC metadata) when it is 1 to 128
printable ASCII characters without spaces, else a new one (32 hex digits). It goes back to
the caller (an HTTP response header; gRPC initial metadata, or the trailers
of a trailers-only answer), the gateway forwards it upstream as metadata, and
``request_id_var`` carries it through the request's task, so every log line
logged while serving it can name it (``agentplane.server.logs``). Each
request or call ends with one line on ``agentplane.access``.
"""

from __future__ import annotations

import contextvars
import os

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_MAX_CHARS = 128
ACCESS_LOGGER = "agentplane.access"

# The id of the request or call being served in this task (None: none).
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agentplane_request_id", default=None
)


def valid_request_id(value: str | None) -> bool:
    """1 to 128 printable ASCII characters, no spaces (a log line shows it as one word)."""
    return (
        value is not None
        and 0 < len(value) <= REQUEST_ID_MAX_CHARS
        and all("!" <= ch <= "~" for ch in value)
    )


def new_request_id() -> str:
    # 128 random bits as 32 hex digits: what uuid4().hex gave, minus its 6
    # fixed bits and the UUID object (~5 µs a request and call less).
    return os.urandom(16).hex()


def accept_request_id(value: str | None) -> str:
    """The caller's id when valid, else a new one."""
    return value if value is not None and valid_request_id(value) else new_request_id()


def current_request_id() -> str | None:
    """The id of the request being served in this task, if any."""
    return request_id_var.get()
