"""Limits grpclib does not have, enforced where bytes arrive (issue 12).

grpclib 0.4.9 (pinned) buffers and decodes a whole gRPC message of any size
before the handler runs, keeps connections that never finish the HTTP/2
handshake, decodes header values as ASCII inside h2 (a non-ASCII value raises
out of ``data_received`` and drops the whole connection), and logs a
traceback for every undecodable message. This module closes those gaps in
the adapter, with one subclass at each of three grpclib seams:

- :class:`LimitedServer` (``grpclib.server.Server``): its protocol factory
  (``_protocol_factory``, private) builds :class:`_GuardedProtocol`, counts
  connections against a cap and installs the decoding codec (public
  ``codec=``); h2 is configured to hand over header bytes undecoded.
- :class:`_GuardedProtocol` (``grpclib.protocol.H2Protocol``): the handshake
  timer, the connection cap, SETTINGS_MAX_HEADER_LIST_SIZE.
- :class:`_ConnectionGate`: one timer per port that closes connections idle
  (no stream) for ``idle_timeout`` with GOAWAY, and refuses streams whose
  request has not fully arrived within ``request_timeout`` (a slow sender
  holds a stream, its buffer and a handler forever otherwise).
- :class:`_GuardedProcessor` (``grpclib.protocol.EventsProcessor``): reads
  each stream's 5-byte gRPC message prefixes as DATA arrives and refuses a
  stream whose declared message exceeds the limit (RESOURCE_EXHAUSTED), is
  compressed, or ends short (INVALID_ARGUMENT), before its body is buffered
  and before the handler (auth included) sees anything; decodes header bytes
  itself and refuses only the stream whose values are not ASCII.

Each connection's transport is wrapped so that consecutive writes to it go
out as one socket write (``coalesce.py``).

A refused stream gets a trailers-only response, then RST_STREAM(NO_ERROR) so
the client stops sending; its handler task is cancelled; the connection and
its other streams go on. ``tests/server/test_grpc_limits.py`` pins every
grpclib/h2 behaviour relied on here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any, cast

import h2.config
import h2.exceptions
from google.protobuf.message import DecodeError
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec, ProtoStatusDetailsCodec
from grpclib.exceptions import GRPCError
from grpclib.metadata import encode_grpc_message
from grpclib.protocol import AbstractHandler, Connection, EventsProcessor, H2Protocol
from grpclib.server import Server
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes

from agentplane.net import BadRequestLog, RateLimitedLog

from .coalesce import CoalescingTransport, WriteBatch

log = logging.getLogger("agentplane.rpc")

PREFIX_BYTES = 5  # gRPC message prefix: 1 byte compressed flag, 4 bytes length


def _default_max_connections() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft // 4))


@dataclass(frozen=True)
class GrpcLimits:
    """What one gRPC port accepts; ServeOptions sets them (``grpc_*`` fields)."""

    max_message_bytes: int = 4 * 2**20
    # grpclib holds a message whole until its last byte: bytes of messages
    # still arriving on one connection, over all its streams.
    max_connection_buffer_bytes: int = 16 * 2**20
    max_header_list_bytes: int = 16 * 1024
    handshake_timeout: float = 10.0
    # A connection with no stream open for this long is closed (GOAWAY
    # NO_ERROR; clients reconnect on their next call). Long watches keep
    # their connection: a stream is open.
    idle_timeout: float = 300.0
    # A request must arrive whole (its END_STREAM) within this long of its
    # headers: agentplane has no client-streaming RPC, so only a stalled or
    # deliberately slow sender takes longer. DEADLINE_EXCEEDED otherwise.
    request_timeout: float = 30.0
    # Default: a quarter of the process's descriptor limit (at most 4096):
    # the HTTP port takes up to half, agents and files need the rest, and
    # at the limit accept() fails for every port.
    max_connections: int = field(default_factory=lambda: _default_max_connections())
    # Repeated warnings of one kind (connection cap, accept errors) are
    # logged at most once per this many seconds, with a count.
    log_interval: float = 10.0

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        if self.max_connection_buffer_bytes < self.max_message_bytes:
            raise ValueError("max_connection_buffer_bytes must be at least max_message_bytes")
        if self.max_header_list_bytes < 1024:
            raise ValueError("max_header_list_bytes must be at least 1024")
        for name in ("handshake_timeout", "idle_timeout", "request_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be positive")


class DecodingCodec(ProtoCodec):
    """grpclib's protobuf codec; an undecodable message is INVALID_ARGUMENT, logged once.

    ``bytes`` given to send are taken as a message serialized already.

    grpclib raises the parser's error out of ``recv_message``: UNKNOWN and
    an ERROR traceback per request. Here it is a status that names the
    problem, and a WARNING line at most once per interval (``bad_log``).
    """

    def __init__(self, bad_log: BadRequestLog) -> None:
        self.bad_log = bad_log

    def encode(self, message: Any, message_type: Any) -> bytes:
        # A message already serialized (StreamEvents serializes each event
        # once for all its watchers) goes out as it is.
        if type(message) is bytes:
            return message
        data: bytes = super().encode(message, message_type)
        return data

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            return super().decode(data, message_type)
        except (DecodeError, RecursionError, ValueError) as error:
            name = getattr(message_type, "__name__", "message")
            self.bad_log.warning("refused a malformed %s (%d bytes): %s", name, len(data), error)
            raise GRPCError(
                Status.INVALID_ARGUMENT, f"malformed {name}: {error or 'cannot be parsed'}"
            ) from None


class _Framing:
    """Where one stream is in its gRPC message framing."""

    __slots__ = ("declared", "opened_at", "prefix", "remaining")

    def __init__(self, opened_at: float) -> None:
        self.opened_at = opened_at  # loop time of the stream's headers
        self.prefix = bytearray()
        self.remaining = 0  # body bytes of the current message still to come
        self.declared = 0  # its declared length, counted in the connection's budget

    @property
    def mid_message(self) -> bool:
        return bool(self.prefix) or self.remaining > 0


class _Refusal(Exception):
    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Budget:
    """Bytes of messages still arriving on one connection (grpclib buffers them whole)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def release(self, framing: _Framing) -> None:
        self.used -= framing.declared
        framing.declared = 0


def _scan(framing: _Framing, data: bytes, limit: int, budget: _Budget) -> None:
    """Advance ``framing`` over ``data``; raise _Refusal for a message not to be read."""
    view = memoryview(data)
    pos, end = 0, len(view)
    while pos < end:
        if framing.remaining:
            step = min(framing.remaining, end - pos)
            framing.remaining -= step
            pos += step
            if not framing.remaining:
                budget.release(framing)
            continue
        take = min(PREFIX_BYTES - len(framing.prefix), end - pos)
        framing.prefix += view[pos : pos + take]
        pos += take
        if len(framing.prefix) < PREFIX_BYTES:
            return
        flag, length = framing.prefix[0], int.from_bytes(framing.prefix[1:], "big")
        framing.prefix.clear()
        if flag != 0:
            raise _Refusal(
                Status.INVALID_ARGUMENT,
                "compressed gRPC messages are not supported: send them uncompressed",
            )
        if length > limit:
            raise _Refusal(
                Status.RESOURCE_EXHAUSTED,
                f"gRPC message of {length} bytes is larger than the limit of {limit} bytes",
            )
        if budget.used + length > budget.limit:
            raise _Refusal(
                Status.RESOURCE_EXHAUSTED,
                f"this connection already has {budget.used} bytes of messages arriving; "
                f"a message of {length} bytes would pass its limit of {budget.limit} bytes",
            )
        budget.used += length
        framing.remaining = framing.declared = length
        if not length:
            budget.release(framing)


def _text_headers(raw: Any) -> list[tuple[str, str]]:
    """h2's header bytes as grpclib's str pairs; UnicodeDecodeError for a non-ASCII one."""
    return [(name.decode("ascii"), value.decode("ascii")) for name, value in raw]


class _GuardedProcessor(EventsProcessor):
    """grpclib's event processor, checking framing and headers per stream."""

    def __init__(
        self,
        handler: AbstractHandler,
        connection: Connection,
        h2_conn: H2Connection,
        limits: GrpcLimits,
        on_settings: Callable[[], None],
        bad_log: BadRequestLog,
    ) -> None:
        super().__init__(handler, connection)
        self._h2 = h2_conn
        self._bad_log = bad_log
        self._limit = limits.max_message_bytes
        self._on_settings = on_settings
        self._framing: dict[int, _Framing] = {}
        self._budget = _Budget(limits.max_connection_buffer_bytes)
        self._refused: set[int] = set()
        # Loop time the connection was last seen with a stream open.
        self.busy_at = asyncio.get_running_loop().time()
        self.processors[RequestReceived] = self.process_request_received
        self.processors[DataReceived] = self.process_data_received
        self.processors[StreamEnded] = self.process_stream_ended
        self.processors[StreamReset] = self.process_stream_reset
        self.processors[TrailersReceived] = self.process_trailers_received
        self.processors[RemoteSettingsChanged] = self.process_remote_settings_changed

    def process_remote_settings_changed(self, event: RemoteSettingsChanged) -> None:
        self._on_settings()
        super().process_remote_settings_changed(event)

    def process_request_received(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        try:
            event.headers = _text_headers(event.headers)  # type: ignore[assignment]
        except UnicodeDecodeError:
            self._bad_log.warning("refused a gRPC call whose headers are not ASCII")
            self._refuse(stream_id, Status.INVALID_ARGUMENT, "header values must be ASCII")
            return
        self._framing[stream_id] = _Framing(asyncio.get_running_loop().time())
        self.busy_at = self._framing[stream_id].opened_at
        super().process_request_received(event)

    def process_trailers_received(self, event: TrailersReceived) -> None:
        # A server reads no request trailers; keep them printable for grpclib.
        raw: Any = event.headers or ()
        text: Any = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]
        event.headers = text
        self._check_complete(event.stream_id)
        super().process_trailers_received(event)

    def process_data_received(self, event: DataReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        if stream_id in self._refused:
            self.connection.ack(stream_id, event.flow_controlled_length or 0)
            return
        framing = self._framing.get(stream_id)
        if framing is not None and event.data:
            try:
                _scan(framing, event.data, self._limit, self._budget)
            except _Refusal as refusal:
                self._bad_log.warning("refused a gRPC call: %s", refusal.message)
                self.connection.ack(stream_id, event.flow_controlled_length or 0)
                self._refuse(stream_id, refusal.status, refusal.message)
                return
        super().process_data_received(event)

    def process_stream_ended(self, event: StreamEnded) -> None:
        if event.stream_id in self._refused:
            return
        if not self._check_complete(event.stream_id):
            return
        super().process_stream_ended(event)

    def process_stream_reset(self, event: StreamReset) -> None:
        self._forget(event.stream_id)
        if event.stream_id in self._refused:
            return
        # grpclib cancels the handler; one reset before its first step would
        # never release the stream (the same gap as in _refuse).
        stream = self.streams.get(event.stream_id or 0)
        task = getattr(self.handler, "_tasks", {}).get(stream) if stream is not None else None
        super().process_stream_reset(event)
        if task is not None and event.stream_id is not None:
            stream_id = event.stream_id
            task.add_done_callback(lambda _task: self._release(stream_id))

    def expire_requests(self, now: float, timeout: float) -> None:
        """Refuse the streams whose request has been arriving for longer than ``timeout``."""
        late = [sid for sid, framing in self._framing.items() if now - framing.opened_at > timeout]
        for stream_id in late:
            message = f"the request did not arrive whole within {timeout:g} s"
            log.debug("refused a gRPC call on stream %d: %s", stream_id, message)
            self._refuse(stream_id, Status.DEADLINE_EXCEEDED, message)

    def _release(self, stream_id: int) -> None:
        """What grpclib's release_stream does, for a refused stream it did not release."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None and not self.connection.is_closing():
            self.connection.ack(stream_id, stream.buffer.unacked_size())

    def _forget(self, stream_id: int | None) -> _Framing | None:
        framing = self._framing.pop(stream_id or 0, None)
        if framing is not None:
            self._budget.release(framing)
        return framing

    def _check_complete(self, stream_id: int | None) -> bool:
        framing = self._forget(stream_id)
        if framing is None or not framing.mid_message:
            return True
        assert stream_id is not None
        missing = framing.remaining or PREFIX_BYTES - len(framing.prefix)
        message = f"the request ended inside a gRPC message, {missing} bytes short"
        self._bad_log.warning("refused a gRPC call: %s", message)
        self._refuse(stream_id, Status.INVALID_ARGUMENT, message)
        return False

    def _refuse(self, stream_id: int, status: Status, message: str) -> None:
        """Answer ``status`` on this stream alone, stop its handler, drop what follows."""
        self._refused.add(stream_id)
        self._forget(stream_id)
        stream = self.streams.get(stream_id)
        if stream is not None:
            # The handler task stops here. One that already ran releases the
            # stream in its finally (grpclib's release_stream); one cancelled
            # before its first step never runs it, so the done callback does.
            task = getattr(self.handler, "_tasks", {}).get(stream)  # grpclib.server.Handler
            with contextlib.suppress(KeyError):  # grpclib forgot a finished task
                self.handler.cancel(stream)
            if task is not None:
                task.add_done_callback(lambda _task: self._release(stream_id))
        headers = [
            (":status", "200"),
            ("content-type", "application/grpc+proto"),
            ("grpc-status", str(status.value)),
            ("grpc-message", encode_grpc_message(message)),
        ]
        # Trailers-only (or trailers, if the handler had answered headers),
        # then RST_STREAM(NO_ERROR): the client stops sending this body.
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.send_headers(stream_id, headers, end_stream=True)
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        self.connection.flush()
        if len(self._refused) > 1024:  # forget streams h2 has forgotten
            self._refused = {s for s in self._refused if s in self._h2.streams}


class _ConnectionGate:
    """A port's open HTTP/2 connections: the cap, and one timer for their time limits.

    The timer runs while any connection is open, every fifth of the shorter
    of ``idle_timeout`` and ``request_timeout``, so each is enforced at most
    a fifth late. One timer per port, not per connection or stream.
    """

    def __init__(self, limits: GrpcLimits) -> None:
        self.limits = limits
        self.connections: set[_GuardedProtocol] = set()
        self.refused = 0
        self.idle_closed = 0
        self.cap_log = RateLimitedLog(log, limits.log_interval)
        self.bad_log = BadRequestLog(log, limits.log_interval)
        self._period = min(limits.idle_timeout, limits.request_timeout) / 5
        self._timer: asyncio.TimerHandle | None = None
        # Consecutive writes to one connection go out as one (coalesce.py).
        self.writes = WriteBatch()

    @property
    def open(self) -> int:
        return len(self.connections)

    def admit(self, protocol: _GuardedProtocol) -> None:
        self.connections.add(protocol)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._period, self._tick)

    def leave(self, protocol: _GuardedProtocol) -> None:
        self.connections.discard(protocol)
        if not self.connections and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        limits = self.limits
        for protocol in list(self.connections):
            processor = protocol.processor
            if not isinstance(processor, _GuardedProcessor):
                continue
            if processor.streams:
                processor.busy_at = now
                processor.expire_requests(now, limits.request_timeout)
            elif now - processor.busy_at >= limits.idle_timeout:
                self.idle_closed += 1
                protocol.close_idle()
        if self.connections:
            self._timer = asyncio.get_running_loop().call_later(self._period, self._tick)


class _GuardedProtocol(H2Protocol):
    """grpclib's HTTP/2 protocol with a handshake timer, the cap and header limits."""

    _admitted = False
    _handshake_timer: asyncio.TimerHandle | None = None

    def __init__(
        self,
        handler: AbstractHandler,
        config: Any,
        h2_config: h2.config.H2Configuration,
        gate: _ConnectionGate,
    ) -> None:
        super().__init__(handler, config, h2_config)
        self._gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        gate = self._gate
        limits = gate.limits
        if gate.open >= limits.max_connections:
            gate.refused += 1
            gate.cap_log.warning(
                "gRPC connection cap reached (%d open): refusing new connections",
                limits.max_connections,
            )
            refusal = H2Connection(config=self.h2_config)
            refusal.initiate_connection()
            refusal.close_connection(
                ErrorCodes.ENHANCE_YOUR_CALM, additional_data=b"connection limit reached"
            )
            transport = cast(asyncio.Transport, transport)
            transport.write(refusal.data_to_send())
            transport.close()
            self.handler.close()
            return
        self._admitted = True
        # Consecutive writes to this connection go out as one (coalesce.py);
        # the wrapper passes the rest of the transport's interface through.
        coalescing = CoalescingTransport(cast(asyncio.Transport, transport), gate.writes)
        super().connection_made(cast(asyncio.Transport, coalescing))
        h2_conn: H2Connection = self.connection._connection
        h2_conn.update_settings({SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_bytes})
        # Enforce at once, not only once the client acknowledges the setting.
        h2_conn.decoder.max_header_list_size = limits.max_header_list_bytes
        self.connection.flush()
        self.processor = _GuardedProcessor(
            self.handler, self.connection, h2_conn, limits, self._handshaken, gate.bad_log
        )
        self._handshake_timer = asyncio.get_running_loop().call_later(
            limits.handshake_timeout, self._handshake_expired
        )
        gate.admit(self)

    def close_idle(self) -> None:
        """GOAWAY (NO_ERROR) and close: no stream is open, so no call is lost."""
        log.debug("closed a gRPC connection idle for %g s", self._gate.limits.idle_timeout)
        h2_conn: H2Connection = self.connection._connection
        with contextlib.suppress(h2.exceptions.ProtocolError):
            h2_conn.close_connection(ErrorCodes.NO_ERROR, additional_data=b"idle")
        self.connection.flush()
        self.processor.close("idle timeout")

    def _handshaken(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        log.debug("closed a gRPC connection that sent no HTTP/2 settings in time")
        self.processor.close("HTTP/2 handshake timeout")

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        try:
            super().data_received(data)
        except Exception as error:  # one line, not asyncio's fatal-error traceback
            self._gate.bad_log.warning(
                "closed a gRPC connection after an unexpected frame: %r", error
            )
            self.processor.close("Protocol error")

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._gate.leave(self)
        self._handshaken()
        super().connection_lost(exc)


class LimitedServer(Server):
    """grpclib's Server with :class:`GrpcLimits` on every connection."""

    def __init__(self, handlers: Any, limits: GrpcLimits) -> None:
        gate = _ConnectionGate(limits)
        super().__init__(
            handlers,
            codec=DecodingCodec(gate.bad_log),
            status_details_codec=ProtoStatusDetailsCodec(),
        )
        self.limits = limits
        self.gate = gate
        # Header bytes come through undecoded: _GuardedProcessor decodes
        # them per stream (h2's ASCII decoding fails the whole connection).
        self._h2_config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_inbound_headers=False,
            normalize_outbound_headers=False,
        )

    async def start(  # type: ignore[override]  # the subset of grpclib's start we use
        self, host: str, port: int, *, ssl: SSLContext | None = None
    ) -> None:
        """Listen; over TLS, a handshake not done within ``handshake_timeout`` is dropped.

        grpclib's own start leaves the TLS handshake to asyncio's default
        bound (60 s), during which the connection is not yet ours to count or
        time: a peer that opens connections and never finishes a handshake
        would hold them a minute each.
        """
        if ssl is None:
            await super().start(host, port)
            return
        if self._server is not None:
            raise RuntimeError("Server is already started")
        self._server = await self._loop.create_server(
            self._protocol_factory,
            host,
            port,
            ssl=ssl,
            ssl_handshake_timeout=self.limits.handshake_timeout,
        )
        self._server_closed_fut = self._loop.create_future()

    def _protocol_factory(self) -> H2Protocol:
        protocol = super()._protocol_factory()
        return _GuardedProtocol(protocol.handler, self._config, self._h2_config, self.gate)
