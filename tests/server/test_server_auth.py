"""Authentication and permissions over gRPC: the bearer token, close tokens, user hooks."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from agentplane.clients.grpcio import session_pb2
from agentplane.clients.grpcio import session_service_pb2 as pb
from agentplane.server import PermissionDenied, RequestContext, SessionRecord, Unauthenticated
from tests.support import ServerAgents, Servers, open_options

from .conftest import Clients

TOKEN = "s3cret"
RIGHT = (("authorization", f"Bearer {TOKEN}"),)
WRONG = (("authorization", "Bearer nope"),)


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        result = call()
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    raise AssertionError("the call succeeded")


def _every_rpc(stub: Any, session_id: str, metadata: Any) -> list[Any]:
    """One zero-argument callable per RPC, all with the given metadata."""
    return [
        lambda: stub.Start(pb.StartRequest(call_id="x"), metadata=metadata, timeout=5),
        lambda: stub.Get(pb.GetRequest(session_id=session_id), metadata=metadata, timeout=5),
        lambda: stub.Metrics(
            pb.MetricsRequest(session_id=session_id), metadata=metadata, timeout=5
        ),
        lambda: stub.StreamEvents(
            pb.StreamEventsRequest(session_id=session_id), metadata=metadata, timeout=5
        ),
        lambda: stub.StreamEvents(pb.StreamEventsRequest(), metadata=metadata, timeout=5),
        lambda: stub.Close(pb.CloseRequest(session_id=session_id), metadata=metadata, timeout=5),
    ]


async def test_api_token_required_for_every_rpc(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher(), open_options(api_token=TOKEN))
    stub = clients.aio_stub(served.grpc_target)
    session = await served.launcher.start_session("guarded")

    for metadata in (None, WRONG, (("authorization", TOKEN),), (("authorization", "Bearer "),)):
        for call in _every_rpc(stub, session.session_id, metadata):
            code, message = await _code(call)
            assert code == grpc.StatusCode.UNAUTHENTICATED, (metadata, message)
    assert served.launcher.stats().started == 1  # nothing was started without the token
    assert (await served.launcher.get_session(session.session_id)).state.name == "RUNNING"

    # The right token works for every RPC.
    started = await stub.Start(pb.StartRequest(call_id="ok"), metadata=RIGHT, timeout=5)
    assert started.close_token  # auth is on: a close token is issued
    await toy.context(started.session_id)
    sid = started.session_id
    got = await stub.Get(pb.GetRequest(session_id=sid), metadata=RIGHT, timeout=5)
    assert got.session.state == session_pb2.SESSION_STATE_RUNNING
    assert got.session.created_by == ""  # a shared token identifies no user
    metrics = await stub.Metrics(pb.MetricsRequest(session_id=sid), metadata=RIGHT, timeout=5)
    assert metrics.metrics["llm_output_tokens__total"] == 3.0
    stream = stub.StreamEvents(
        pb.StreamEventsRequest(session_id=sid, after_cursor=0), metadata=RIGHT, timeout=5
    )
    assert (await stream.read()).WhichOneof("event") == "started"
    stream.cancel()
    feed = stub.StreamEvents(pb.StreamEventsRequest(after_cursor=0), metadata=RIGHT, timeout=5)
    assert (await feed.read()).session_id == session.session_id
    feed.cancel()
    closed = await stub.Close(pb.CloseRequest(session_id=sid), metadata=RIGHT, timeout=5)
    assert closed.session.end_reason == session_pb2.END_REASON_CLOSED_BY_REQUEST


async def test_close_token_only_with_auth_on(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    stub = clients.aio_stub(served.grpc_target)
    started = await stub.Start(pb.StartRequest(call_id="open"), timeout=5)
    assert not started.HasField("close_token")


async def test_close_token_closes_its_session_without_credentials(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher(), open_options(api_token=TOKEN))
    stub = clients.aio_stub(served.grpc_target)
    a = await stub.Start(pb.StartRequest(call_id="a"), metadata=RIGHT, timeout=5)
    b = await stub.Start(pb.StartRequest(call_id="b"), metadata=RIGHT, timeout=5)
    assert a.close_token and b.close_token and a.close_token != b.close_token

    # A's token does not close B.
    code, message = await _code(
        lambda: stub.Close(
            pb.CloseRequest(session_id=b.session_id, close_token=a.close_token), timeout=5
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED, message
    got = await stub.Get(pb.GetRequest(session_id=b.session_id), metadata=RIGHT, timeout=5)
    assert got.session.state == session_pb2.SESSION_STATE_RUNNING

    # A's token closes A, with no credentials at all (sendBeacon cannot send any).
    closed = await stub.Close(
        pb.CloseRequest(session_id=a.session_id, close_token=a.close_token), timeout=5
    )
    assert closed.session.session_id == a.session_id
    assert closed.session.end_reason == session_pb2.END_REASON_CLOSED_BY_REQUEST
    got = await stub.Get(pb.GetRequest(session_id=b.session_id), metadata=RIGHT, timeout=5)
    assert got.session.state == session_pb2.SESSION_STATE_RUNNING


# ------------------------------------------------------------- user hooks


SEEN: list[RequestContext] = []


async def get_current_user(ctx: RequestContext) -> str:
    SEEN.append(ctx)
    user = ctx.metadata.get("x-user")
    if not user:
        raise Unauthenticated("send x-user")
    return user


async def only_the_creator(ctx: RequestContext, session: SessionRecord | None) -> None:
    if session is not None and session.created_by != ctx.user:
        raise PermissionDenied(f"{ctx.user} did not start this session")


async def no_mallory(ctx: RequestContext) -> None:
    if ctx.user == "mallory":
        raise PermissionDenied("mallory may not start sessions")


def as_user(name: str) -> tuple[tuple[str, str], ...]:
    return (("x-user", name),)


@pytest.fixture
def user_options() -> Any:
    return open_options(
        get_current_user=get_current_user,
        can_start_session=no_mallory,
        can_view_session=only_the_creator,
        can_close_session=only_the_creator,
        can_view_metrics=only_the_creator,
    )


async def test_user_hooks(
    toy: ServerAgents, serve: Servers, clients: Clients, user_options: Any
) -> None:
    served = await serve(toy.launcher(), user_options)
    stub = clients.aio_stub(served.grpc_target)

    code, _ = await _code(lambda: stub.Start(pb.StartRequest(call_id="anon"), timeout=5))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, message = await _code(
        lambda: stub.Start(pb.StartRequest(call_id="m"), metadata=as_user("mallory"), timeout=5)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and "mallory" in message
    assert served.launcher.stats().started == 0

    SEEN.clear()
    started = await stub.Start(pb.StartRequest(call_id="a"), metadata=as_user("alice"), timeout=5)
    assert started.close_token  # a user hook turns auth on
    # The hook sees the call as it came: method, metadata, peer.
    (ctx,) = SEEN
    assert ctx.method == "/agentplane.v1.SessionService/Start"
    assert ctx.metadata["x-user"] == "alice"
    assert ctx.peer is not None and ctx.peer.startswith("127.0.0.1:")
    sid = started.session_id
    got = await stub.Get(pb.GetRequest(session_id=sid), metadata=as_user("alice"), timeout=5)
    assert got.session.created_by == "alice"

    for call in _every_rpc(stub, sid, as_user("bob"))[1:4]:  # Get, Metrics, StreamEvents
        code, message = await _code(call)
        assert code == grpc.StatusCode.PERMISSION_DENIED, message
    code, _ = await _code(
        lambda: stub.Close(pb.CloseRequest(session_id=sid), metadata=as_user("bob"), timeout=5)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    got = await stub.Get(pb.GetRequest(session_id=sid), metadata=as_user("alice"), timeout=5)
    assert got.session.state == session_pb2.SESSION_STATE_RUNNING

    metrics = await stub.Metrics(
        pb.MetricsRequest(session_id=sid), metadata=as_user("alice"), timeout=5
    )
    assert metrics.session_id == sid
    closed = await stub.Close(pb.CloseRequest(session_id=sid), metadata=as_user("alice"), timeout=5)
    assert closed.session.created_by == "alice"
    assert closed.session.end_reason == session_pb2.END_REASON_CLOSED_BY_REQUEST


async def test_feed_of_all_sessions_shows_only_viewable_sessions(
    toy: ServerAgents, serve: Servers, clients: Clients, user_options: Any
) -> None:
    served = await serve(toy.launcher(), user_options)
    stub = clients.aio_stub(served.grpc_target)

    watchers = {
        name: stub.StreamEvents(pb.StreamEventsRequest(), metadata=as_user(name), timeout=10)
        for name in ("alice", "bob")
    }
    for call in watchers.values():
        await call.initial_metadata()  # subscribed before anything happens

    ids = {}
    for name in ("alice", "bob"):
        reply = await stub.Start(pb.StartRequest(call_id=f"{name}-call"), metadata=as_user(name))
        ids[name] = reply.session_id
    for name in ("alice", "bob"):
        await stub.Close(pb.CloseRequest(session_id=ids[name]), metadata=as_user(name))

    async def read_until_ended(name: str) -> list[Any]:
        seen = []
        while True:
            event = await asyncio.wait_for(watchers[name].read(), 5)
            assert event is not grpc.aio.EOF
            seen.append(event)
            if event.WhichOneof("event") == "ended" and event.session_id == ids[name]:
                return seen

    for name in ("alice", "bob"):
        seen = await read_until_ended(name)
        assert {e.session_id for e in seen} == {ids[name]}, name
        assert [e.WhichOneof("event") for e in seen] == [
            "started",
            "state_changed",
            "state_changed",
            "ended",
        ]
        watchers[name].cancel()
