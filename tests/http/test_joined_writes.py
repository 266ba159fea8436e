"""A response's head and body leave in one send (agentplane.http.writes)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx

from agentplane.http.server import HttpServer
from agentplane.http.writes import JoinedWrites


class Sends:
    """A transport that records its writes (a socket cannot tell how many sends made its bytes)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


async def _pass() -> None:
    """Let the loop finish this pass (what was held is sent at its end)."""
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


async def test_a_head_and_its_body_are_one_send() -> None:
    sends = Sends()
    joined = JoinedWrites(sends, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.hold_next()
    joined.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    joined.write(b"{}")
    assert sends.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    await _pass()
    assert len(sends.writes) == 1  # nothing left to send


async def test_a_lone_write_goes_out_at_the_end_of_the_pass() -> None:
    # A stream's head: its first event may come much later; the head may not wait.
    sends = Sends()
    joined = JoinedWrites(sends, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.hold_next()
    joined.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    assert sends.writes == []
    await _pass()
    assert sends.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]


async def test_a_head_framing_its_body_waits_for_it_past_the_pass() -> None:
    # Content-Length: the body's write is sure to come (or the response's end).
    sends = Sends()
    joined = JoinedWrites(sends, asyncio.get_running_loop(), lambda: True)  # type: ignore[arg-type]
    joined.hold_next()
    joined.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    await _pass()
    assert sends.writes == []
    joined.write(b"{}")
    assert sends.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    # An empty body writes nothing: the response's end sends the head.
    joined.hold_next()
    joined.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    joined.flush()
    assert sends.writes[-1] == b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    await _pass()
    assert len(sends.writes) == 2


async def test_a_streams_later_writes_go_straight_out() -> None:
    # Events fanned out to many streams: each write is sent at once, none held.
    sends = Sends()
    joined = JoinedWrites(sends, asyncio.get_running_loop())  # type: ignore[arg-type]
    for event in (b"data: 1\n\n", b"data: 2\n\n"):
        joined.write(event)
        assert sends.writes[-1] == event
    assert len(sends.writes) == 2


async def test_bytes_keep_their_order_and_a_close_sends_what_is_held() -> None:
    sends = Sends()
    joined = JoinedWrites(sends, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.hold_next()
    for piece in (b"a", b"", b"b", b"c"):
        joined.write(piece)
    joined.close()
    assert b"".join(sends.writes) == b"abc"
    assert sends.closed
    await _pass()
    assert b"".join(sends.writes) == b"abc"  # the pending end-of-pass send found nothing


async def test_abort_drops_what_is_held_and_other_calls_pass_through() -> None:
    sends = Sends()
    joined = JoinedWrites(sends, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.hold_next()
    joined.write(b"lost")
    joined.abort()
    await _pass()
    assert sends.writes == [] and sends.aborted
    assert joined.is_closing()
    assert joined.get_extra_info("peername") == ("127.0.0.1", 1)


async def test_a_real_server_answers_whole_responses_on_a_kept_connection() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = scope["path"].encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            for n in range(20):
                got = await http.get(f"/r{n}")
                assert (got.status_code, got.text) == (200, f"/r{n}")
        # Raw: one request, the whole answer, and the connection stays usable.
        assert server.port is not None
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            for path in (b"/a", b"/bb"):
                raw.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path)
                data = b""
                while not data.endswith(path):
                    chunk = await asyncio.to_thread(raw.recv, 4096)
                    assert chunk, data
                    data += chunk
                assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        await server.stop(1.0)


async def test_a_real_server_sends_late_bodies_empty_bodies_and_stream_heads() -> None:
    """Over a kept connection: a Content-Length body sent a while after its head, an
    empty body, a HEAD, and a chunked stream whose head must arrive before its
    first chunk (an EventSource opens on the head)."""
    head_seen = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await asyncio.wait_for(head_seen.wait(), 5)
            await send({"type": "http.response.body", "body": b"event", "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b"" if path == "/empty" else b"late body"
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if path == "/late":
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": body})

    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:

        async def answer(method: bytes, path: bytes) -> bytes:
            writer.write(b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % (method, path))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
            if method == b"HEAD" or b"content-length: 0\r\n" in head:
                return b""
            return await asyncio.wait_for(reader.readexactly(len(b"late body")), 5)

        assert await answer(b"GET", b"/late") == b"late body"
        assert await answer(b"GET", b"/empty") == b""
        assert await answer(b"HEAD", b"/late") == b""
        assert await answer(b"GET", b"/late") == b"late body"  # the connection is still whole
        writer.write(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"transfer-encoding: chunked" in head
        head_seen.set()
        assert await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5) == (
            b"5\r\nevent\r\n0\r\n\r\n"
        )
    finally:
        writer.close()
        await server.stop(1.0)
