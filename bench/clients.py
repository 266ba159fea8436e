"""The four ways the benchmark talks to a server, behind one small interface.

``http`` is agentplane's HTTP/JSON gateway (flat reference routes), ``peer``
the Vision Agents routes (``/calls/{call_id}/sessions[...]``), ``betterproto``
agentplane's betterproto2 + grpclib client and ``grpcio`` its protobuf
classes over ``grpc.aio``. HTTP gets one keep-alive connection per
concurrent client (HTTP/1.1 has no multiplexing); gRPC shares one channel
(HTTP/2 streams), as a backend would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from grpclib.client import Channel

from agentplane.clients import betterproto as bp
from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.clients.grpcio import session_service_pb2_grpc

from .httpclient import HttpConnection

CALL_TYPE = "default"
KINDS = ("http", "betterproto", "grpcio", "peer")


@dataclass(frozen=True)
class Endpoint:
    host: str
    http_port: int
    grpc_port: int | None = None


class Driver(Protocol):
    """One concurrent client's view of a server."""

    async def start(self, call_id: str, metadata: dict[str, Any] | None = None) -> str: ...
    async def get(self, session_id: str, call_id: str) -> None: ...
    async def metrics(self, session_id: str, call_id: str) -> None: ...
    async def close(self, session_id: str, call_id: str) -> None: ...


class Transport(Protocol):
    async def driver(self) -> Driver: ...
    async def aclose(self) -> None: ...


class _HttpDriver:
    """agentplane's flat routes (the reference agent server's v0.3 API)."""

    def __init__(self, conn: HttpConnection) -> None:
        self.conn = conn

    async def start(self, call_id: str, metadata: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"call_id": call_id, "call_type": CALL_TYPE}
        if metadata:
            body["metadata"] = metadata
        _, answer = await self.conn.request(
            "POST", "/sessions", json.dumps(body).encode(), expect=(200, 201)
        )
        session_id: str = json.loads(answer)["session_id"]
        return session_id

    async def get(self, session_id: str, call_id: str) -> None:
        await self.conn.request("GET", f"/sessions/{session_id}", expect=(200,))

    async def metrics(self, session_id: str, call_id: str) -> None:
        await self.conn.request("GET", f"/sessions/{session_id}/metrics", expect=(200,))

    async def close(self, session_id: str, call_id: str) -> None:
        await self.conn.request("DELETE", f"/sessions/{session_id}", expect=(200, 202, 204))


class _PeerDriver(_HttpDriver):
    """The call-scoped routes of Vision Agents 0.4+ (DELETE answers 202)."""

    async def start(self, call_id: str, metadata: dict[str, Any] | None = None) -> str:
        _, answer = await self.conn.request(
            "POST", f"/calls/{call_id}/sessions", b'{"call_type": "default"}', expect=(201,)
        )
        session_id: str = json.loads(answer)["session_id"]
        return session_id

    async def get(self, session_id: str, call_id: str) -> None:
        await self.conn.request("GET", f"/calls/{call_id}/sessions/{session_id}", expect=(200,))

    async def metrics(self, session_id: str, call_id: str) -> None:
        await self.conn.request(
            "GET", f"/calls/{call_id}/sessions/{session_id}/metrics", expect=(200,)
        )

    async def close(self, session_id: str, call_id: str) -> None:
        await self.conn.request(
            "DELETE", f"/calls/{call_id}/sessions/{session_id}", expect=(200, 202, 204)
        )


class HttpTransport:
    def __init__(self, endpoint: Endpoint, peer: bool) -> None:
        self._endpoint = endpoint
        self._peer = peer
        self._conns: list[HttpConnection] = []

    async def driver(self) -> Driver:
        conn = await HttpConnection.open(self._endpoint.host, self._endpoint.http_port)
        self._conns.append(conn)
        return _PeerDriver(conn) if self._peer else _HttpDriver(conn)

    async def aclose(self) -> None:
        for conn in self._conns:
            conn.close()


class _BetterprotoDriver:
    def __init__(self, stub: bp.SessionServiceStub) -> None:
        self.stub = stub

    async def start(self, call_id: str, metadata: dict[str, Any] | None = None) -> str:
        if metadata:
            raise NotImplementedError("metadata goes through the grpcio driver")
        reply = await self.stub.start(bp.StartRequest(call_id=call_id, call_type=CALL_TYPE))
        return reply.session_id

    async def get(self, session_id: str, call_id: str) -> None:
        await self.stub.get(bp.GetRequest(session_id=session_id))

    async def metrics(self, session_id: str, call_id: str) -> None:
        await self.stub.metrics(bp.MetricsRequest(session_id=session_id))

    async def close(self, session_id: str, call_id: str) -> None:
        await self.stub.close(bp.CloseRequest(session_id=session_id))


class BetterprotoTransport:
    def __init__(self, endpoint: Endpoint) -> None:
        assert endpoint.grpc_port is not None
        self.channel = Channel(endpoint.host, endpoint.grpc_port)
        self._driver = _BetterprotoDriver(bp.SessionServiceStub(self.channel))

    async def driver(self) -> Driver:
        return self._driver

    async def aclose(self) -> None:
        self.channel.close()


class _GrpcioDriver:
    def __init__(self, stub: Any) -> None:
        self.stub = stub

    async def start(self, call_id: str, metadata: dict[str, Any] | None = None) -> str:
        request = api_pb.StartRequest(call_id=call_id, call_type=CALL_TYPE)
        if metadata:
            request.metadata.update(metadata)
        reply = await self.stub.Start(request)
        session_id: str = reply.session_id
        return session_id

    async def get(self, session_id: str, call_id: str) -> None:
        await self.stub.Get(api_pb.GetRequest(session_id=session_id))

    async def metrics(self, session_id: str, call_id: str) -> None:
        await self.stub.Metrics(api_pb.MetricsRequest(session_id=session_id))

    async def close(self, session_id: str, call_id: str) -> None:
        await self.stub.Close(api_pb.CloseRequest(session_id=session_id))


class GrpcioTransport:
    def __init__(self, endpoint: Endpoint) -> None:
        assert endpoint.grpc_port is not None
        self.channel = grpc.aio.insecure_channel(f"{endpoint.host}:{endpoint.grpc_port}")
        stub = session_service_pb2_grpc.SessionServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self._driver = _GrpcioDriver(stub)

    async def driver(self) -> Driver:
        return self._driver

    async def aclose(self) -> None:
        await self.channel.close()


def open_transport(kind: str, endpoint: Endpoint) -> Transport:
    if kind == "http":
        return HttpTransport(endpoint, peer=False)
    if kind == "peer":
        return HttpTransport(endpoint, peer=True)
    if kind == "betterproto":
        return BetterprotoTransport(endpoint)
    if kind == "grpcio":
        return GrpcioTransport(endpoint)
    raise ValueError(f"unknown client kind {kind!r}; expected one of {KINDS}")
