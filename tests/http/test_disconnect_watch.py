"""The HTTP port says when a client leaves: the ASGI extension ``DISCONNECT_WATCH``.

The gateway's ``until_disconnect`` registers a callback there instead of
running a task that reads ``receive`` (``tests/gateway/test_start_disconnect.py``
drives it through a Start); these tests hold the server to the extension's
contract on a real uvicorn with raw sockets: called once when the connection
is lost, soon when it was lost already, never once withdrawn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agentplane.gateway.routes import DISCONNECT_WATCH, DisconnectWatch
from agentplane.http.server import HttpServer
from tests.support import wait_until

Scope = dict[str, Any]


class WatchingApp:
    """Answers ``GET /answer`` at once (withdrawing its watch first); other requests
    watch for the client leaving and never answer (``/late`` watches only once
    ``receive`` has reported the departure, ``/late-withdrawn`` then withdraws at once)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.passed = asyncio.Event()
        self.called: list[str] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        watch: DisconnectWatch = scope["extensions"][DISCONNECT_WATCH]["watch"]
        path = scope["path"]

        def note() -> None:
            self.called.append(path)

        if path in ("/late", "/late-withdrawn"):
            self.entered.set()
            while (await receive())["type"] != "http.disconnect":
                pass
            unwatch = watch(note)
            if path == "/late-withdrawn":
                unwatch()
                for _ in range(3):  # the passes in which a scheduled callback would run
                    await asyncio.sleep(0)
                self.passed.set()
            await asyncio.Event().wait()
        unwatch: Callable[[], None] = watch(note)
        if path == "/answer":
            unwatch()
            headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        self.entered.set()
        await asyncio.Event().wait()


@pytest.fixture
async def app() -> AsyncIterator[tuple[WatchingApp, int]]:
    watching = WatchingApp()
    server = HttpServer(watching, "127.0.0.1", 0)
    await server.start()
    assert server.port is not None
    yield watching, server.port
    await server.stop(0.2)


async def _request(port: int, path: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path)
    await writer.drain()
    return reader, writer


async def _leave(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


async def test_a_client_leaving_calls_the_watch_back_once(app: tuple[WatchingApp, int]) -> None:
    watching, port = app
    _, writer = await _request(port, b"/wait")
    await asyncio.wait_for(watching.entered.wait(), 5)
    assert watching.called == []
    await _leave(writer)
    await wait_until(lambda: watching.called == ["/wait"], 5)


async def test_a_watch_begun_after_the_client_left_is_called_back_soon(
    app: tuple[WatchingApp, int],
) -> None:
    watching, port = app
    _, writer = await _request(port, b"/late")
    await asyncio.wait_for(watching.entered.wait(), 5)
    await _leave(writer)
    await wait_until(lambda: watching.called == ["/late"], 5)


async def test_a_watch_begun_after_the_client_left_and_withdrawn_is_never_called(
    app: tuple[WatchingApp, int],
) -> None:
    # The call ended before the server's callback ran: it must not cancel what follows.
    watching, port = app
    _, writer = await _request(port, b"/late-withdrawn")
    await asyncio.wait_for(watching.entered.wait(), 5)
    await _leave(writer)
    await asyncio.wait_for(watching.passed.wait(), 5)
    assert watching.called == []


async def test_a_withdrawn_watch_is_never_called(app: tuple[WatchingApp, int]) -> None:
    watching, port = app
    reader, writer = await _request(port, b"/answer")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(reader.readexactly(2), 5) == b"ok"
    # A second request on the connection shows the first one is over on the server.
    writer.write(b"GET /wait HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(watching.entered.wait(), 5)
    await _leave(writer)
    await wait_until(lambda: watching.called == ["/wait"], 5)
