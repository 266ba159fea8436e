"""Access lines, request ids and session ids, against real servers in this process.

Every wait is for a record to arrive, bounded; nothing is decided by a sleep.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from agentplane.clients.grpcio import session_service_pb2 as pb
from agentplane.server import AgentLauncher
from agentplane.server.logs import JsonFormatter, TextFormatter, install_context
from agentplane.testing import serving, wait_until
from tests.support import GatewayAgents, deploy, open_options

SERVICE = "/agentplane.v1.SessionService"


class Records:
    """The records of the running test phase (``caplog.records`` changes with the phase)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def __iter__(self) -> Iterator[logging.LogRecord]:
        return iter(list(self._caplog.records))


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Records:
    install_context()
    caplog.set_level(logging.DEBUG)
    return Records(caplog)


async def wait_for(
    records: Records,
    match: Callable[[logging.LogRecord], bool],
    within: float = 10.0,
) -> logging.LogRecord:
    deadline = time.monotonic() + within
    while True:
        found = [record for record in records if match(record)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, [r.getMessage() for r in records]
        await asyncio.sleep(0.01)


def access(protocol: str, **fields: Any) -> Callable[[logging.LogRecord], bool]:
    def match(record: logging.LogRecord) -> bool:
        return (
            record.name == "agentplane.access"
            and getattr(record, "protocol", None) == protocol
            and all(getattr(record, k, None) == v for k, v in fields.items())
        )

    return match


def launcher() -> AgentLauncher:
    return GatewayAgents().launcher()


async def test_one_request_id_through_the_gateway_and_the_grpc_server(
    records: Records,
) -> None:
    """HTTP -> standalone gateway -> gRPC: both access lines carry the caller's id."""
    async with deploy("standalone", launcher(), open_options()) as app:
        answer = await app.http.get("/sessions/nope", headers={"X-Request-Id": "trace-42"})
        assert answer.status_code == 404
        assert answer.headers["x-request-id"] == "trace-42"
        http_line = await wait_for(records, access("http", request_id="trace-42"))
        grpc_line = await wait_for(records, access("grpc", request_id="trace-42"))
    assert http_line.route == "/sessions/{session_id}"  # type: ignore[attr-defined]
    assert http_line.path == "/sessions/nope"  # type: ignore[attr-defined]
    assert http_line.status == 404  # type: ignore[attr-defined]
    assert http_line.method == "GET"  # type: ignore[attr-defined]
    assert http_line.peer.startswith("127.0.0.1:")  # type: ignore[attr-defined]
    assert http_line.levelno == logging.INFO
    assert grpc_line.method == f"{SERVICE}/Get"  # type: ignore[attr-defined]
    assert grpc_line.status == "NOT_FOUND"  # type: ignore[attr-defined]
    assert grpc_line.duration_ms >= 0  # type: ignore[attr-defined]
    assert grpc_line.peer.startswith("127.0.0.1:")  # type: ignore[attr-defined]
    text = TextFormatter().format(http_line)
    assert "HTTP GET /sessions/{session_id} 404 " in text
    assert text.endswith("path=/sessions/nope [request=trace-42]")


@pytest.mark.parametrize("given", ["has spaces", "x" * 129, "caf\u00e9", ""])
async def test_an_invalid_request_id_is_replaced(records: Records, given: str) -> None:
    async with deploy("embedded", launcher(), open_options()) as app:
        headers = {"X-Request-Id": given.encode("utf-8")}
        answer = await app.http.get("/health", headers=headers)
        replaced = answer.headers["x-request-id"]
        assert replaced != given and len(replaced) == 32 and int(replaced, 16) >= 0
        line = await wait_for(records, access("http", route="/health"))
    assert line.request_id == replaced  # type: ignore[attr-defined]


async def test_a_request_without_an_id_gets_one(records: Records) -> None:
    async with deploy("embedded", launcher(), open_options()) as app:
        answer = await app.http.post("/sessions", json={"call_id": "c1"})
        assert answer.status_code == 201
        given = answer.headers["x-request-id"]
        line = await wait_for(records, access("http", route="/sessions"))
        # The launcher's own line inside the request names it too.
        started = await wait_for(records, lambda r: "started for call c1" in r.getMessage())
    assert line.request_id == given and line.status == 201  # type: ignore[attr-defined]
    assert started.request_id == given  # type: ignore[attr-defined]


async def test_grpc_returns_the_id_and_logs_the_call(records: Records) -> None:
    async with serving(launcher(), open_options(), http=False) as served:
        channel = Channel("127.0.0.1", served.grpc_port)
        try:
            # An error before any message: the id comes back in the trailers.
            async with channel.request(
                f"{SERVICE}/Get", Cardinality.UNARY_UNARY, pb.GetRequest, pb.GetResponse,
                metadata={"x-request-id": "grpc-1"},
            ) as stream:  # fmt: skip
                await stream.send_message(pb.GetRequest(session_id="nope"), end=True)
                with pytest.raises(GRPCError) as raised:
                    await stream.recv_message()
            assert raised.value.status is Status.NOT_FOUND
            assert stream.trailing_metadata is not None
            assert stream.trailing_metadata["x-request-id"] == "grpc-1"
            # A success: in the initial metadata; an invalid id is replaced.
            async with channel.request(
                f"{SERVICE}/Start", Cardinality.UNARY_UNARY, pb.StartRequest, pb.StartResponse,
                metadata={"x-request-id": "no spaces please"},
            ) as stream:  # fmt: skip
                await stream.send_message(pb.StartRequest(call_id="c1"), end=True)
                await stream.recv_message()
                assert stream.initial_metadata is not None
                given = stream.initial_metadata["x-request-id"]
            assert given != "no spaces please" and len(str(given)) == 32
        finally:
            channel.close()
        failed = await wait_for(records, access("grpc", request_id="grpc-1"))
        started = await wait_for(records, access("grpc", request_id=given))
    assert failed.status == "NOT_FOUND" and failed.method == f"{SERVICE}/Get"  # type: ignore[attr-defined]
    assert started.status == "OK"  # type: ignore[attr-defined]
    text = TextFormatter().format(started)
    assert f"gRPC {SERVICE}/Start OK " in text and " ms peer=127.0.0.1:" in text


async def test_a_cancelled_grpc_stream_logs_nothing_above_debug_but_its_access_line(
    records: Records,
) -> None:
    async with serving(launcher(), open_options(), http=False) as served:
        record = await served.launcher.start_session("c1", "default")
        channel = Channel("127.0.0.1", served.grpc_port)
        try:
            async with channel.request(
                f"{SERVICE}/StreamEvents", Cardinality.UNARY_STREAM,
                pb.StreamEventsRequest, pb.StreamEventsResponse,
                metadata={"x-request-id": "watch-1"},
            ) as stream:  # fmt: skip
                await stream.send_message(
                    pb.StreamEventsRequest(session_id=record.session_id), end=True
                )
                await stream.recv_initial_metadata()
                await stream.cancel()
            line = await wait_for(records, access("grpc", request_id="watch-1"))
        finally:
            channel.close()
    assert line.status == "CANCELLED"  # type: ignore[attr-defined]
    loud = [
        r
        for r in records
        if r.levelno > logging.DEBUG
        and r.name != "agentplane.access"
        and getattr(r, "request_id", None) == "watch-1"
    ]
    assert loud == []
    assert not [r for r in records if r.name.startswith("grpclib") and r.levelno > logging.DEBUG]


async def test_a_closed_sse_stream_logs_nothing_above_debug_but_its_access_line(
    records: Records,
) -> None:
    async with deploy("embedded", launcher(), open_options()) as app:
        started = await app.http.post("/sessions", json={"call_id": "c1"})
        sid = started.json()["session_id"]
        headers = {"Accept": "text/event-stream", "X-Request-Id": "sse-1"}
        async with app.http.stream("GET", f"/sessions/{sid}/events", headers=headers) as events:
            assert events.status_code == 200
            async for _ in events.aiter_bytes():
                break  # the first event arrived: the browser closes the page
        line = await wait_for(records, access("http", request_id="sse-1"))
    assert line.status == 200 and line.route == "/sessions/{session_id}/events"  # type: ignore[attr-defined]
    assert line.client_closed is True  # type: ignore[attr-defined]
    loud = [
        r
        for r in records
        if r.levelno > logging.DEBUG
        and r.name.startswith(("agentplane", "uvicorn", "grpclib", "starlette", "asyncio"))
        and r.name not in ("agentplane.access", "agentplane.launcher", "agentplane.runner")
    ]
    assert loud == [], [(r.name, r.getMessage()) for r in loud]


async def test_json_lines_carry_the_session_of_the_code_that_logged(
    records: Records,
) -> None:
    agent_log = logging.getLogger("tests.logs.agent")

    async def create_agent(**_: Any) -> object:
        agent_log.info("creating")
        return object()

    async def join_call(agent: object, call_type: str, call_id: str, **_: Any) -> None:
        agent_log.warning("joined %s", call_id)
        await asyncio.Event().wait()

    agents = AgentLauncher(create_agent=create_agent, join_call=join_call)
    async with (
        serving(agents, open_options(), http=True) as served,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.http_port}") as http,
    ):
        answer = await http.post(
            "/sessions", json={"call_id": "call-7"}, headers={"X-Request-Id": "start-7"}
        )
        sid = answer.json()["session_id"]
        joined = await wait_for(records, lambda r: r.getMessage() == "joined call-7")
    created = next(r for r in records if r.getMessage() == "creating")
    formatter = JsonFormatter()
    for record in (joined, created):
        line = json.loads(formatter.format(record))
        assert line["session_id"] == sid and line["call_id"] == "call-7"
        assert line["logger"] == "tests.logs.agent" and line["ts"].endswith("+00:00")
        assert line["request_id"] == "start-7"  # the Start that made the session
    assert (
        TextFormatter()
        .format(joined)
        .endswith(f"joined call-7 [request=start-7 session={sid} call=call-7]")
    )
    access_line = json.loads(formatter.format(await wait_for(records, access("http"))))
    assert {"ts", "level", "logger", "message", "request_id", "method", "route", "status",
            "duration_ms", "peer"} <= set(access_line)  # fmt: skip


def test_json_lines_write_exceptions_as_text() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR" and "ValueError: boom" in line["exc_info"]
    assert "session_id" not in line


async def test_root_points_at_the_demo_page_or_the_docs() -> None:
    async with (
        serving(launcher(), open_options(), http=True) as served,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.http_port}") as http,
    ):
        page = await http.get("/")
        assert page.status_code == 307 and page.headers["location"] == "/demo/"
        index = await http.get("/", headers={"Accept": "application/json"})
        assert index.status_code == 200
        links = index.json()["links"]
        assert links["demo"] == "/demo/" and links["docs"] == "/docs"
        assert {"metrics", "health", "ready", "openapi"} <= set(links)
    async with (
        serving(launcher(), open_options(demo_page=False), http=True) as served,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.http_port}") as http,
    ):
        page = await http.get("/")
        assert page.status_code == 307 and page.headers["location"] == "/docs"
        assert (
            "demo"
            not in (await http.get("/", headers={"Accept": "application/json"})).json()["links"]
        )


async def test_the_agents_close_logs_with_its_session(records: Records) -> None:
    agent_log = logging.getLogger("tests.logs.agent")

    class Agent:
        async def close(self) -> None:
            agent_log.info("closing")

    async def create_agent(**_: Any) -> Agent:
        return Agent()

    async def join_call(agent: Agent, call_type: str, call_id: str, **_: Any) -> None:
        await asyncio.Event().wait()

    agents = AgentLauncher(create_agent=create_agent, join_call=join_call)
    await agents.start()
    try:
        record = await agents.start_session("call-9", "default")
        await agents.close_session(record.session_id)
        closing = await wait_for(records, lambda r: r.getMessage() == "closing")
    finally:
        await agents.shutdown()
    assert closing.session_id == record.session_id  # type: ignore[attr-defined]
    assert closing.call_id == "call-9"  # type: ignore[attr-defined]


async def test_a_session_started_over_grpc_keeps_its_request_id_not_the_call(
    records: Records,
) -> None:
    """A session's task copies its Start's context and outlives the call: it keeps the
    request id (its lines name the Start) and no other agentplane value of the call
    (the access line's state was ~0.5 KiB per held session)."""
    kept: list[dict[str, Any]] = []

    async def join_call(agent: object, call_type: str, call_id: str, **_: Any) -> None:
        context = contextvars.copy_context()
        kept.append({var.name: value for var, value in context.items()})
        await asyncio.Event().wait()

    agents = AgentLauncher(create_agent=lambda **_: object(), join_call=join_call)
    async with serving(agents, open_options(), http=False) as served:
        channel = Channel("127.0.0.1", served.grpc_port)
        try:
            async with channel.request(
                f"{SERVICE}/Start", Cardinality.UNARY_UNARY, pb.StartRequest, pb.StartResponse,
                metadata={"x-request-id": "start-8"},
            ) as stream:  # fmt: skip
                await stream.send_message(pb.StartRequest(call_id="c8"), end=True)
                await stream.recv_message()
        finally:
            channel.close()
        await wait_for(records, access("grpc", request_id="start-8"))
        await wait_until(lambda: kept, 10)
    ours = {name: value for name, value in kept[0].items() if name.startswith("agentplane")}
    assert set(ours) == {"agentplane_request_id", "agentplane_session"}, ours
    assert ours["agentplane_request_id"] == "start-8"
