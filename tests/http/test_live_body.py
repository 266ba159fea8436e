"""Event streams over HTTP written at once by the server (``agentplane.http.live_body``).

A caught-up watcher's events are written from the event log's delivery pass
as HTTP/1.1 chunks, byte for byte what uvicorn would have framed from the
ASGI ``send``; whatever cannot go at once (a client not reading) goes
through ``send``, and a body a middleware encodes never goes this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentplane.core import AgentLauncher, SessionContext
from agentplane.gateway.streaming import NDJSON_LINES
from agentplane.http.app import gateway_app
from agentplane.http.embedded import InProcessBackend
from agentplane.http.server import HttpServer
from agentplane.service import convert
from agentplane.service.api import SessionAPI
from agentplane.testing import wait_until
from tests.support import ServerAgents, open_options


@dataclass
class Served:
    launcher: AgentLauncher
    agents: ServerAgents
    port: int

    async def start_session(self, call_id: str) -> tuple[str, SessionContext]:
        record = await self.launcher.start_session(call_id=call_id)
        return record.session_id, await self.agents.context(record.session_id)


@contextlib.asynccontextmanager
async def serving(wrap: Any = None) -> AsyncIterator[Served]:
    agents = ServerAgents()
    launcher = agents.launcher()
    await launcher.start()
    app: ASGIApp = gateway_app(
        InProcessBackend(SessionAPI(launcher, open_options().auth_policy()), launcher)
    )
    server = HttpServer(wrap(app) if wrap else app, "127.0.0.1", 0)
    await server.start()
    assert server.port is not None
    try:
        yield Served(launcher, agents, server.port)
    finally:
        await server.stop(2)
        await launcher.shutdown()


class RawStream:
    """One streaming GET on its own socket; the raw bytes of the body as they arrive."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.head = b""

    @classmethod
    async def open(
        cls, port: int, path: str, headers: str = "", *, receive_buffer: int = 0, head: bool = True
    ) -> RawStream:
        """``receive_buffer``: a small one, fixed (no autotuning); ``head``: wait for it."""
        sock = socket.socket()
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**16)
        writer.write(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{headers}\r\n".encode())
        stream = cls(reader, writer)
        if head:
            await stream.read_head()
        return stream

    async def read_head(self) -> None:
        self.head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)

    async def chunk(self) -> bytes:
        """The next chunk of the body, with its framing."""
        size_line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), 5)
        size = int(size_line, 16)
        data = await asyncio.wait_for(self.reader.readexactly(size + 2), 5)
        return size_line + data

    def close(self) -> None:
        self.writer.close()


def framed(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


async def test_caught_up_watchers_get_chunks_byte_identical_to_asgi() -> None:
    async with serving() as served:
        sid, session = await served.start_session("live")
        log = served.launcher.events
        one = await RawStream.open(served.port, f"/sessions/{sid}/events")
        every = await RawStream.open(served.port, "/events")
        assert b"transfer-encoding: chunked" in one.head.lower()
        await wait_until(lambda: set(log._live) == {sid, None}, what="two live watchers")
        session.emit("hello", {"n": 1})
        event = log._sessions[sid].events[-1]
        # The line the stream's own rendering makes (NDJSON through send), framed as uvicorn does.
        expected = framed(NDJSON_LINES(convert.event_message(event, log.epoch)))
        assert await one.chunk() == expected
        assert await every.chunk() == expected
        assert json.loads(expected.split(b"\r\n")[1])["result"]["agent_event"]["name"] == "hello"
        # ...and they were written from the delivery pass: both stayed live.
        assert set(log._live) == {sid, None}
        for stream in (one, every):
            stream.close()
        await wait_until(lambda: log.parked == 0, what="both watchers gone")


async def test_sse_watchers_get_their_frames_live_too() -> None:
    async with serving() as served:
        sid, session = await served.start_session("sse")
        log = served.launcher.events
        stream = await RawStream.open(
            served.port, f"/sessions/{sid}/events", "accept: text/event-stream\r\n"
        )
        await wait_until(lambda: sid in log._live, what="a live watcher")
        session.emit("tick", {"n": 2})
        chunk = await stream.chunk()
        frame = chunk.split(b"\r\n", 1)[1][:-2].decode()
        event_id, data = frame.rstrip("\n").split("\n")
        assert event_id == f"id: {log.epoch}:{log.last_cursor}"
        assert json.loads(data.removeprefix("data: "))["agent_event"]["name"] == "tick"
        assert sid in log._live
        stream.close()


async def test_a_watcher_that_stops_reading_waits_alone_then_gets_everything() -> None:
    async with serving() as served:
        _, session = await served.start_session("slow")
        log = served.launcher.events
        slow = await RawStream.open(served.port, "/events", receive_buffer=4096)
        fast = await RawStream.open(served.port, "/events")
        await wait_until(lambda: len(log._live.get(None, ())) == 2, what="two live watchers")
        blob = "z" * 15_000
        count = 400  # about 6 MB: far more than the socket buffers take unread
        for n in range(count):
            session.emit("chunk", {"n": n, "blob": blob})
            if n % 10 == 9:
                await asyncio.sleep(0)
        for n in range(count):
            line = (await fast.chunk()).split(b"\r\n")[1]
            assert json.loads(line)["result"]["agent_event"]["data"]["n"] == n
        # The slow one's server stream waits for the socket, outside the delivery pass.
        await wait_until(lambda: len(log._live.get(None, ())) == 1, what="only the fast one live")
        for n in range(count):
            line = (await slow.chunk()).split(b"\r\n")[1]
            assert json.loads(line)["result"]["agent_event"]["data"]["n"] == n
        await wait_until(lambda: len(log._live.get(None, ())) == 2, what="both live again")
        for stream in (slow, fast):
            stream.close()


class StreamingGzip:
    """A middleware that sends the head at once and gzips each body chunk as it comes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        encoder = zlib.compressobj(wbits=31)

        async def encoding(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message["headers"], (b"content-encoding", b"gzip")]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                data = encoder.compress(message.get("body", b""))
                more = message.get("more_body", False)
                data += encoder.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)
                message = {**message, "body": data}
            await send(message)

        await self.app(scope, receive, encoding)


def buffered_gzip(app: ASGIApp) -> ASGIApp:
    return GZipMiddleware(app, minimum_size=0)


@pytest.mark.parametrize("middleware", [StreamingGzip, buffered_gzip])
async def test_a_body_a_middleware_encodes_is_never_written_live(middleware: Any) -> None:
    async with serving(middleware) as served:
        sid, session = await served.start_session("gzip")
        log = served.launcher.events
        stream = await RawStream.open(
            served.port, f"/sessions/{sid}/events", "accept-encoding: gzip\r\n", head=False
        )
        await wait_until(lambda: sid in log._live, what="a caught-up watcher")
        session.emit("one", {"n": 1})
        # GZipMiddleware holds the head back until the first body chunk.
        await stream.read_head()
        assert b"content-encoding: gzip" in stream.head.lower()
        session.emit("two", {"n": 2})
        await served.launcher.close_session(sid)
        body = b""
        while True:
            chunk = await stream.chunk()
            if chunk == b"0\r\n\r\n":
                break
            body += chunk.split(b"\r\n", 1)[1][:-2]
        lines = [json.loads(line)["result"] for line in gzip.decompress(body).splitlines()]
        assert [line["agent_event"]["name"] for line in lines if "agent_event" in line] == [
            "one",
            "two",
        ]
        assert "ended" in lines[-1]
        stream.close()
