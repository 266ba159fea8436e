"""agentplane's HTTP side: an ASGI application next to the gRPC server.

So far it serves the operator endpoints (``/health``, ``/ready``,
``/metrics``); the proto-driven JSON routes build on the same app.
"""

from .app import create_app

__all__ = ["create_app"]
