"""One client over every transport: gRPC (grpcio), the embedded and the standalone gateway.

``connect(transport, launcher, options)`` serves ``launcher`` and answers a
``Client`` whose four calls take the same headers (HTTP headers, or gRPC
metadata) and answer an ``Answer``: ``OK`` and the response as JSON, or the
gRPC code's name, the message and what the HTTP status or the details said.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2

from agentplane.clients.grpcio import session_service_pb2 as pb
from agentplane.clients.grpcio import session_service_pb2_grpc as pb_grpc
from agentplane.server import AgentLauncher, ServeOptions
from tests.support import Deployment, deploy, serving

TRANSPORTS = ("grpc", "embedded", "standalone")
# grpc-gateway's table (gateway/errors.py), for the codes these tests meet.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
}
Headers = dict[str, str]


@dataclass
class Answer:
    code: str  # "OK" or a google.rpc.Code name
    message: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None  # RetryInfo over gRPC, Retry-After over HTTP

    @property
    def session_id(self) -> str:
        assert self.code == "OK", (self.code, self.message)
        return str(self.body["session_id"])


class Client:
    """The RPCs the permission callbacks guard, over one transport."""

    launcher: AgentLauncher

    async def start(self, call_id: str, headers: Headers) -> Answer:
        raise NotImplementedError

    async def get(self, session_id: str, headers: Headers) -> Answer:
        raise NotImplementedError

    async def metrics(self, session_id: str, headers: Headers) -> Answer:
        raise NotImplementedError

    async def close(self, session_id: str, headers: Headers) -> Answer:
        raise NotImplementedError


class HttpClient(Client):
    def __init__(self, gw: Deployment) -> None:
        self.launcher = gw.launcher
        self._http = gw.http

    @staticmethod
    def _answer(response: Any, response_body: str | None = None) -> Answer:
        body = response.json()
        if response.status_code < 300:
            # Get and Close answer the session alone over HTTP (response_body).
            return Answer("OK", body={response_body: body} if response_body else body)
        code = code_pb2.Code.Name(body["code"])
        assert response.status_code == HTTP_STATUS[code], (response.status_code, body)
        retry = response.headers.get("retry-after")
        return Answer(code, body["message"], body, float(retry) if retry else None)

    async def start(self, call_id: str, headers: Headers) -> Answer:
        return self._answer(
            await self._http.post("/sessions", json={"call_id": call_id}, headers=headers)
        )

    async def get(self, session_id: str, headers: Headers) -> Answer:
        response = await self._http.get(f"/sessions/{session_id}", headers=headers)
        return self._answer(response, "session")

    async def metrics(self, session_id: str, headers: Headers) -> Answer:
        return self._answer(
            await self._http.get(f"/sessions/{session_id}/metrics", headers=headers)
        )

    async def close(self, session_id: str, headers: Headers) -> Answer:
        response = await self._http.delete(f"/sessions/{session_id}", headers=headers)
        return self._answer(response, "session")


class GrpcClient(Client):
    def __init__(self, launcher: AgentLauncher, channel: grpc.aio.Channel) -> None:
        self.launcher = launcher
        self._stub = pb_grpc.SessionServiceStub(channel)

    async def _call(self, method: Any, request: Any, headers: Headers) -> Answer:
        try:
            response = await method(request, metadata=tuple(headers.items()), timeout=5)
        except grpc.aio.AioRpcError as error:
            retry = None
            for key, value in error.trailing_metadata() or ():
                if key == "grpc-status-details-bin":
                    for detail in status_pb2.Status.FromString(value).details:
                        info = error_details_pb2.RetryInfo()
                        if detail.Unpack(info):
                            retry = info.retry_delay.ToTimedelta().total_seconds()
            return Answer(error.code().name, error.details() or "", retry_after=retry)
        body = json_format.MessageToDict(response, preserving_proto_field_name=True)
        return Answer("OK", body=body)

    async def start(self, call_id: str, headers: Headers) -> Answer:
        return await self._call(self._stub.Start, pb.StartRequest(call_id=call_id), headers)

    async def get(self, session_id: str, headers: Headers) -> Answer:
        return await self._call(self._stub.Get, pb.GetRequest(session_id=session_id), headers)

    async def metrics(self, session_id: str, headers: Headers) -> Answer:
        request = pb.MetricsRequest(session_id=session_id)
        return await self._call(self._stub.Metrics, request, headers)

    async def close(self, session_id: str, headers: Headers) -> Answer:
        return await self._call(self._stub.Close, pb.CloseRequest(session_id=session_id), headers)


@contextlib.asynccontextmanager
async def connect(
    transport: str, launcher: AgentLauncher, options: ServeOptions
) -> AsyncIterator[Client]:
    """``launcher`` served with ``options``; a client over ``transport``."""
    if transport == "grpc":
        async with serving(launcher, options, http=False) as served:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{served.grpc_port}")
            try:
                yield GrpcClient(launcher, channel)
            finally:
                await channel.close()
    else:
        async with deploy(transport, launcher, options) as gw:
            yield HttpClient(gw)
