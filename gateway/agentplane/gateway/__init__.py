"""A generic HTTP/JSON gateway for gRPC services, driven by their ``google.api.http`` rules.

``create_app(backend, services=[...])`` builds the ASGI app; what is particular
to one API (success statuses, the document's title and comments, the realm of
a 401) comes in as its options. The backend answers the RPCs: in-process, or
``GrpcUpstream`` for a gateway in front of a remote gRPC server. It imports
nothing of the servers it fronts.
"""

from .app import create_app
from .backend import Backend, CallInfo
from .bindings import Binding, BindingError, service_bindings
from .cors import CorsOptions
from .errors import HTTP_STATUS, RpcError
from .openapi import Comments
from .streaming import SseResume
from .upstream import GrpcUpstream

__all__ = [
    "HTTP_STATUS",
    "Backend",
    "Binding",
    "BindingError",
    "CallInfo",
    "Comments",
    "CorsOptions",
    "GrpcUpstream",
    "RpcError",
    "SseResume",
    "create_app",
    "service_bindings",
]
