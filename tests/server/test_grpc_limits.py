"""Nothing a gRPC client sends can take the node down, hang it, or hide a session (issue 12).

A real grpclib server on a loopback port, attacked with raw sockets and a raw
h2 client: oversized, compressed, truncated and corrupt messages, non-ASCII
header values, connections that never finish the handshake, more connections
than the cap. Each waits for its outcome with a bound, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.health.v1 import health_pb2
from grpclib.health.v1.health_grpc import HealthStub

from agentplane.clients.grpcio import session_service_pb2 as pb
from agentplane.core import AgentLauncher
from agentplane.net import RateLimitedLog
from agentplane.rpc.server import GrpcServer
from agentplane.rpc.transport import GrpcLimits
from agentplane.service.api import SessionAPI
from tests.support import wait_until

from .support import Toy, open_options

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
START = "/agentplane.v1.SessionService/Start"
BOUND = 10.0  # seconds any expected outcome may take on a loaded 2-core machine


def grpc_frame(payload: bytes, *, compressed: bool = False, declared: int | None = None) -> bytes:
    length = len(payload) if declared is None else declared
    return struct.pack(">?I", compressed, length) + payload


@contextlib.asynccontextmanager
async def grpc_server(launcher: AgentLauncher, **limits: Any) -> AsyncIterator[GrpcServer]:
    await launcher.start()
    server = GrpcServer(
        launcher, SessionAPI(launcher, open_options().auth_policy()), GrpcLimits(**limits)
    )
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await launcher.shutdown()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


class RawH2:
    """A bare HTTP/2 client: sends what it is told, records what comes back per stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding="latin-1",
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config=config)
        self.events: list[h2.events.Event] = []
        self.closed = False

    @classmethod
    async def open(cls, port: int) -> RawH2:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        raw = cls(reader, writer)
        raw.conn.initiate_connection()
        raw.flush()
        await raw.until(
            lambda: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in raw.events)
        )
        return raw

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    def request(
        self, path: str, body: bytes | None = None, extra: list[tuple[Any, Any]] | None = None
    ) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        headers: list[tuple[Any, Any]] = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "127.0.0.1"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *(extra or []),
        ]
        self.conn.send_headers(stream_id, headers)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=True)
        self.flush()
        return stream_id

    def status(self, stream_id: int) -> tuple[str | None, str | None]:
        """(grpc-status, grpc-message) the server answered on the stream, if any yet."""
        for event in self.events:
            if (
                isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived))
                and event.stream_id == stream_id
            ):
                headers = dict(event.headers or ())
                if "grpc-status" in headers:
                    return headers["grpc-status"], headers.get("grpc-message")
        return None, None

    def reset(self, stream_id: int) -> bool:
        return any(
            isinstance(e, h2.events.StreamReset) and e.stream_id == stream_id for e in self.events
        )

    def terminated(self) -> bool:
        return self.closed or any(
            isinstance(e, h2.events.ConnectionTerminated) for e in self.events
        )

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(BOUND):
            while not condition():
                data = await self.reader.read(65536)
                if not data:
                    self.closed = True
                    if not condition():
                        raise ConnectionError("server closed the connection")
                    return
                for event in self.conn.receive_data(data):
                    self.events.append(event)
                    if isinstance(event, h2.events.DataReceived) and event.stream_id:
                        self.conn.acknowledge_received_data(
                            event.flow_controlled_length or 0, event.stream_id
                        )
                self.flush()

    def close(self) -> None:
        self.writer.close()


def _ld(tag: int, data: bytes) -> bytes:
    """A length-delimited protobuf field."""
    n, varint = len(data), b""
    while True:
        low, n = n & 0x7F, n >> 7
        varint += bytes([low | 0x80 if n else low])
        if not n:
            return bytes([tag]) + varint + data


def too_deep_start_request(depth: int = 300) -> bytes:
    """StartRequest.metadata nesting Structs ``depth`` deep (protobuf parses 100)."""
    value = b""
    for _ in range(depth):
        entry = _ld(0x0A, b"a") + _ld(0x12, value)  # Struct.fields entry {key, value}
        value = _ld(0x2A, _ld(0x0A, entry))  # Value.struct_value
    return _ld(0x1A, _ld(0x0A, _ld(0x0A, b"a") + _ld(0x12, value)))  # StartRequest.metadata


def health_request() -> bytes:
    return grpc_frame(health_pb2.HealthCheckRequest(service="").SerializeToString())


# ------------------------------------------------------------------ message size


async def test_a_message_declared_too_large_is_refused_before_its_body_arrives(toy: Toy) -> None:
    async with grpc_server(toy.launcher(), max_message_bytes=1024 * 1024) as server:
        assert server.port
        raw = await RawH2.open(server.port)
        # Declares 1 GiB, sends only the prefix and 1 KiB: without the limit
        # grpclib waits for the whole body, and nothing ever answers.
        big = raw.request(START)
        raw.conn.send_data(big, grpc_frame(b"x" * 1024, declared=2**30))
        raw.flush()
        await raw.until(lambda: raw.status(big)[0] is not None)
        status, message = raw.status(big)
        assert status == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        assert message is not None and "1048576" in message and str(2**30) in message
        await raw.until(lambda: raw.reset(big))  # the client is told to stop sending

        # The same connection goes on: more DATA for the refused stream is
        # dropped, and another call is answered.
        with contextlib.suppress(Exception):
            raw.conn.send_data(big, b"y" * 60_000)
        ok = raw.request(HEALTH_CHECK, health_request())
        await raw.until(lambda: raw.status(ok)[0] is not None)
        assert raw.status(ok)[0] == "0"
        assert not raw.terminated()
        raw.close()


async def test_refused_streams_are_released(toy: Toy) -> None:
    from agentplane.rpc.transport import _GuardedProcessor

    async with grpc_server(toy.launcher(), max_message_bytes=1024) as server:
        assert server.port
        raw = await RawH2.open(server.port)
        refused = [raw.request(START, grpc_frame(b"", declared=4096)) for _ in range(50)]
        await raw.until(lambda: all(raw.status(s)[0] is not None for s in refused))
        ok = raw.request(HEALTH_CHECK, health_request())
        await raw.until(lambda: raw.status(ok)[0] is not None)

        def held() -> int:
            processors = [o for o in gc.get_objects() if isinstance(o, _GuardedProcessor)]
            return sum(len(p.streams) for p in processors)

        async with asyncio.timeout(BOUND):
            while held():  # noqa: ASYNC110 - grpclib's stream table has no event
                await asyncio.sleep(0.01)

        # Streams the client opens and resets at once are released too.
        for _ in range(50):
            stream_id = raw.request(START)
            raw.conn.reset_stream(stream_id)
        raw.flush()
        ok = raw.request(HEALTH_CHECK, health_request())
        await raw.until(lambda: raw.status(ok)[0] is not None)
        async with asyncio.timeout(BOUND):
            while held():  # noqa: ASYNC110 - grpclib's stream table has no event
                await asyncio.sleep(0.01)
        raw.close()


async def test_a_message_at_the_limit_is_served(toy: Toy) -> None:
    async with grpc_server(toy.launcher(), max_message_bytes=64) as server:
        assert server.port
        raw = await RawH2.open(server.port)
        payload = health_pb2.HealthCheckRequest(service="").SerializeToString()
        padded = payload + b"\x00" * 0  # an empty request: well under 64 bytes
        ok = raw.request(HEALTH_CHECK, grpc_frame(padded))
        big = raw.request(HEALTH_CHECK, grpc_frame(b"\x0a\x41" + b"a" * 65))  # 67 bytes
        await raw.until(lambda: None not in (raw.status(ok)[0], raw.status(big)[0]))
        assert raw.status(ok)[0] == "0"
        assert raw.status(big)[0] == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        raw.close()


async def test_messages_arriving_on_one_connection_share_a_budget(toy: Toy) -> None:
    limits = {"max_message_bytes": 2**20, "max_connection_buffer_bytes": 2 * 2**20}
    async with grpc_server(toy.launcher(), **limits) as server:
        assert server.port
        raw = await RawH2.open(server.port)
        pending = []
        for _ in range(2):  # each within the message limit, both within the budget
            stream_id = raw.request(START)
            raw.conn.send_data(stream_id, grpc_frame(b"", declared=2**20))
            pending.append(stream_id)
        third = raw.request(START)
        raw.conn.send_data(third, grpc_frame(b"", declared=2**20))
        raw.flush()
        await raw.until(lambda: raw.status(third)[0] is not None)
        status, message = raw.status(third)
        assert status == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        assert message is not None and "this connection" in message
        assert all(raw.status(s)[0] is None for s in pending)  # still waiting for bodies

        # A stream that goes away gives its share back.
        raw.conn.reset_stream(pending[0])
        raw.flush()
        fourth = raw.request(START)
        raw.conn.send_data(fourth, grpc_frame(b"x" * 10, declared=2**20))
        ok = raw.request(HEALTH_CHECK, health_request())
        await raw.until(lambda: raw.status(ok)[0] is not None)
        assert raw.status(ok)[0] == "0" and raw.status(fourth)[0] is None
        raw.close()


# ------------------------------------------------------------------ malformed messages


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (grpc_frame(b"\xff\xff\xff"), "malformed"),  # corrupt protobuf
        (grpc_frame(b"\x0a\x02\xc3\x28"), "malformed"),  # invalid UTF-8 in a string field
        (grpc_frame(b"\x0a" * 300 + b"\x00"), "malformed"),  # truncated nested bytes
        (grpc_frame(too_deep_start_request()), "malformed"),  # nested too deep
        (grpc_frame(b"\x0a\x00", compressed=True), "compressed"),
        (grpc_frame(b"\x0a\x05ab", declared=7), "ended inside a gRPC message"),  # truncated body
        (b"\x00\x00", "ended inside a gRPC message"),  # truncated prefix
    ],
)
async def test_a_malformed_message_is_invalid_argument_with_one_warning_line(
    toy: Toy, caplog: pytest.LogCaptureFixture, body: bytes, problem: str
) -> None:
    async with grpc_server(toy.launcher()) as server:
        assert server.port
        raw = await RawH2.open(server.port)
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            bad = raw.request(HEALTH_CHECK if problem != "malformed" else START, body)
            await raw.until(lambda: raw.status(bad)[0] is not None)
            ok = raw.request(HEALTH_CHECK, health_request())
            await raw.until(lambda: raw.status(ok)[0] is not None)
        status, message = raw.status(bad)
        assert status == str(grpc.StatusCode.INVALID_ARGUMENT.value[0]), message
        assert message is not None and problem in message
        assert raw.status(ok)[0] == "0"
        loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(loud) == 1, [r.getMessage() for r in loud]
        assert loud[0].levelno == logging.WARNING
        assert not any(r.exc_info for r in caplog.records)
        raw.close()


async def test_a_flood_of_bad_requests_logs_one_line_per_kind(
    toy: Toy, caplog: pytest.LogCaptureFixture
) -> None:
    async with grpc_server(toy.launcher()) as server:
        raw = await RawH2.open(server.port)
        try:
            with caplog.at_level(logging.DEBUG):
                streams = [raw.request(START, grpc_frame(b"\xff\xff\xff")) for _ in range(20)]
                streams += [raw.request(START, grpc_frame(b"", compressed=True)) for _ in range(20)]
                await raw.until(lambda: all(raw.status(s)[0] is not None for s in streams))
            assert {raw.status(s)[0] for s in streams} == {str(Status.INVALID_ARGUMENT.value)}
            loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            # One line per kind (malformed, compressed), not one per request.
            assert len(loud) == 2, loud
            assert any("malformed" in line for line in loud)
            assert any("compressed" in line for line in loud)
        finally:
            raw.close()


async def test_nan_and_infinity_in_start_metadata_are_invalid_argument(toy: Toy) -> None:
    async with grpc_server(toy.launcher()) as server:
        channel = Channel("127.0.0.1", server.port)
        try:
            from grpclib.exceptions import GRPCError

            from agentplane.clients.grpcio.session_service_grpc import SessionServiceStub

            stub = SessionServiceStub(channel)
            for bad in (math.nan, math.inf, -math.inf):
                request = pb.StartRequest(call_id="c1")
                request.metadata.update({"ratio": bad, "nested": {"deep": [1, bad]}})
                with pytest.raises(GRPCError) as caught:
                    await stub.Start(request, timeout=BOUND)
                assert caught.value.status.name == "INVALID_ARGUMENT"
                assert "metadata.ratio" in (caught.value.message or "")
                assert "metadata.nested" in (caught.value.message or "")
            assert not toy.agents
        finally:
            channel.close()


# ------------------------------------------------------------------ headers


async def test_a_non_ascii_header_value_fails_only_its_own_stream(toy: Toy) -> None:
    async with grpc_server(toy.launcher()) as server:
        assert server.port
        raw = await RawH2.open(server.port)
        watch = raw.request(HEALTH_WATCH)
        raw.conn.send_data(watch, health_request(), end_stream=True)
        raw.flush()
        await raw.until(
            lambda: any(
                isinstance(e, h2.events.DataReceived) and e.stream_id == watch for e in raw.events
            )
        )
        bad = raw.request(HEALTH_CHECK, health_request(), extra=[(b"x-name", b"caf\xc3\xa9")])
        await raw.until(lambda: raw.status(bad)[0] is not None or raw.reset(bad))
        assert raw.status(bad)[0] == str(grpc.StatusCode.INVALID_ARGUMENT.value[0])

        # The watch on the same connection is untouched, and new calls work.
        ok = raw.request(HEALTH_CHECK, health_request())
        await raw.until(lambda: raw.status(ok)[0] is not None)
        assert raw.status(ok)[0] == "0"
        assert not raw.reset(watch) and raw.status(watch)[0] is None
        assert not raw.terminated()
        raw.close()


async def test_the_server_advertises_a_header_list_limit(toy: Toy) -> None:
    async with grpc_server(toy.launcher(), max_header_list_bytes=8192) as server:
        assert server.port
        raw = await RawH2.open(server.port)
        code = h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE
        await raw.until(lambda: raw.conn.remote_settings.get(code) == 8192)
        raw.close()


# ------------------------------------------------------------------ connections


async def test_a_connection_without_a_handshake_is_closed_after_the_timeout(toy: Toy) -> None:
    async with grpc_server(toy.launcher(), handshake_timeout=0.5) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        good = Channel("127.0.0.1", server.port)
        try:
            await HealthStub(good).Check(health_pb2.HealthCheckRequest(), timeout=BOUND)
            async with asyncio.timeout(BOUND):
                while await reader.read(65536):  # the server's SETTINGS, then EOF
                    pass
            # The silent connection is gone; the one that spoke stays.
            reply = await HealthStub(good).Check(health_pb2.HealthCheckRequest(), timeout=BOUND)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            writer.close()
            good.close()


async def test_an_idle_connection_is_closed_with_goaway_and_a_watch_keeps_its_own(
    toy: Toy,
) -> None:
    async with grpc_server(toy.launcher(), idle_timeout=0.5) as server:
        idle = await RawH2.open(server.port)  # handshakes, then sends nothing
        watcher = await RawH2.open(server.port)
        watch = watcher.request(HEALTH_WATCH, grpc_frame(b""))
        await watcher.until(lambda: bool(watcher.status(watch)[0] or _data_on(watcher, watch)))
        try:
            await idle.until(idle.terminated)
            terminated = [e for e in idle.events if isinstance(e, h2.events.ConnectionTerminated)]
            assert terminated and terminated[0].error_code == 0  # GOAWAY NO_ERROR
            assert server.server.gate.idle_closed >= 1
            # The watch's connection has a stream open: it outlives many idle periods.
            await wait_until(
                lambda: server.server.gate.idle_closed >= 1 and server.server.gate.open == 1
            )
            assert not watcher.terminated() and watcher.status(watch) == (None, None)
            # A connection that served calls says which it processed: a client may safely
            # retry anything it started after them on a new connection.
            used = await RawH2.open(server.port)
            check = used.request(HEALTH_CHECK, grpc_frame(b""))
            await used.until(lambda: used.status(check)[0] is not None)
            await used.until(used.terminated)
            goaway = [e for e in used.events if isinstance(e, h2.events.ConnectionTerminated)]
            assert goaway[0].error_code == 0 and goaway[0].last_stream_id == check
            used.close()
        finally:
            idle.close()
            watcher.close()


def _data_on(raw: RawH2, stream_id: int) -> bool:
    return any(
        isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id for e in raw.events
    )


async def test_a_request_that_does_not_arrive_in_time_is_refused_alone(toy: Toy) -> None:
    async with grpc_server(toy.launcher(), request_timeout=0.5) as server:
        raw = await RawH2.open(server.port)
        try:
            # Headers and half a message, then nothing: a slow (or stalled) sender.
            slow = raw.request(START)
            raw.conn.send_data(slow, grpc_frame(b"x" * 10, declared=100))
            silent = raw.request(START)  # headers only
            raw.flush()
            await raw.until(
                lambda: raw.status(slow)[0] is not None and raw.status(silent)[0] is not None
            )
            for stream in (slow, silent):
                code, message = raw.status(stream)
                assert code == str(Status.DEADLINE_EXCEEDED.value), (code, message)
                assert message is not None and "did not arrive whole within 0.5 s" in message
            # The connection goes on: a whole request on it is served.
            check = raw.request(HEALTH_CHECK, grpc_frame(b""))
            await raw.until(lambda: raw.status(check)[0] is not None)
            assert raw.status(check)[0] == "0" and not raw.terminated()
        finally:
            raw.close()


async def test_the_connection_cap_refuses_new_connections_while_others_go_on(
    toy: Toy, caplog: pytest.LogCaptureFixture
) -> None:
    async with grpc_server(toy.launcher(), max_connections=2) as server:
        first, second = Channel("127.0.0.1", server.port), Channel("127.0.0.1", server.port)
        try:
            for channel in (first, second):
                await HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=BOUND)
            with caplog.at_level(logging.WARNING, logger="agentplane.rpc"):
                for _ in range(3):
                    extra = await RawH2.open(server.port)  # it gets SETTINGS, then GOAWAY
                    await extra.until(extra.terminated)
                    terminated = [
                        e for e in extra.events if isinstance(e, h2.events.ConnectionTerminated)
                    ]
                    assert terminated and terminated[0].error_code == 0xB  # ENHANCE_YOUR_CALM
                    extra.close()
            assert len([r for r in caplog.records if "cap" in r.getMessage()]) == 1
            for channel in (first, second):
                await HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=BOUND)
            # A freed place is taken again.
            first.close()
            async with asyncio.timeout(BOUND):
                while server.server.gate.open > 1:  # noqa: ASYNC110 - a counter, no event to wait on
                    await asyncio.sleep(0.01)
            third = Channel("127.0.0.1", server.port)
            await HealthStub(third).Check(health_pb2.HealthCheckRequest(), timeout=BOUND)
            third.close()
        finally:
            first.close()
            second.close()


def test_repeated_warnings_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("agentplane.rpc"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="agentplane.rpc"):
        assert limited.warning("accept failed")
        for _ in range(1000):
            assert not limited.warning("accept failed")
        now[0] = 10.0
        assert limited.warning("accept failed")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["accept failed", "accept failed (1000 more since the last such line)"]


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_message_bytes"):
        GrpcLimits(max_message_bytes=0)
    with pytest.raises(ValueError, match="max_connections"):
        GrpcLimits(max_connections=0)


async def test_accept_failures_of_the_grpc_port_are_logged_once_per_interval(
    toy: Toy, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        async with grpc_server(toy.launcher()) as server:
            listener = server.server._server
            assert isinstance(listener, asyncio.Server)
            sock = listener.sockets[0]
            with caplog.at_level(logging.WARNING, logger="agentplane.rpc"):
                for _ in range(500):  # what CPython reports per failed accept()
                    loop.call_exception_handler(
                        {
                            "message": "socket.accept() out of system resource",
                            "exception": OSError(24, "Too many open files"),
                            "socket": sock,
                        }
                    )
                loop.call_exception_handler({"message": "something else"})
            lines = [r for r in caplog.records if "accept() failed" in r.getMessage()]
            assert len(lines) == 1 and not lines[0].exc_info
            assert [c["message"] for c in seen] == ["something else"]  # passed on
        loop.call_exception_handler({"message": "after close"})
        assert seen[-1]["message"] == "after close"  # the handler is removed on close
    finally:
        loop.set_exception_handler(previous)


def test_serve_options_carry_the_grpc_limits() -> None:
    options = open_options(grpc_limits=GrpcLimits(max_message_bytes=1234))
    assert options.grpc_limits.max_message_bytes == 1234
    assert GrpcLimits().max_message_bytes == 4 * 2**20
    assert 16 <= GrpcLimits().max_connections <= 4096


def test_the_core_refuses_non_finite_metadata_from_any_caller() -> None:
    from agentplane.core.errors import InvalidArgument
    from agentplane.core.validation import validate_start

    with pytest.raises(InvalidArgument) as caught:
        validate_start("c1", "default", {"ok": 1.5, "bad": [1, {"x": math.inf}]}, "")
    assert [v.field for v in caught.value.violations] == ["metadata.bad"]
    validate_start("c1", "default", {"ok": 1.5, "nested": {"n": [1, 2.0]}}, "")


def test_the_grpclib_and_h2_seams_the_limits_rely_on_are_there() -> None:
    """agentplane.rpc.transport subclasses grpclib at these points; an upgrade that
    moves one fails here by name (the behaviour tests above fail too)."""
    import inspect
    from importlib.metadata import version

    import grpclib.protocol
    import grpclib.server
    import grpclib.stream

    assert version("grpclib") == "0.4.9"  # pinned in pyproject.toml
    assert callable(grpclib.server.Server._protocol_factory)
    assert callable(grpclib.server.Handler.cancel)
    assert "self._tasks" in inspect.getsource(grpclib.server.Handler.accept)
    processor_methods = (
        "process_request_received",
        "process_data_received",
        "process_stream_ended",
        "process_stream_reset",
        "process_trailers_received",
        "process_remote_settings_changed",
    )
    for name in processor_methods:
        assert callable(getattr(grpclib.protocol.EventsProcessor, name)), name
    assert "_streams.pop(stream.id)" in inspect.getsource(grpclib.protocol.EventsProcessor.register)
    conn = h2.connection.H2Connection()
    assert (
        conn.decoder.max_header_list_size == h2.connection.H2Connection.DEFAULT_MAX_HEADER_LIST_SIZE
    )
    # grpclib's stream reader: a 5-byte prefix, then recv_data(declared length).
    source = inspect.getsource(grpclib.stream.recv_message)
    assert "recv_data(5)" in source and "recv_data(message_len)" in source


async def test_serve_options_grpc_limits_reach_the_served_port(toy: Toy) -> None:
    from agentplane.server import ServeOptions
    from agentplane.testing import serving

    options = ServeOptions(api_token=None, grpc_limits=GrpcLimits(max_message_bytes=100))
    async with serving(toy.launcher(), options, http=False) as served:
        raw = await RawH2.open(served.grpc_port)
        big = raw.request(START, grpc_frame(b"", declared=101))
        await raw.until(lambda: raw.status(big)[0] is not None)
        status, message = raw.status(big)
        assert status == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        assert message is not None and "limit of 100 bytes" in message
        raw.close()
