"""What every listening port shares: accept-failure logging, logs that repeat at most once per interval.

Standard library only; both the gRPC port (``agentplane.rpc``) and the HTTP
port (``agentplane.http``) use it.
"""

from .logs import ACCEPT_FAILED, AcceptFailureLog, BadRequestLog, RateLimitedLog

__all__ = ["ACCEPT_FAILED", "AcceptFailureLog", "BadRequestLog", "RateLimitedLog"]
