"""Minimal gRPC server-stream watchers over raw HTTP/2, cheap enough not to be the bottleneck.

A fan-out's delivery p99 is the time the last watcher gets the event. With
1,000 watchers on one client core, grpclib and grpc.aio spend more CPU per
received message (about 100 and 60 µs) than the server spends sending it, so
their p99 measures the client. ``GrpcWatchers`` opens one HTTP/2 connection
with ``streams`` StreamEvents calls, grants the server all the flow-control
window it could use up front (so it never has to send a WINDOW_UPDATE), and
parses only frame headers and the gRPC messages of DATA frames; headers are
never decoded. It is what ``httpclient.StreamWatcher`` is to HTTP: the same
wire protocol as any gRPC client, timed when the bytes arrive.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable

import hpack

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME = struct.Struct(">HBBBL")  # 24-bit length, type, flags, stream id
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
_END_STREAM, _END_HEADERS, _ACK = 0x1, 0x4, 0x1
_INITIAL_WINDOW_SIZE = 0x4
_MAX_WINDOW = 2**31 - 1
_DEFAULT_WINDOW = 65_535


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    size = len(payload)
    return _FRAME.pack(size >> 8, size & 0xFF, kind, flags, stream_id) + payload


class GrpcWatchers(asyncio.Protocol):
    """``streams`` calls of one server-streaming RPC on one connection.

    ``on_message(stream_index, message_bytes, arrived)`` gets every gRPC
    message with the ``time.time()`` of the read that completed it.
    """

    def __init__(
        self,
        authority: str,
        path: str,
        request: bytes,
        streams: int,
        on_message: Callable[[int, bytes, float], None],
    ) -> None:
        self._authority = authority
        self._path = path
        self._request = struct.pack(">?I", False, len(request)) + request
        self._count = streams
        self._on_message = on_message
        self._buffer = b""
        self._messages: dict[int, bytes] = {}
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        # Done when every stream got its response headers (it is subscribed).
        self.subscribed: asyncio.Future[None] = loop.create_future()
        self._answered: set[int] = set()
        self.closed: asyncio.Future[None] = loop.create_future()

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        path: str,
        request: bytes,
        streams: int,
        on_message: Callable[[int, bytes, float], None],
    ) -> GrpcWatchers:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: cls(f"{host}:{port}", path, request, streams, on_message), host, port
        )
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        settings = struct.pack(">HL", _INITIAL_WINDOW_SIZE, _MAX_WINDOW)
        out = [
            _PREFACE,
            _frame(_SETTINGS, 0, 0, settings),
            _frame(_WINDOW_UPDATE, 0, 0, struct.pack(">L", _MAX_WINDOW - _DEFAULT_WINDOW)),
        ]
        encoder = hpack.Encoder()
        for index in range(self._count):
            stream_id = 2 * index + 1
            block = encoder.encode(
                [
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", self._path),
                    (":authority", self._authority),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                ]
            )
            out.append(_frame(_HEADERS, _END_HEADERS, stream_id, block))
            out.append(_frame(_DATA, _END_STREAM, stream_id, self._request))
        transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        arrived = time.time()
        buffer = self._buffer + data if self._buffer else data
        at = 0
        while len(buffer) - at >= 9:
            high, low, kind, flags, stream_id = _FRAME.unpack_from(buffer, at)
            size = (high << 8) | low
            end = at + 9 + size
            if end > len(buffer):
                break
            payload = buffer[at + 9 : end]
            at = end
            self._frame_received(kind, flags, stream_id & 0x7FFFFFFF, payload, arrived)
        self._buffer = buffer[at:]

    def _frame_received(
        self, kind: int, flags: int, stream_id: int, payload: bytes, arrived: float
    ) -> None:
        if kind == _DATA:
            pending = self._messages.get(stream_id, b"") + payload
            while len(pending) >= 5:
                (length,) = struct.unpack_from(">I", pending, 1)
                if len(pending) < 5 + length:
                    break
                self._on_message((stream_id - 1) // 2, pending[5 : 5 + length], arrived)
                pending = pending[5 + length :]
            self._messages[stream_id] = pending
        elif kind == _HEADERS:
            if stream_id not in self._answered:
                self._answered.add(stream_id)
                if len(self._answered) == self._count and not self.subscribed.done():
                    self.subscribed.set_result(None)
        elif kind == _SETTINGS and not flags & _ACK:
            assert self._transport is not None
            self._transport.write(_frame(_SETTINGS, _ACK, 0, b""))
        elif kind == _PING and not flags & _ACK:
            assert self._transport is not None
            self._transport.write(_frame(_PING, _ACK, 0, payload))
        elif kind == _GOAWAY and self._transport is not None:
            self._transport.close()
        # WINDOW_UPDATE, RST_STREAM, trailers: nothing to do for a watcher.

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("closed before every stream answered"))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
