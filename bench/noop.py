"""The stack's own ceiling: a no-op grpclib RPC and a no-op HTTP route.

``python -m bench.noop --port P --grpc-port G`` serves, in one process, what
agentplane serves minus agentplane: grpclib with the same generated
SessionService base answering Get with a prebuilt response, and uvicorn (with
agentplane's HttpServer settings) answering ``GET /sessions/{id}`` with a
prebuilt JSON body from a bare ASGI callable. Nothing is looked up, nothing
converted: the fraction of these rates agentplane reaches is what its own
code costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from agentplane.clients.grpcio import session_pb2 as pb
from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.clients.grpcio.session_service_grpc import SessionServiceBase
from agentplane.http.server import HttpServer

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SESSION_ID = "5b0a9c1e-6a57-4b86-9d0e-2f1d3c4b5a69"


def _session() -> pb.Session:
    session = pb.Session(
        session_id=SESSION_ID,
        call_id="bench-call",
        call_type="default",
        state=pb.SessionState.SESSION_STATE_RUNNING,
    )
    session.session_started_at.FromSeconds(int(time.time()))
    return session


class NoopService(SessionServiceBase):
    """Get answers one prebuilt response; nothing else is served."""

    def __init__(self) -> None:
        self._get = api_pb.GetResponse(session=_session())

    async def Get(self, stream: Stream[api_pb.GetRequest, api_pb.GetResponse]) -> None:
        await stream.recv_message()
        await stream.send_message(self._get)

    async def Start(self, stream: Stream[api_pb.StartRequest, api_pb.StartResponse]) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)

    async def Close(self, stream: Stream[api_pb.CloseRequest, api_pb.CloseResponse]) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)

    async def Metrics(self, stream: Stream[api_pb.MetricsRequest, api_pb.MetricsResponse]) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)

    async def ListSessions(
        self, stream: Stream[api_pb.ListSessionsRequest, api_pb.ListSessionsResponse]
    ) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)

    async def StreamEvents(
        self, stream: Stream[api_pb.StreamEventsRequest, api_pb.StreamEventsResponse]
    ) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)


BODY = json.dumps(
    {
        "session_id": SESSION_ID,
        "call_id": "bench-call",
        "session_started_at": "2026-11-21T04:00:00Z",
        "call_type": "default",
        "state": "SESSION_STATE_RUNNING",
    }
).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def noop_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A bare ASGI app: 200 with a prebuilt body for every GET."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def serve(host: str, port: int, grpc_port: int) -> None:
    server = Server([NoopService()])
    await server.start(host, grpc_port)
    http = HttpServer(noop_app, host, port)
    await http.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await http.stop(1.0)
    server.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.grpc_port))


if __name__ == "__main__":
    main()
