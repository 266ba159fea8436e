"""The grpclib adapter: SessionService RPCs -> SessionAPI.

Each handler reads the request, builds a RequestContext from the call's
metadata, calls SessionAPI and maps a LauncherError through the one error
table. Nothing else lives here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from grpclib.server import Stream

from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.clients.grpcio.session_service_grpc import SessionServiceBase
from agentplane.core.errors import LauncherError
from agentplane.service.api import SessionAPI
from agentplane.service.auth import RequestContext
from agentplane.service.status import to_grpc_error

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
        try:
            response = await call(request, request_context(stream))
        except LauncherError as error:
            raise to_grpc_error(error) from None
        await stream.send_message(response)

    async def Start(self, stream: Stream[api_pb.StartRequest, api_pb.StartResponse]) -> None:
        await self._unary(stream, self._api.start)

    async def Close(self, stream: Stream[api_pb.CloseRequest, api_pb.CloseResponse]) -> None:
        await self._unary(stream, self._api.close)

    async def Get(self, stream: Stream[api_pb.GetRequest, api_pb.GetResponse]) -> None:
        await self._unary(stream, self._api.get)

    async def Metrics(self, stream: Stream[api_pb.MetricsRequest, api_pb.MetricsResponse]) -> None:
        await self._unary(stream, self._api.metrics)

    async def StreamEvents(
        self, stream: Stream[api_pb.StreamEventsRequest, api_pb.StreamEventsResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        try:
            events = await self._api.open_events(request, request_context(stream))
        except LauncherError as error:
            raise to_grpc_error(error) from None
        try:
            # Headers go out at once, so a watcher knows it is subscribed
            # before the first event arrives.
            await stream.send_initial_metadata()
            async for event in events:
                await stream.send_message(event)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
