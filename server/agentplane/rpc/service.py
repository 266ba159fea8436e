"""The grpclib adapter: SessionService RPCs -> SessionAPI.

Each handler reads the request, builds a RequestContext from the call's
metadata, calls SessionAPI and raises whatever it raised as the GRPCError of
its status (``agentplane.service.status``, the one error path; unexpected
errors are INTERNAL there). Nothing else lives here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.clients.grpcio.session_service_grpc import SessionServiceBase
from agentplane.service.api import SessionAPI
from agentplane.service.auth import RequestContext
from agentplane.service.convert import event_wire
from agentplane.service.status import ErrorStatus, error_status

from .live import LiveSender

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def request_context(stream: Stream[Any, Any]) -> RequestContext:
    """The caller as SessionAPI sees it: text metadata, peer address, method."""
    metadata = {
        key.lower(): value
        for key, value in (stream.metadata or {}).items()
        if isinstance(value, str)
    }
    peer = stream.peer.addr() if stream.peer is not None else None
    return RequestContext(
        method=stream._method_name,  # grpclib keeps the :path here
        metadata=metadata,
        peer=f"{peer[0]}:{peer[1]}" if peer else None,
    )


def grpc_error(status: ErrorStatus) -> GRPCError:
    """``status`` as grpclib sends it: code, message, details in grpc-status-details-bin."""
    return GRPCError(Status(status.code), status.message, list(status.details))


class SessionService(SessionServiceBase):
    """``agentplane.v1.SessionService`` on grpclib."""

    def __init__(self, api: SessionAPI) -> None:
        self._api = api

    async def _unary(
        self,
        stream: Stream[Req, Resp],
        call: Callable[[Req, RequestContext], Awaitable[Resp]],
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        ctx = request_context(stream)
        try:
            response = await call(request, ctx)
        except Exception as error:  # cancellation (a BaseException) goes on as it is
            raise grpc_error(error_status(error, ctx.method)) from None
        await stream.send_message(response)

    async def Start(self, stream: Stream[api_pb.StartRequest, api_pb.StartResponse]) -> None:
        await self._unary(stream, self._api.start)

    async def Close(self, stream: Stream[api_pb.CloseRequest, api_pb.CloseResponse]) -> None:
        await self._unary(stream, self._api.close)

    async def Get(self, stream: Stream[api_pb.GetRequest, api_pb.GetResponse]) -> None:
        await self._unary(stream, self._api.get)

    async def Metrics(self, stream: Stream[api_pb.MetricsRequest, api_pb.MetricsResponse]) -> None:
        await self._unary(stream, self._api.metrics)

    async def ListSessions(
        self, stream: Stream[api_pb.ListSessionsRequest, api_pb.ListSessionsResponse]
    ) -> None:
        await self._unary(stream, self._api.list_sessions)

    async def StreamEvents(
        self, stream: Stream[api_pb.StreamEventsRequest, api_pb.StreamEventsResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        ctx = request_context(stream)
        try:
            # A caught-up watcher's events are written from the log's delivery
            # pass (``LiveSender``); this loop sends only what it declines.
            events = await self._api.open_events(request, ctx, LiveSender(stream))
        except Exception as error:
            raise grpc_error(error_status(error, ctx.method)) from None
        try:
            # Headers go out at once, so a watcher knows it is subscribed
            # before the first event arrives.
            await stream.send_initial_metadata()
            while True:
                # Only the events' own failures are the service's; a failed
                # send is the connection's, and grpclib's to handle.
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    break
                except Exception as error:
                    raise grpc_error(error_status(error, ctx.method)) from None
                # Serialized once for all watchers; the codec passes bytes through.
                await stream.send_message(cast(api_pb.StreamEventsResponse, event_wire(event)))
        finally:
            await events.aclose()  # type: ignore[attr-defined]
