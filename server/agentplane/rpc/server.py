"""The grpclib server: SessionService, health, reflection, proper UNIMPLEMENTED.

Health (decision 28): service ``""`` (what Kubernetes' gRPC probe and most
load balancers ask by default) and ``agentplane.v1.SessionService`` are
readiness: SERVING only while a Start would be admitted (warmed up, not
draining, below capacity, the cluster reachable), pushed by the launcher.
Service ``liveness`` is SERVING while the process serves, draining and
warming up included: the one a liveness or startup probe asks.
Reflection answers both ``grpc.reflection.v1`` and ``v1alpha`` (grpcurl 1.8
speaks only v1alpha; buf curl tries v1 first).
"""

from __future__ import annotations

import asyncio
import functools
from ssl import SSLContext
from typing import Any

from google.protobuf import empty_pb2
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.health.check import ServiceStatus
from grpclib.health.service import OVERALL, Health
from grpclib.reflection.service import ServerReflection
from grpclib.server import Stream

from agentplane.core import AgentLauncher
from agentplane.net import AcceptFailureLog, ListenError, demote
from agentplane.service.api import SessionAPI

from . import access
from .service import SessionService
from .transport import GrpcLimits, LimitedServer, log

SERVICE_NAME = "agentplane.v1.SessionService"
# The health service that says only "this process serves" (liveness probes).
LIVENESS_SERVICE = "liveness"


class _NamedHealthService:
    """A health-service name with no methods of its own (grpclib keys checks by a servable)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __mapping__(self) -> dict[str, Any]:
        return {f"/{self._name}/": None}


async def _unimplemented(method: str, stream: Stream[Any, Any]) -> None:
    raise GRPCError(Status.UNIMPLEMENTED, f"Method not found: {method}")


class _MethodTable(dict[str, Handler]):
    """grpclib's method mapping, answering unknown methods properly.

    Plain grpclib answers an unknown method with a trailers-only response
    that has no content-type, which grpcio, grpc-go and connect-go clients
    report as UNKNOWN ("missing content-type"). Routing unknown paths to a
    handler that raises UNIMPLEMENTED makes grpclib send a well-formed
    response, so every client sees UNIMPLEMENTED (and buf curl can fall back
    from reflection v1 to v1alpha).
    """

    def get(self, key: str, default: Any = None) -> Handler:
        handler = super().get(key)
        if handler is not None:
            return handler
        return Handler(
            functools.partial(_unimplemented, key),
            Cardinality.UNARY_UNARY,
            empty_pb2.Empty,
            empty_pb2.Empty,
        )


class GrpcServer:
    """Owns the grpclib Server and the readiness status it reports.

    Example::

        server = GrpcServer(launcher, api)
        await server.start("127.0.0.1", 0)
        print(server.port)
        ...
        server.close()
        await server.wait_closed()
    """

    def __init__(
        self, launcher: AgentLauncher, api: SessionAPI, limits: GrpcLimits | None = None
    ) -> None:
        self.service = SessionService(api)
        self.readiness = ServiceStatus()
        launcher.add_accepting_listener(self.readiness.set)
        # "" follows readiness (Kubernetes' gRPC probe asks "" unless told
        # otherwise); "liveness" has no check: SERVING while the process serves.
        health = Health(
            {
                self.service: [self.readiness],
                OVERALL: [self.readiness],
                _NamedHealthService(LIVENESS_SERVICE): [],
            }
        )
        # grpclib's Server with message, header, handshake and connection
        # limits (transport.py).
        self.server = LimitedServer(
            ServerReflection.extend([self.service, health]), limits or GrpcLimits()
        )
        self.limits = self.server.limits
        # Request ids in and out, one access line per call (access.py).
        access.install(self.server)
        # A client cancelling its call (or its deadline passing) is ordinary:
        # the access line says it; grpclib's INFO lines about it become DEBUG.
        demote("grpclib.server", "Request was cancelled", "Deadline exceeded")
        # grpclib 0.4.9 (pinned) keeps the method mapping here; the test suite
        # checks that unknown methods answer UNIMPLEMENTED, so a grpclib
        # upgrade that moves it fails loudly.
        self.server._mapping = _MethodTable(self.server._mapping)
        self.port: int | None = None
        self._accept_log: AcceptFailureLog | None = None

    async def start(self, host: str, port: int, *, ssl: SSLContext | None = None) -> None:
        """Listen (over TLS with ``ssl``: its ALPN must offer h2), or raise ListenError."""
        try:
            await self.server.start(host, port, ssl=ssl)
        except OSError as error:
            raise ListenError("gRPC", host, port, error) from error
        listener = self.server._server
        # Any loop's server (uvloop's is no asyncio.Server) has ``sockets``.
        sockets = tuple(getattr(listener, "sockets", None) or ())
        self.port = sockets[0].getsockname()[1] if sockets else port
        self._accept_log = AcceptFailureLog(
            asyncio.get_running_loop(), sockets, "gRPC", log, self.limits.log_interval
        )
        self._accept_log.install()

    def close(self) -> None:
        if self._accept_log is not None:
            self._accept_log.remove()
            self._accept_log = None
        self.server.close()

    async def wait_closed(self) -> None:
        await self.server.wait_closed()
