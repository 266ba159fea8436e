"""Every RPC of SessionService over three real clients, and UNIMPLEMENTED for unknown methods.

Clients: the betterproto2 async client (grpclib Channel), the grpcio sync stub
(grpc.insecure_channel, run in a thread since the server shares this event loop)
and the grpc.aio stub. The server is a real grpclib server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

import agentplane.clients.betterproto as bp
from agentplane.clients.betterproto.google.protobuf import Struct
from agentplane.clients.grpcio import session_pb2
from agentplane.clients.grpcio import session_service_pb2 as pb
from tests.support import ServerAgents, Servers

from .conftest import Clients


async def test_every_rpc_over_the_betterproto2_client(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    stub = served.stub

    started = await stub.start(
        bp.StartRequest(
            call_id="bp-call", call_type="video", metadata=Struct.from_dict({"lang": "en"})
        ),
        timeout=5,
    )
    assert started.call_id == "bp-call"
    assert started.session_id
    assert started.session_started_at is not None
    assert started.close_token is None  # auth is off: no token issued
    await toy.context(started.session_id)

    got = (await stub.get(bp.GetRequest(session_id=started.session_id), timeout=5)).session
    assert got is not None
    assert got.session_id == started.session_id
    assert got.call_type == "video"
    assert got.state == bp.SessionState.RUNNING
    assert got.end_reason == bp.EndReason.UNSPECIFIED
    assert got.ended_at is None
    assert got.metadata is not None and got.metadata.to_dict() == {"lang": "en"}
    assert toy.agents[-1].metadata == {"lang": "en"}

    metrics = await stub.metrics(bp.MetricsRequest(session_id=started.session_id), timeout=5)
    assert metrics.session_id == started.session_id
    assert metrics.call_id == "bp-call"
    assert metrics.metrics["llm_latency_ms__avg"] == 12.5
    assert metrics.metrics["llm_output_tokens__total"] == 3.0
    assert metrics.metrics_generated_at is not None

    first: bp.StreamEventsResponse | None = None
    async for event in stub.stream_events(
        bp.StreamEventsRequest(session_id=started.session_id, after_cursor=0), timeout=5
    ):
        first = event
        break
    assert first is not None and first.started is not None
    assert first.session_id == started.session_id
    assert first.started.session is not None
    assert first.started.session.state == bp.SessionState.RUNNING

    closed = (await stub.close(bp.CloseRequest(session_id=started.session_id), timeout=5)).session
    again = (await stub.close(bp.CloseRequest(session_id=started.session_id), timeout=5)).session
    assert closed is not None and again is not None
    assert closed.state == bp.SessionState.ENDED
    assert closed.end_reason == bp.EndReason.CLOSED_BY_REQUEST
    assert again.to_dict() == closed.to_dict()  # idempotent: the same ended session
    assert toy.agents[-1].closed

    final = (await stub.get(bp.GetRequest(session_id=started.session_id), timeout=5)).session
    assert final is not None
    assert final.state == bp.SessionState.ENDED
    assert final.end_reason == bp.EndReason.CLOSED_BY_REQUEST
    assert final.ended_at is not None and final.ended_at >= final.session_started_at

    # An ended session keeps its final metrics.
    ended_metrics = await stub.metrics(bp.MetricsRequest(session_id=started.session_id), timeout=5)
    assert ended_metrics.metrics["llm_output_tokens__total"] == 3.0

    # Watching an ended session from now on answers how it ended, then completes.
    now = [
        e
        async for e in stub.stream_events(
            bp.StreamEventsRequest(session_id=started.session_id), timeout=5
        )
    ]
    assert len(now) == 1 and now[0].ended is not None

    # The replay of an ended session completes with its ENDED event.
    replay = [
        e
        async for e in stub.stream_events(
            bp.StreamEventsRequest(session_id=started.session_id, after_cursor=0), timeout=5
        )
    ]
    assert replay[0].started is not None
    assert replay[-1].ended is not None and replay[-1].ended.session is not None
    assert replay[-1].ended.session.end_reason == bp.EndReason.CLOSED_BY_REQUEST
    assert replay[-1].ended.metrics["llm_output_tokens__total"] == 3.0
    cursors = [e.cursor for e in replay]
    assert cursors == sorted(set(cursors))


def _sync_round_trip(stub: Any, toy_ready: Any) -> dict[str, Any]:
    """The whole sequence with the blocking grpcio stub (runs in a worker thread)."""
    out: dict[str, Any] = {}
    started = stub.Start(pb.StartRequest(call_id="sync-call"), timeout=5)
    out["started"] = started
    toy_ready(started.session_id)
    out["get"] = stub.Get(pb.GetRequest(session_id=started.session_id), timeout=5)
    out["metrics"] = stub.Metrics(pb.MetricsRequest(session_id=started.session_id), timeout=5)
    stream = stub.StreamEvents(
        pb.StreamEventsRequest(session_id=started.session_id, after_cursor=0), timeout=5
    )
    out["first_event"] = next(stream)
    stream.cancel()
    out["close"] = stub.Close(pb.CloseRequest(session_id=started.session_id), timeout=5)
    out["close_again"] = stub.Close(pb.CloseRequest(session_id=started.session_id), timeout=5)
    out["final"] = stub.Get(pb.GetRequest(session_id=started.session_id), timeout=5)
    out["replay"] = list(
        stub.StreamEvents(
            pb.StreamEventsRequest(session_id=started.session_id, after_cursor=0), timeout=5
        )
    )
    return out


async def _aio_round_trip(stub: Any, toy: ServerAgents) -> dict[str, Any]:
    out: dict[str, Any] = {}
    started = await stub.Start(pb.StartRequest(call_id="aio-call"), timeout=5)
    out["started"] = started
    await toy.context(started.session_id)
    out["get"] = await stub.Get(pb.GetRequest(session_id=started.session_id), timeout=5)
    out["metrics"] = await stub.Metrics(pb.MetricsRequest(session_id=started.session_id), timeout=5)
    call = stub.StreamEvents(
        pb.StreamEventsRequest(session_id=started.session_id, after_cursor=0), timeout=5
    )
    out["first_event"] = await call.read()
    call.cancel()
    out["close"] = await stub.Close(pb.CloseRequest(session_id=started.session_id), timeout=5)
    out["close_again"] = await stub.Close(pb.CloseRequest(session_id=started.session_id), timeout=5)
    out["final"] = await stub.Get(pb.GetRequest(session_id=started.session_id), timeout=5)
    out["replay"] = [
        e
        async for e in stub.StreamEvents(
            pb.StreamEventsRequest(session_id=started.session_id, after_cursor=0), timeout=5
        )
    ]
    return out


def _check_round_trip(out: dict[str, Any], call_id: str) -> None:
    started = out["started"]
    sid = started.session_id
    assert started.call_id == call_id and sid
    assert not started.HasField("close_token")
    assert started.HasField("session_started_at")

    got = out["get"].session
    assert got.session_id == sid
    assert got.state == session_pb2.SESSION_STATE_RUNNING
    assert got.call_type == "default"
    assert not got.HasField("ended_at")

    metrics = out["metrics"]
    assert metrics.session_id == sid and metrics.call_id == call_id
    assert metrics.metrics["llm_latency_ms__avg"] == 12.5
    assert metrics.metrics["llm_latency_ms__count"] == 1.0
    assert metrics.metrics["llm_output_tokens__total"] == 3.0

    first = out["first_event"]
    assert first.WhichOneof("event") == "started"
    assert first.session_id == sid and first.call_id == call_id
    assert first.started.session.state == session_pb2.SESSION_STATE_RUNNING

    closed, again, final = out["close"].session, out["close_again"].session, out["final"].session
    assert closed.state == session_pb2.SESSION_STATE_ENDED
    assert closed.end_reason == session_pb2.END_REASON_CLOSED_BY_REQUEST
    assert again == closed
    assert final.state == session_pb2.SESSION_STATE_ENDED
    assert final.end_reason == session_pb2.END_REASON_CLOSED_BY_REQUEST
    assert final.HasField("ended_at")
    assert final.ended_at.ToNanoseconds() >= final.session_started_at.ToNanoseconds()
    assert final.ended_at == closed.ended_at

    replay = out["replay"]
    kinds = [e.WhichOneof("event") for e in replay]
    assert kinds == ["started", "state_changed", "state_changed", "ended"]
    assert [e.cursor for e in replay] == sorted({e.cursor for e in replay})
    assert replay[-1].ended.session == closed


async def test_every_rpc_over_the_grpcio_sync_stub(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    stub = clients.sync_stub(served.grpc_target)
    loop = asyncio.get_running_loop()

    def toy_ready(session_id: str) -> None:
        asyncio.run_coroutine_threadsafe(toy.context(session_id), loop).result(5)

    out = await asyncio.to_thread(_sync_round_trip, stub, toy_ready)
    _check_round_trip(out, "sync-call")


async def test_every_rpc_over_the_grpc_aio_stub(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    out = await _aio_round_trip(clients.aio_stub(served.grpc_target), toy)
    _check_round_trip(out, "aio-call")


UNKNOWN_PATHS = [
    "/agentplane.v1.SessionService/Nope",
    "/agentplane.v9.NoSuchService/Start",
]


@pytest.mark.parametrize("path", UNKNOWN_PATHS)
async def test_unknown_method_is_unimplemented_for_grpcio_sync(
    path: str, toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    channel = clients.sync(served.grpc_target)

    def call() -> grpc.RpcError:
        try:
            channel.unary_unary(path)(b"", timeout=5)
        except grpc.RpcError as error:
            return error
        raise AssertionError("an unknown method answered")

    error = await asyncio.to_thread(call)
    assert isinstance(error, grpc.Call)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED, error.details()
    assert path in (error.details() or "")


@pytest.mark.parametrize("path", UNKNOWN_PATHS)
async def test_unknown_method_is_unimplemented_for_grpc_aio(
    path: str, toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    channel = clients.aio(served.grpc_target)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await channel.unary_unary(path)(b"", timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED, raised.value.details()
    assert path in (raised.value.details() or "")
    # A streaming call to an unknown method is refused the same way.
    with pytest.raises(grpc.aio.AioRpcError) as streamed:
        async for _ in channel.unary_stream(path)(b"", timeout=5):
            pass
    assert streamed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # And the server keeps serving the known ones on the same connection.
    health = await channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5)
    assert health == b"\x08\x01"  # HealthCheckResponse(status=SERVING)
