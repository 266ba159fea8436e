"""Launcher and auth errors reach grpcio clients as the right status with google.rpc details;
anything unexpected is INTERNAL with a fixed message, logged once.

Read the way a grpcio application reads them: ``grpc_status.rpc_status.from_call``
on the sync stub's error (the calls run in a worker thread because the server
shares this test's event loop).
"""

from __future__ import annotations

import asyncio
import logging
import re

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2

from agentplane.clients.grpcio import session_service_pb2 as pb
from agentplane.rpc.transport import GrpcLimits
from agentplane.server import RequestContext

from .conftest import Clients
from .support import RichError, Servers, Toy, open_options, sync_error

BadRequest = error_details_pb2.BadRequest
RetryInfo = error_details_pb2.RetryInfo


def metadata(**values: object) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


async def _error(stub_method: object, request: object) -> RichError:
    return await asyncio.to_thread(sync_error, stub_method, request, timeout=5)


def _retry_seconds(error: RichError) -> float | None:
    """RetryInfo's delay, read from grpc-status-details-bin; None without one."""
    infos = [d for d in error.details if isinstance(d, RetryInfo)]
    if not infos:
        return None
    return float(infos[0].retry_delay.ToTimedelta().total_seconds())


async def test_invalid_call_id_is_invalid_argument_naming_the_field(
    toy: Toy, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    stub = clients.sync_stub(served.grpc_target)

    error = await _error(stub.Start, pb.StartRequest(call_id="not a valid id!"))

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ARGUMENT"
    violations = error.first(BadRequest).field_violations
    assert [v.field for v in violations] == ["call_id"]
    assert "letters, digits" in violations[0].description
    assert "call_id" in error.message
    assert not toy.agents  # nothing was created

    # Every bad field is named, not just the first.
    both = await _error(stub.Start, pb.StartRequest(call_id="", call_type="bad type"))
    assert {v.field for v in both.first(BadRequest).field_violations} == {"call_id", "call_type"}


async def test_unknown_session_is_not_found_naming_the_id(
    toy: Toy, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    stub = clients.sync_stub(served.grpc_target)
    missing = "5a0c7f52-0000-4000-8000-000000000000"

    for method, request in (
        (stub.Get, pb.GetRequest(session_id=missing)),
        (stub.Metrics, pb.MetricsRequest(session_id=missing)),
        (stub.Close, pb.CloseRequest(session_id=missing)),
    ):
        error = await _error(method, request)
        assert error.code == grpc.StatusCode.NOT_FOUND
        assert missing in error.message
        assert error.reason == "SESSION_NOT_FOUND"

    # StreamEvents is refused before any event, with the same status.
    def stream() -> RichError:
        return sync_error(
            lambda: list(stub.StreamEvents(pb.StreamEventsRequest(session_id=missing), timeout=5))
        )

    streamed = await asyncio.to_thread(stream)
    assert streamed.code == grpc.StatusCode.NOT_FOUND and missing in streamed.message

    # An empty session id is a bad request, not a lookup.
    empty = await _error(stub.Get, pb.GetRequest(session_id=""))
    assert empty.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in empty.first(BadRequest).field_violations] == ["session_id"]


async def test_max_concurrent_sessions(toy: Toy, serve: Servers, clients: Clients) -> None:
    served = await serve(toy.launcher(max_concurrent_sessions=1))
    stub = clients.sync_stub(served.grpc_target)
    first = await asyncio.to_thread(stub.Start, pb.StartRequest(call_id="c1"), timeout=5)

    error = await _error(stub.Start, pb.StartRequest(call_id="c2"))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "MAX_CONCURRENT_SESSIONS"
    assert "1 concurrent" in error.message
    assert _retry_seconds(error) == 5.0  # a session may end any time: the launcher's hint

    # The slot comes back when the running session ends.
    await asyncio.to_thread(stub.Close, pb.CloseRequest(session_id=first.session_id), timeout=5)
    await asyncio.to_thread(stub.Start, pb.StartRequest(call_id="c2"), timeout=5)


async def test_max_sessions_per_call(toy: Toy, serve: Servers, clients: Clients) -> None:
    served = await serve(toy.launcher(max_sessions_per_call=1))
    stub = clients.sync_stub(served.grpc_target)
    await asyncio.to_thread(stub.Start, pb.StartRequest(call_id="busy"), timeout=5)

    error = await _error(stub.Start, pb.StartRequest(call_id="busy"))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "MAX_SESSIONS_PER_CALL"
    assert "busy" in error.message
    assert _retry_seconds(error) == 5.0
    # Another call is not affected.
    await asyncio.to_thread(stub.Start, pb.StartRequest(call_id="other"), timeout=5)


async def test_rate_limit_has_retry_info(toy: Toy, serve: Servers, clients: Clients) -> None:
    served = await serve(toy.launcher(permits_per_minute=1))
    stub = clients.sync_stub(served.grpc_target)
    await asyncio.to_thread(stub.Start, pb.StartRequest(call_id="r1"), timeout=5)

    error = await _error(stub.Start, pb.StartRequest(call_id="r2"))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "RATE_LIMITED"
    delay = error.first(RetryInfo).retry_delay.ToTimedelta().total_seconds()
    assert 50 < delay <= 60


async def test_draining_is_unavailable(toy: Toy, serve: Servers, clients: Clients) -> None:
    served = await serve(toy.launcher())
    stub = clients.sync_stub(served.grpc_target)
    await served.launcher.drain(timeout=0)

    error = await _error(stub.Start, pb.StartRequest(call_id="late"))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "DRAINING"
    assert "draining" in error.message


async def test_create_agent_failure_is_internal_naming_the_type_not_the_text(
    toy: Toy, serve: Servers, clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve(toy.launcher())
    stub = clients.sync_stub(served.grpc_target)
    toy.fail_with = "model weights missing: xyz-42"

    with caplog.at_level(logging.ERROR, "agentplane.launcher"):
        error = await _error(stub.Start, pb.StartRequest(call_id="doomed"))
    assert error.code == grpc.StatusCode.INTERNAL
    assert error.reason == "AGENT_START_FAILED"
    assert "create_agent failed: RuntimeError (error " in error.message
    assert "xyz-42" not in error.message  # an exception's text may hold a secret
    # The operator finds the traceback by the id the caller was given.
    error_id = re.search(r"\(error ([0-9a-f]+);", error.message)
    assert error_id is not None
    (logged,) = [r for r in caplog.records if error_id.group(1) in r.getMessage()]
    assert logged.exc_info is not None and "xyz-42" in str(logged.exc_info[1])
    # A failed Start leaves nothing behind.
    stats = served.launcher.stats()
    assert stats.in_flight == 0 and stats.started == 0


async def test_expose_error_details_puts_the_text_back(
    toy: Toy, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher(), open_options(expose_error_details=True))
    stub = clients.sync_stub(served.grpc_target)
    toy.fail_with = "model weights missing: xyz-42"

    error = await _error(stub.Start, pb.StartRequest(call_id="doomed"))
    assert error.reason == "AGENT_START_FAILED"
    assert "RuntimeError: model weights missing: xyz-42" in error.message


async def test_idempotency_key_reused_for_another_call(
    toy: Toy, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    stub = clients.sync_stub(served.grpc_target)
    first = await asyncio.to_thread(
        stub.Start, pb.StartRequest(call_id="call-a", idempotency_key="key-1"), timeout=5
    )
    retried = await asyncio.to_thread(
        stub.Start, pb.StartRequest(call_id="call-a", idempotency_key="key-1"), timeout=5
    )
    assert retried.session_id == first.session_id  # a retry answers the same session

    error = await _error(stub.Start, pb.StartRequest(call_id="call-b", idempotency_key="key-1"))
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert error.reason == "IDEMPOTENCY_KEY_REUSED"
    assert "key-1" in error.message and "call-a" in error.message
    assert served.launcher.stats().started == 1


async def test_start_abandoned_by_its_deadline_leaves_nothing_behind(
    toy: Toy, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher(max_concurrent_sessions=1))
    stub = clients.aio_stub(served.grpc_target)
    slow = pb.StartRequest(call_id="slow", metadata=metadata(create_delay=2.0))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Start(slow, timeout=0.3)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    for _ in range(100):  # the server cancels the handler at the deadline
        if toy.creating == 0 and served.launcher.stats().in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert toy.creating == 0 and not toy.agents
    assert served.launcher.stats().in_flight == 0
    # Its admission slot is free again.
    await stub.Start(pb.StartRequest(call_id="next"), timeout=5)


async def test_concurrent_retries_with_one_idempotency_key_start_one_session(
    toy: Toy, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    stub = clients.aio_stub(served.grpc_target)
    request = pb.StartRequest(
        call_id="retry", idempotency_key="k-7", metadata=metadata(create_delay=0.2)
    )
    replies = await asyncio.gather(*(stub.Start(request, timeout=5) for _ in range(5)))
    assert len({r.session_id for r in replies}) == 1
    assert len(toy.agents) == 1
    assert served.launcher.stats().started == 1

    # When the agent cannot be created, every waiting retry hears why.
    toy.fail_with = "no capacity upstream"
    failing = pb.StartRequest(
        call_id="retry-2", idempotency_key="k-8", metadata=metadata(create_delay=0.2)
    )
    results = await asyncio.gather(
        *(stub.Start(failing, timeout=5) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, grpc.aio.AioRpcError) for r in results), results
    assert {r.code() for r in results if isinstance(r, grpc.aio.AioRpcError)} == {
        grpc.StatusCode.INTERNAL
    }
    assert served.launcher.stats().in_flight == 1


async def test_a_hook_that_raises_is_internal_with_a_fixed_message_logged_once(
    toy: Toy, serve: Servers, clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "db password is hunter2"

    async def broken(ctx: RequestContext, *_: object) -> None:
        raise RuntimeError(secret)

    served = await serve(toy.launcher(), open_options(can_view_session=broken))
    stub = clients.sync_stub(served.grpc_target)
    first = await asyncio.to_thread(stub.Start, pb.StartRequest(call_id="c1"), timeout=5)
    caplog.clear()

    got = await _error(stub.Get, pb.GetRequest(session_id=first.session_id))

    def stream() -> RichError:
        request = pb.StreamEventsRequest(session_id=first.session_id)
        return sync_error(lambda: list(stub.StreamEvents(request, timeout=5)))

    streamed = await asyncio.to_thread(stream)
    for error in (got, streamed):
        assert error.code == grpc.StatusCode.INTERNAL
        assert error.message == "internal error"
        assert error.reason == "INTERNAL"
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert len(logged) == 2, [r.getMessage() for r in logged]
    for record in logged:
        assert record.name == "agentplane.service" and record.levelname == "ERROR"
        assert record.exc_info is not None and secret in str(record.exc_info[1])
    # The session is unharmed.
    assert (await served.launcher.get_session(first.session_id)).state.name == "RUNNING"
    await asyncio.to_thread(stub.Close, pb.CloseRequest(session_id=first.session_id), timeout=5)
    assert served.launcher.stats().in_flight == 0

    # An unexpected failure of get_current_user is the same: INTERNAL, nothing started.
    caplog.clear()
    again = await serve(toy.launcher(), open_options(get_current_user=broken))
    start = await _error(clients.sync_stub(again.grpc_target).Start, pb.StartRequest(call_id="c2"))
    assert (start.code, start.message) == (grpc.StatusCode.INTERNAL, "internal error")
    assert len([r for r in caplog.records if r.exc_info is not None]) == 1
    assert again.launcher.stats().started == 0


# Every RESOURCE_EXHAUSTED a Start can get from a limit, and the retry hint it carries:
# (launcher options, the Starts' call ids, the refused one's reason, the hint's bounds).
LIMITS_429 = [
    ({"max_concurrent_sessions": 1}, ["a", "b"], "MAX_CONCURRENT_SESSIONS", (5.0, 5.0)),
    ({"max_sessions_per_call": 1}, ["a", "a"], "MAX_SESSIONS_PER_CALL", (5.0, 5.0)),
    ({"max_sessions_per_node": 1}, ["a", "b"], "MAX_SESSIONS_PER_NODE", (5.0, 5.0)),
    ({"permits_per_minute": 1}, ["a", "b"], "RATE_LIMITED", (50.0, 60.0)),
    (
        {"max_concurrent_sessions": 1, "limit_retry_after": 0.5},
        ["a", "b"],
        "MAX_CONCURRENT_SESSIONS",
        (0.5, 0.5),
    ),
]


@pytest.mark.parametrize(("options", "calls", "reason", "bounds"), LIMITS_429)
async def test_every_limit_says_when_to_retry(
    options: dict[str, object],
    calls: list[str],
    reason: str,
    bounds: tuple[float, float],
    toy: Toy,
    serve: Servers,
    clients: Clients,
) -> None:
    served = await serve(toy.launcher(**options))
    stub = clients.sync_stub(served.grpc_target)
    await asyncio.to_thread(stub.Start, pb.StartRequest(call_id=calls[0]), timeout=5)

    error = await _error(stub.Start, pb.StartRequest(call_id=calls[1]))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == reason
    delay = _retry_seconds(error)
    assert delay is not None and bounds[0] <= delay <= bounds[1]


async def test_a_limit_without_a_hint_sends_no_retry_info(
    toy: Toy, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher(max_concurrent_sessions=1, limit_retry_after=None))
    stub = clients.sync_stub(served.grpc_target)
    await asyncio.to_thread(stub.Start, pb.StartRequest(call_id="a"), timeout=5)
    error = await _error(stub.Start, pb.StartRequest(call_id="b"))
    assert error.reason == "MAX_CONCURRENT_SESSIONS"
    assert _retry_seconds(error) is None


async def test_a_message_over_the_limit_has_no_retry_hint(
    toy: Toy, serve: Servers, clients: Clients
) -> None:
    """RESOURCE_EXHAUSTED that no retry can cure (the same message stays too large)."""
    options = open_options(grpc_limits=GrpcLimits(max_message_bytes=1024))
    served = await serve(toy.launcher(), options)
    stub = clients.sync_stub(served.grpc_target)
    request = pb.StartRequest(call_id="big", metadata=metadata(blob="x" * 4096))

    def call() -> grpc.RpcError:
        try:
            stub.Start(request, timeout=5)
        except grpc.RpcError as error:
            return error
        raise AssertionError("the call succeeded")

    error = await asyncio.to_thread(call)
    assert isinstance(error, grpc.Call)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(error.trailing_metadata() or ())
    assert "grpc-status-details-bin" not in trailers
