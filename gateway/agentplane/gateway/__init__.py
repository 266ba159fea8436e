"""agentplane's HTTP/JSON gateway, driven by the proto's ``google.api.http`` rules.

``create_app(backend)`` builds the ASGI app; the backend is the server itself
in ``agentplane serve`` (no network hop) or ``GrpcUpstream`` for a standalone
gateway (``agentplane gateway --upstream HOST:PORT``).
"""

from .app import CorsOptions, create_app, session_service
from .backend import Backend, CallInfo
from .bindings import Binding, BindingError, service_bindings
from .errors import HTTP_STATUS, RpcError
from .upstream import GrpcUpstream

__all__ = [
    "HTTP_STATUS",
    "Backend",
    "Binding",
    "BindingError",
    "CallInfo",
    "CorsOptions",
    "GrpcUpstream",
    "RpcError",
    "create_app",
    "service_bindings",
    "session_service",
]
