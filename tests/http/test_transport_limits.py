"""The HTTP port's transport limits, on a real uvicorn with raw sockets (issue 12).

Oversized heads are refused with 414/431 before more is buffered; a head that
never completes gets 408 after ``head_timeout``; past ``max_connections`` a new
connection gets 503; a Host the server does not answer to gets 421; accept()
failures are logged once per interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentplane.http.limits import HttpLimits
from agentplane.http.server import HttpServer
from agentplane.net import ACCEPT_FAILED, AcceptFailureLog


async def _ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})


APP = Starlette(routes=[Route("/", _ok), Route("/echo", _echo, methods=["POST"])])
LIMITS = HttpLimits(
    max_url_bytes=1024,
    max_head_bytes=4096,
    max_headers=20,
    head_timeout=0.5,
    body_timeout=0.5,
    max_connections=8,
)


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    http = HttpServer(APP, "127.0.0.1", 0, limits=LIMITS)
    await http.start()
    yield http
    await http.stop(1.0)


async def _connect(server: HttpServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert server.port is not None
    return await asyncio.open_connection("127.0.0.1", server.port)


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of the next answer."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await asyncio.wait_for(reader.readexactly(length), 5)
    return int(head.split(b" ", 2)[1]), body


async def _feed_until_answered(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pieces: list[bytes], pause: float
) -> tuple[int, bytes]:
    """Send ``pieces`` one by one until the server answers; that answer."""
    answer = asyncio.create_task(_answer(reader))
    for piece in pieces:
        if answer.done():
            break
        await _send_ignoring_reset(writer, piece)
        await asyncio.wait([answer], timeout=pause)
    return await answer


async def _send_ignoring_reset(writer: asyncio.StreamWriter, data: bytes) -> None:
    try:
        writer.write(data)
        await writer.drain()
    except ConnectionError:
        pass  # the server closed first: what the test is about


async def test_a_normal_request_passes(server: HttpServer) -> None:
    reader, writer = await _connect(server)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    status, body = await _answer(reader)
    assert (status, json.loads(body)) == (200, {"ok": True})


async def test_a_long_url_is_refused_with_414(server: HttpServer) -> None:
    reader, writer = await _connect(server)
    await _send_ignoring_reset(writer, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    status, body = await _answer(reader)
    assert status == 414
    assert json.loads(body)["message"] == "request URL exceeds 1024 bytes"


async def test_an_endless_url_is_refused_before_it_is_buffered(server: HttpServer) -> None:
    reader, writer = await _connect(server)
    pieces = [b"GET /"] + [b"a" * 256] * 4096  # up to 1 MiB, unless refused first
    status, _ = await _feed_until_answered(reader, writer, pieces, 0.05)
    assert status == 414


async def test_a_large_header_is_refused_with_431(server: HttpServer) -> None:
    reader, writer = await _connect(server)
    await _send_ignoring_reset(writer, b"GET / HTTP/1.1\r\nX-Big: " + b"v" * 5000 + b"\r\n\r\n")
    status, body = await _answer(reader)
    assert status == 431
    assert json.loads(body)["code"] == 3


async def test_an_endless_header_value_is_refused_before_it_is_buffered(
    server: HttpServer,
) -> None:
    # httptools buffers a header until its value ends: the bytes fed are counted too.
    reader, writer = await _connect(server)
    pieces = [b"GET / HTTP/1.1\r\nX-Big: "] + [b"v" * 1024] * 4096  # up to 4 MiB
    status, body = await _feed_until_answered(reader, writer, pieces, 0.02)
    assert status == 431
    assert json.loads(body)["message"] == "request head exceeds 4096 bytes"


async def test_a_body_is_not_counted_as_head(server: HttpServer) -> None:
    reader, writer = await _connect(server)
    body = b"x" * 100_000
    writer.write(
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    status, _ = await _answer(reader)
    assert status == 405  # the app's answer (GET only), not 431


async def test_many_small_headers_are_refused_with_431(server: HttpServer) -> None:
    reader, writer = await _connect(server)
    headers = b"".join(b"X-%d: 1\r\n" % i for i in range(50))
    await _send_ignoring_reset(writer, b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    status, body = await _answer(reader)
    assert status == 431
    assert json.loads(body)["message"] == "request has more than 20 headers"


async def test_a_slow_head_gets_408_and_is_closed(server: HttpServer) -> None:
    reader, writer = await _connect(server)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
    status, body = await _answer(reader)
    assert status == 408
    assert "no complete request head" in json.loads(body)["message"]


async def test_a_body_that_stops_arriving_gets_408(server: HttpServer) -> None:
    reader, writer = await _connect(server)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n")
    writer.write(b"x" * 10)  # and never the other 90 bytes
    status, body = await _answer(reader)
    assert status == 408
    assert json.loads(body)["message"] == "request body did not arrive whole within 0.5 s"


async def test_a_body_in_time_is_read_and_the_clock_stops(server: HttpServer) -> None:
    reader, writer = await _connect(server)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n")
    writer.write(b"x" * 100)
    status, body = await _answer(reader)
    assert (status, json.loads(body)) == (200, {"bytes": 100})
    # The clock stopped at the body's end: three body timeouts later no 408 has come
    # (keep-alive is 5 s), and the next request on the connection is answered.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 1.5)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    status, _ = await _answer(reader)
    assert status == 200


async def test_a_silent_connection_is_closed(server: HttpServer) -> None:
    reader, _ = await _connect(server)
    status, _ = await _answer(reader)
    assert status == 408


async def test_a_trickling_head_is_closed_despite_progress(server: HttpServer) -> None:
    reader, writer = await _connect(server)
    # A header line every 50 ms: progress, but never a complete head.
    pieces = [b"GET / HTTP/1.1\r\n"] + [b"X-%d: 1\r\n" % (i % 10) for i in range(200)]
    status, _ = await _feed_until_answered(reader, writer, pieces, 0.05)
    assert status == 408


async def test_the_next_request_on_a_kept_connection_has_its_own_head_deadline(
    server: HttpServer,
) -> None:
    reader, writer = await _connect(server)
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    await asyncio.wait_for(reader.readexactly(11), 5)  # {"ok":true}
    writer.write(b"GET / HTTP/1.1\r\n")  # the second head never completes
    status, _ = await _answer(reader)
    assert status == 408


async def test_requests_on_a_kept_connection_move_the_deadline_on(server: HttpServer) -> None:
    # One clock per connection re-arms only when it fires: requests paced over
    # three head timeouts each get their own deadline, not the connection's first.
    reader, writer = await _connect(server)
    loop = asyncio.get_running_loop()
    began = loop.time()
    while loop.time() - began < 3 * LIMITS.head_timeout:
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _ = await _answer(reader)
        assert status == 200
        # Pacing, not a wait for anything: the next request comes a while later.
        await asyncio.sleep(LIMITS.head_timeout / 5)
    # The clock still runs: a head begun now and never finished gets its 408,
    # no sooner than its own head timeout.
    writer.write(b"GET / HTTP/1.1\r\n")
    sent = loop.time()
    status, body = await _answer(reader)
    assert status == 408
    assert "no complete request head" in json.loads(body)["message"]
    assert loop.time() - sent >= LIMITS.head_timeout * 0.9


async def test_past_the_connection_cap_a_new_connection_gets_503(server: HttpServer) -> None:
    held = [await _connect(server) for _ in range(LIMITS.max_connections)]
    for _, writer in held:
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # kept alive, in the count
    for reader, _ in held:
        await asyncio.wait_for(reader.readuntil(b'{"ok":true}'), 5)
    reader, writer = await _connect(server)
    status, body = await _answer(reader)
    assert status == 503
    assert json.loads(body)["code"] == 14
    held[0][1].close()
    await held[0][1].wait_closed()
    for _ in range(100):  # a freed slot is usable again
        reader, writer = await _connect(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status, _ = await _answer(reader)
        if status == 200:
            break
        await asyncio.sleep(0.02)
    assert status == 200


async def test_a_loopback_server_refuses_other_hosts_with_421(server: HttpServer) -> None:
    for host, expected in (
        (b"evil.example", 421),
        (b"evil.example:8000", 421),
        (b"localhost:8000", 200),
        (b"[::1]:1", 200),
    ):
        reader, writer = await _connect(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
        status, body = await _answer(reader)
        assert status == expected, host
        if expected == 421:
            assert json.loads(body)["code"] == 3


async def test_configured_hosts_and_any() -> None:
    for allowed, host, expected in (
        (("agents.example",), b"agents.example", 200),
        (("agents.example",), b"localhost", 421),
        (("*",), b"anything", 200),
    ):
        http = HttpServer(APP, "127.0.0.1", 0, limits=LIMITS, allowed_hosts=allowed)
        await http.start()
        try:
            reader, writer = await _connect(http)
            writer.write(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
            status, _ = await _answer(reader)
            assert status == expected
        finally:
            await http.stop(1.0)


def test_a_non_loopback_bind_accepts_any_host_by_default() -> None:
    from agentplane.http.hosts import default_allowed_hosts

    assert default_allowed_hosts("0.0.0.0") is None
    assert default_allowed_hosts("::1") == ("localhost", "127.0.0.1", "[::1]")


async def test_accept_failures_are_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    loop.set_exception_handler(lambda _, context: seen.append(context["message"]))
    try:
        ours, theirs = socket.socket(), socket.socket()
        throttle = AcceptFailureLog(loop, [ours], "HTTP", logging.getLogger("agentplane.http"), 60)
        throttle.install()
        caplog.set_level(logging.ERROR, "agentplane.http")
        emfile = OSError(24, "Too many open files")
        for _ in range(1000):
            loop.call_exception_handler(
                {"message": ACCEPT_FAILED, "exception": emfile, "socket": ours}
            )
        loop.call_exception_handler({"message": ACCEPT_FAILED, "socket": theirs})
        loop.call_exception_handler({"message": "something else"})
        ours.close()
        theirs.close()
        throttle.remove()
    finally:
        loop.set_exception_handler(None)
    assert len([r for r in caplog.records if "accept() failed" in r.getMessage()]) == 1
    assert seen == [ACCEPT_FAILED, "something else"]  # another port's failure goes on


async def test_an_idle_kept_alive_connection_is_closed_after_keep_alive_timeout() -> None:
    http = HttpServer(APP, "127.0.0.1", 0, limits=HttpLimits(keep_alive_timeout=1, head_timeout=30))
    await http.start()
    try:
        reader, writer = await _connect(http)
        loop = asyncio.get_running_loop()
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _ = await _answer(reader)
        assert status == 200
        answered = loop.time()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed without a word
        assert loop.time() - answered < 5  # the keep-alive bound, not the 30 s head timeout
    finally:
        await http.stop(1.0)


async def test_a_connection_used_within_keep_alive_stays_open_past_it() -> None:
    # The keep-alive wait is on the connection's one clock: each request moves
    # it on, and the first quiet keep-alive timeout after the last closes it.
    http = HttpServer(APP, "127.0.0.1", 0, limits=HttpLimits(keep_alive_timeout=1, head_timeout=30))
    await http.start()
    try:
        reader, writer = await _connect(http)
        loop = asyncio.get_running_loop()
        began = answered = loop.time()
        while loop.time() - began < 3.0:  # three keep-alive timeouts on one connection
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, _ = await _answer(reader)
            assert status == 200
            answered = loop.time()
            await asyncio.sleep(0.3)  # pacing: quiet for less than the keep-alive timeout
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert 0.7 <= loop.time() - answered < 5
    finally:
        await http.stop(1.0)


async def test_malformed_requests_are_logged_once_per_interval(
    server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn warns once per malformed request; a flood of them is one line and a count."""
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        for _ in range(20):
            reader, writer = await _connect(server)
            await _send_ignoring_reset(writer, b"NOT HTTP AT ALL\r\n\r\n")
            status, _ = await _answer(reader)
            assert status == 400  # every one still gets its answer
            writer.close()
    lines = [r.getMessage() for r in caplog.records if "Invalid HTTP request" in r.getMessage()]
    assert lines == ["Invalid HTTP request received."], lines
