"""A minimal keep-alive HTTP/1.1 client, cheap enough not to be the bottleneck.

The load generator gets one core, like the server. General-purpose clients
(httpx, aiohttp) spend more CPU per request than the servers under test, so
the benchmark would measure them; this one writes a prebuilt request and
parses only the status line, the body's length and the body. The same client
drives both servers.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[ \t]*chunked", re.IGNORECASE)


class HttpError(Exception):
    """An answer with an unexpected status."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body


class HttpConnection(asyncio.Protocol):
    """One connection, one request at a time.

    Example::

        conn = await HttpConnection.open("127.0.0.1", 8000)
        status, body = await conn.request("GET", "/health")
        conn.close()
    """

    def __init__(self, host: str) -> None:
        self._host = host.encode()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._head_only = False

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: cls(host), host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is not None and not self._waiter.done():
            answer = self._parse()
            if answer is not None:
                self._waiter.set_result(answer)

    def _parse(self) -> tuple[int, bytes] | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buffer[: end + 2])
        status = int(head[9:12])
        start = end + 4
        if self._head_only or status in (204, 304) or status < 200:
            del buffer[:start]
            return status, b""
        match = _LENGTH.search(head)
        if match is not None:
            stop = start + int(match.group(1))
            if len(buffer) < stop:
                return None
            body = bytes(buffer[start:stop])
            del buffer[:stop]
            return status, body
        if _CHUNKED.search(head):
            return self._parse_chunked(status, start)
        raise ConnectionError("response without a length (connection-delimited bodies unsupported)")

    def _parse_chunked(self, status: int, position: int) -> tuple[int, bytes] | None:
        buffer = self._buffer
        parts: list[bytes] = []
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
            if size == 0:
                if buffer.find(b"\r\n", line_end + 2) != line_end + 2:
                    return None  # trailers are not expected; wait for the final CRLF
                del buffer[: line_end + 4]
                return status, b"".join(parts)
            chunk_start = line_end + 2
            if len(buffer) < chunk_start + size + 2:
                return None
            parts.append(bytes(buffer[chunk_start : chunk_start + size]))
            position = chunk_start + size + 2

    async def request(
        self, method: str, path: str, body: bytes = b"", expect: tuple[int, ...] = ()
    ) -> tuple[int, bytes]:
        """Send one request and answer (status, body).

        With ``expect``, any other status raises HttpError.
        """
        if self._transport is None:
            raise ConnectionError("not connected")
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: ".encode()
            + self._host
            + (
                f"\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
                if body or method in ("POST", "PUT", "PATCH")
                else "\r\n\r\n"
            ).encode()
        )
        self._head_only = method == "HEAD"
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(head + body)
        status, answer = await waiter
        self._waiter = None
        if expect and status not in expect:
            raise HttpError(status, answer)
        return status, answer

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class StreamWatcher(asyncio.Protocol):
    """One streaming GET (NDJSON over chunked encoding), timed on arrival.

    ``on_line(line, arrived)`` gets every complete JSON line with the
    ``time.time()`` of the read that completed it; chunk-size lines are
    skipped (each message is one ``{...}`` line).
    """

    def __init__(self, host: str, path: str, on_line: Callable[[bytes, float], None]) -> None:
        self._request = f"GET {path} HTTP/1.1\r\nhost: {host}\r\naccept: application/json\r\n\r\n"
        self._on_line = on_line
        self._pending = b""
        self._headers_done = False
        self.headers_seen: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._transport: asyncio.Transport | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, path: str, on_line: Callable[[bytes, float], None]
    ) -> StreamWatcher:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: cls(host, path, on_line), host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request.encode())

    def data_received(self, data: bytes) -> None:
        arrived = time.time()
        data = self._pending + data
        if not self._headers_done:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._pending = data
                return
            self._headers_done = True
            if not self.headers_seen.done():
                self.headers_seen.set_result(None)
            data = data[end + 4 :]
        lines = data.split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            if line.startswith(b"{"):
                self._on_line(line, arrived)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
