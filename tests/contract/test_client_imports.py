"""The generated clients import on their own and talk to each other across gRPC stacks.

* betterproto2 client (grpclib) -> grpclib server on the protobuf classes, in memory;
* grpcio `grpc.aio` client -> the same grpclib server on a real loopback port;
* grpcio sync client -> grpclib server on the betterproto2 server base, loopback port.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream
from grpclib.testing import ChannelFor

import agentplane.clients.betterproto as bp
from agentplane.clients.grpcio import session_pb2, session_service_grpc, session_service_pb2_grpc
from agentplane.clients.grpcio import session_service_pb2 as pb

STARTED_AT = "2025-01-15T10:30:00.250Z"
RPCS = {
    "start": "Start",
    "close": "Close",
    "get": "Get",
    "metrics": "Metrics",
    "list_sessions": "ListSessions",
    "stream_events": "StreamEvents",
}


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )


@pytest.mark.parametrize(
    "code",
    [
        "import agentplane.clients.betterproto",
        "from agentplane.clients.betterproto import SessionServiceStub, StartRequest, SessionServiceBase",
        "import agentplane.clients.grpcio.session_service_pb2_grpc",
        "import agentplane.clients.grpcio.session_service_grpc",
        "import agentplane.clients.grpcio.session_pb2",
        # Both stacks in one process: protobuf's default pool and betterproto2's own pool.
        "import agentplane.clients.grpcio.session_service_grpc, agentplane.clients.betterproto",
        "import agentplane.clients.betterproto, agentplane.clients.grpcio.session_service_pb2_grpc",
    ],
)
def test_imports_alone_in_a_fresh_interpreter(code: str) -> None:
    done = run_python(code)
    assert done.returncode == 0, done.stderr


def test_clients_package_imports_nothing_heavy() -> None:
    done = run_python(
        "import sys, agentplane.clients\n"
        "heavy = [m for m in ('grpc', 'grpclib', 'betterproto2', 'google.protobuf') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert agentplane.clients.__doc__ and 'agentplane.clients.betterproto' in agentplane.clients.__doc__\n"
    )
    assert done.returncode == 0, done.stderr


def test_betterproto_package_exports_the_contract() -> None:
    assert set(bp.__all__) >= {
        "SessionServiceStub",
        "SessionServiceBase",
        "StartRequest",
        "StreamEventsResponse",
        "SessionState",
        "EndReason",
    }
    for name in bp.__all__:
        assert getattr(bp, name).__module__ == "agentplane.clients.betterproto.agentplane.v1"


def test_betterproto_stub_has_async_methods() -> None:
    for name in ("start", "close", "get", "metrics"):
        assert inspect.iscoroutinefunction(getattr(bp.SessionServiceStub, name)), name
    assert inspect.isasyncgenfunction(bp.SessionServiceStub.stream_events)
    parameters = inspect.signature(bp.SessionServiceStub.start).parameters
    assert {"timeout", "deadline", "metadata"} <= set(parameters)


def test_every_rpc_is_in_every_generated_stub() -> None:
    service = pb.DESCRIPTOR.services_by_name["SessionService"]
    assert {m.name for m in service.methods} == set(RPCS.values())
    abstract = session_service_grpc.SessionServiceBase.__abstractmethods__
    assert abstract == frozenset(RPCS.values())
    for name in RPCS.values():
        assert hasattr(session_service_pb2_grpc.SessionServiceServicer, name)
    for name in RPCS:
        assert hasattr(bp.SessionServiceBase, name)


def timestamp(text: str) -> Timestamp:
    value = Timestamp()
    value.FromJsonString(text)
    return value


class ProtobufSessions(session_service_grpc.SessionServiceBase):
    """A grpclib server on the protobuf classes; knows one session, "abc-123"."""

    def session(self, call_id: str) -> session_pb2.Session:
        return session_pb2.Session(
            session_id="abc-123",
            call_id=call_id,
            session_started_at=timestamp(STARTED_AT),
            state=session_pb2.SESSION_STATE_RUNNING,
        )

    async def Start(self, stream: Stream[pb.StartRequest, pb.StartResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if not request.call_id:
            raise GRPCError(Status.INVALID_ARGUMENT, "call_id is required")
        await stream.send_message(
            pb.StartResponse(
                session_id="abc-123",
                call_id=request.call_id,
                session_started_at=timestamp(STARTED_AT),
                # Echo the metadata back so the client can compare what crossed the wire.
                close_token=json_format.MessageToJson(
                    request.metadata, sort_keys=True, indent=None
                ),
            )
        )

    async def Close(self, stream: Stream[pb.CloseRequest, pb.CloseResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        ended = self.session(request.call_id)
        ended.state = session_pb2.SESSION_STATE_ENDED
        ended.end_reason = session_pb2.END_REASON_CLOSED_BY_REQUEST
        await stream.send_message(pb.CloseResponse(session=ended))

    async def Get(self, stream: Stream[pb.GetRequest, pb.GetResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if request.session_id != "abc-123":
            raise GRPCError(Status.NOT_FOUND, f"no session {request.session_id}")
        await stream.send_message(pb.GetResponse(session=self.session(request.call_id)))

    async def Metrics(self, stream: Stream[pb.MetricsRequest, pb.MetricsResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(
            pb.MetricsResponse(
                session_id=request.session_id, metrics={"llm_latency_ms__avg": 245.5}
            )
        )

    async def ListSessions(
        self, stream: Stream[pb.ListSessionsRequest, pb.ListSessionsResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        # Echoes what arrived, so the client's encoding of each filter shows.
        token = (
            f"{request.page_size}|{request.page_token}|{list(request.states)}|"
            f"{list(request.end_reasons)}|{request.started_after.seconds}|{request.order_by}"
        )
        await stream.send_message(
            pb.ListSessionsResponse(sessions=[self.session(request.call_id)], next_page_token=token)
        )

    async def StreamEvents(
        self, stream: Stream[pb.StreamEventsRequest, pb.StreamEventsResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        start = request.after_cursor + 1 if request.HasField("after_cursor") else 100
        await stream.send_message(
            pb.StreamEventsResponse(cursor=start, gap=session_pb2.EventsGap(after_cursor=start - 1))
        )
        await stream.send_message(
            pb.StreamEventsResponse(
                cursor=start + 1,
                session_id="abc-123",
                time=timestamp(STARTED_AT),
                state_changed=session_pb2.StateChanged(
                    previous_state=session_pb2.SESSION_STATE_RUNNING,
                    state=session_pb2.SESSION_STATE_ENDING,
                ),
            )
        )
        await stream.send_message(
            pb.StreamEventsResponse(
                cursor=start + 2, session_id="abc-123", ended=session_pb2.SessionEnded()
            )
        )


class BetterprotoSessions(bp.SessionServiceBase):
    """A grpclib server on the betterproto2 server base."""

    async def start(self, message: bp.StartRequest) -> bp.StartResponse:
        return bp.StartResponse(
            session_id="bp-1",
            call_id=message.call_id,
            session_started_at=datetime.datetime(2025, 1, 15, 10, 30, tzinfo=datetime.UTC),
        )

    async def stream_events(
        self, message: bp.StreamEventsRequest
    ) -> AsyncIterator[bp.StreamEventsResponse]:
        for cursor in range(3):
            yield bp.StreamEventsResponse(
                cursor=cursor,
                session_id=message.session_id,
                agent_event=bp.AgentEvent(name=f"e{cursor}"),
            )


@asynccontextmanager
async def loopback_server(service: Any) -> AsyncIterator[int]:
    """A grpclib server on 127.0.0.1 and an OS-chosen port; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = Server([service])
    await server.start(sock=sock)
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


async def test_betterproto_client_against_grpclib_protobuf_server() -> None:
    metadata = {"user": {"id": 7, "tags": ["a", None, True]}, "lang": "en"}
    async with ChannelFor([ProtobufSessions()]) as channel:
        stub = bp.SessionServiceStub(channel)

        started = await stub.start(
            bp.StartRequest(
                call_id="my-call-123", metadata=bp.google.protobuf.Struct.from_dict(metadata)
            ),
            timeout=5,
        )
        assert started.session_id == "abc-123"
        assert started.call_id == "my-call-123"
        assert started.session_started_at == datetime.datetime(
            2025, 1, 15, 10, 30, 0, 250000, tzinfo=datetime.UTC
        )
        assert json.loads(started.close_token) == {
            "lang": "en",
            "user": {"id": 7.0, "tags": ["a", None, True]},
        }

        got = await stub.get(bp.GetRequest(session_id="abc-123", call_id="my-call-123"))
        assert got.session is not None and got.session.state == bp.SessionState.RUNNING

        closed = await stub.close(bp.CloseRequest(session_id="abc-123"))
        assert closed.session is not None
        assert closed.session.end_reason == bp.EndReason.CLOSED_BY_REQUEST

        listed = await stub.list_sessions(
            bp.ListSessionsRequest(
                call_id="my-call-123",
                page_size=2,
                page_token="t",
                states=[bp.SessionState.ENDED],
                end_reasons=[bp.EndReason.ERROR, bp.EndReason.NODE_LOST],
                started_after=datetime.datetime(2025, 1, 15, tzinfo=datetime.UTC),
                order_by="session_started_at",
            )
        )
        assert [s.call_id for s in listed.sessions] == ["my-call-123"]
        assert listed.next_page_token == "2|t|[4]|[3, 7]|1736899200|session_started_at"

        metrics = await stub.metrics(bp.MetricsRequest(session_id="abc-123"))
        assert metrics.metrics == {"llm_latency_ms__avg": 245.5}

        with pytest.raises(GRPCError) as missing:
            await stub.get(bp.GetRequest(session_id="nope"))
        assert missing.value.status is Status.NOT_FOUND
        assert missing.value.message == "no session nope"

        events = [
            event async for event in stub.stream_events(bp.StreamEventsRequest(after_cursor=0))
        ]
        assert [event.cursor for event in events] == [1, 2, 3]
        assert events[0].gap == bp.EventsGap(after_cursor=0)
        assert events[1].state_changed == bp.StateChanged(
            previous_state=bp.SessionState.RUNNING, state=bp.SessionState.ENDING
        )
        assert events[2].ended == bp.SessionEnded()
        # Absent after_cursor is not the same as 0 on the wire.
        fresh = [event.cursor async for event in stub.stream_events(bp.StreamEventsRequest())]
        assert fresh == [100, 101, 102]


async def test_grpc_aio_client_against_grpclib_server() -> None:
    async with loopback_server(ProtobufSessions()) as port:  # noqa: SIM117 (channel needs port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = session_service_pb2_grpc.SessionServiceStub(channel)

            started = await stub.Start(pb.StartRequest(call_id="my-call-123"), timeout=5)
            assert started.session_id == "abc-123"
            assert started.session_started_at.ToJsonString() == STARTED_AT

            with pytest.raises(grpc.aio.AioRpcError) as invalid:
                await stub.Start(pb.StartRequest(), timeout=5)
            assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert invalid.value.details() == "call_id is required"

            call = stub.StreamEvents(
                pb.StreamEventsRequest(session_id="abc-123", after_cursor=41), timeout=5
            )
            events = [event async for event in call]
            assert [event.cursor for event in events] == [42, 43, 44]
            assert [event.WhichOneof("event") for event in events] == [
                "gap",
                "state_changed",
                "ended",
            ]
            assert await call.code() == grpc.StatusCode.OK


async def test_grpcio_sync_client_against_betterproto_server() -> None:
    def client(port: int) -> tuple[Any, list[Any], grpc.StatusCode]:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = session_service_pb2_grpc.SessionServiceStub(channel)
            started = stub.Start(pb.StartRequest(call_id="c-9"), timeout=5)
            events = list(stub.StreamEvents(pb.StreamEventsRequest(session_id="s-9"), timeout=5))
            with pytest.raises(grpc.RpcError) as unimplemented:
                stub.Get(pb.GetRequest(session_id="s-9"), timeout=5)
            return started, events, unimplemented.value.code()

    async with loopback_server(BetterprotoSessions()) as port:
        started, events, get_code = await asyncio.to_thread(client, port)
    assert isinstance(started, pb.StartResponse)
    assert (started.session_id, started.call_id) == ("bp-1", "c-9")
    assert started.session_started_at.ToJsonString() == "2025-01-15T10:30:00Z"
    assert [(e.cursor, e.session_id, e.agent_event.name) for e in events] == [
        (0, "s-9", "e0"),
        (1, "s-9", "e1"),
        (2, "s-9", "e2"),
    ]
    assert get_code == grpc.StatusCode.UNIMPLEMENTED  # the base's default for unimplemented RPCs
