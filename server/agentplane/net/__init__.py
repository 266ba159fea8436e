"""What every listening port shares: accept-failure logging, logs that repeat at most once per interval, request ids, TLS.

Standard library only; both the gRPC port (``agentplane.rpc``) and the HTTP
port (``agentplane.http``) use it.
"""

from .logs import (
    ACCEPT_FAILED,
    AcceptFailureLog,
    BadRequestLog,
    Demoted,
    ListenError,
    RateLimitedLog,
    demote,
)
from .requests import (
    ACCESS_LOGGER,
    REQUEST_ID_HEADER,
    accept_request_id,
    current_request_id,
    new_request_id,
    request_id_var,
    valid_request_id,
)
from .tls import TlsError, TlsFiles, client_context, server_context

__all__ = [
    "ACCEPT_FAILED",
    "ACCESS_LOGGER",
    "REQUEST_ID_HEADER",
    "AcceptFailureLog",
    "BadRequestLog",
    "Demoted",
    "ListenError",
    "RateLimitedLog",
    "TlsError",
    "TlsFiles",
    "accept_request_id",
    "client_context",
    "current_request_id",
    "demote",
    "new_request_id",
    "request_id_var",
    "server_context",
    "valid_request_id",
]
