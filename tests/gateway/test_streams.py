"""Event streams over HTTP: NDJSON by default, SSE on request; resume; disconnect."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agentplane.gateway.streaming import SseFormat, stream_response
from tests.support import wait_until

from .support import CountingWatches, Deployment

SSE = {"accept": "text/event-stream"}


async def start(gw: Deployment, call_id: str = "c") -> str:
    response = await gw.http.post("/sessions", json={"call_id": call_id})
    assert response.status_code == 201
    sid: str = response.json()["session_id"]
    return sid


def kind_of(event: dict[str, Any]) -> str:
    cases = ("started", "state_changed", "metrics_updated", "ended", "agent_event", "gap")
    return next(case for case in cases if case in event)


async def test_ndjson_stream_runs_until_the_session_ends(gw: Deployment) -> None:
    sid = await start(gw)
    events: list[dict[str, Any]] = []
    async with gw.http.stream("GET", f"/sessions/{sid}/events", params={"after_cursor": 0}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        async for line in r.aiter_lines():
            events.append(json.loads(line)["result"])
            if len(events) == 1:
                assert (await gw.http.delete(f"/sessions/{sid}")).status_code == 200
    # The response ended by itself after the session's last event.
    assert kind_of(events[0]) == "started"
    assert kind_of(events[-1]) == "ended"
    assert events[-1]["ended"]["session"]["end_reason"] == "END_REASON_CLOSED_BY_REQUEST"
    cursors = [int(e["cursor"]) for e in events]
    assert cursors == sorted(set(cursors))
    assert all(e["session_id"] == sid for e in events)


async def read_sse(response: httpx.Response, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The first ``count`` (id, data) events of an SSE response."""
    events: list[tuple[str, dict[str, Any]]] = []
    event_id = ""
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            events.append((event_id, json.loads(line[6:])))
            if len(events) == count:
                break
    return events


async def test_sse_ids_are_cursors_and_last_event_id_resumes(gw: Deployment) -> None:
    sid = await start(gw)
    async with gw.http.stream(
        "GET", f"/sessions/{sid}/events", params={"after_cursor": 0}, headers=SSE
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        first = await read_sse(r, 1)
    ((last_id, data),) = first
    assert last_id == f"{data['epoch']}:{data['cursor']}" and "started" in data
    # Meanwhile the session changes; EventSource reconnects with Last-Event-ID.
    assert (await gw.http.delete(f"/sessions/{sid}")).status_code == 200
    async with gw.http.stream(
        "GET",
        f"/sessions/{sid}/events",
        params={"after_cursor": 0},  # the original URL: Last-Event-ID wins
        headers={**SSE, "last-event-id": last_id},
    ) as r:
        rest: list[tuple[str, dict[str, Any]]] = []
        async for event in _sse_until_end(r):
            rest.append(event)
    ids = [int(i.split(":")[1]) for i, _ in rest]
    assert ids and ids[0] > int(data["cursor"])  # no duplicate of what was seen
    assert ids == sorted(set(ids))
    assert "ended" in rest[-1][1]
    assert "gap" not in rest[0][1]


async def test_a_last_event_id_of_another_log_resumes_with_a_gap(gw: Deployment) -> None:
    """An EventSource id from a server that restarted (another epoch) never skips silently."""
    a = await start(gw, "a")
    b = await start(gw, "b")
    foreign = "0123456789abcdef:1"  # cursor 1 of a log this server never had
    async with gw.http.stream("GET", "/events", headers={**SSE, "last-event-id": foreign}) as r:
        events = await read_sse(r, 3)
    gap_id, gap = events[0]
    assert gap["gap"]["after_cursor"] == "1", gap
    epoch = gap["epoch"]
    assert epoch and epoch != "0123456789abcdef" and gap_id.startswith(f"{epoch}:")
    # Then the whole retained history, cursor 1 included, where a bare cursor would skip it.
    assert [data["cursor"] for _, data in events[1:]] == ["1", "2"]
    assert {data["session_id"] for _, data in events[1:]} == {a, b}


async def test_a_bare_cursor_last_event_id_still_resumes(gw: Deployment) -> None:
    """An id without an epoch (before ids carried one) resumes after that cursor."""
    await start(gw, "a")
    b = await start(gw, "b")
    async with gw.http.stream("GET", "/events", headers={**SSE, "last-event-id": "1"}) as r:
        ((_, data),) = await read_sse(r, 1)
    assert data["cursor"] == "2" and data["session_id"] == b


@pytest.mark.parametrize("bad", ["abc", "x:y", "e:-1", "e:"])
async def test_a_malformed_last_event_id_is_a_400_naming_it(gw: Deployment, bad: str) -> None:
    response = await gw.http.get("/events", headers={**SSE, "last-event-id": bad})
    assert response.status_code == 400, response.text
    assert "Last-Event-ID" in response.json()["message"]


async def _sse_until_end(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    event_id = ""
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            yield event_id, json.loads(line[6:])


async def test_a_client_that_disconnects_cancels_the_upstream_watch(gw: Deployment) -> None:
    watches = CountingWatches(gw.launcher)
    sid = await start(gw)
    for headers in ({}, SSE):
        client = httpx.AsyncClient(base_url=gw.url)
        async with client, client.stream("GET", f"/sessions/{sid}/events", headers=headers) as r:
            assert r.status_code == 200
            await wait_until(lambda: watches.active == 1)
        # The connection is gone: the server-side watch ends promptly.
        await wait_until(lambda: watches.active == 0, timeout=2)
    assert (await gw.launcher.get_session(sid)).state.name == "RUNNING"


async def test_stream_errors_before_the_first_event_are_plain_errors(gw: Deployment) -> None:
    response = await gw.http.get("/sessions/nope/events", headers=SSE)
    assert response.status_code == 404
    assert response.json()["code"] == 5


async def test_all_sessions_stream(gw: Deployment) -> None:
    a, b = await start(gw, "a"), await start(gw, "b")
    seen: set[str] = set()
    async with gw.http.stream("GET", "/events", params={"after_cursor": 0}) as r:
        async for line in r.aiter_lines():
            event = json.loads(line)["result"]
            if "started" in event:
                seen.add(event["session_id"])
            if seen == {a, b}:
                break


async def test_sse_heartbeat_and_error_event() -> None:
    """stream_response itself: heartbeats while idle, a failure as `event: error`."""
    from google.protobuf import struct_pb2
    from grpclib.const import Status

    from agentplane.gateway.errors import RpcError

    release = asyncio.Event()

    async def messages() -> AsyncIterator[Any]:
        await release.wait()
        yield struct_pb2.Value(string_value="x")
        raise RpcError(Status.UNAVAILABLE, "server went away")

    sent: list[dict[str, Any]] = []
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if b"keepalive" in message.get("body", b""):
            release.set()

    await asyncio.wait_for(
        stream_response(messages(), receive, send, fmt=SseFormat(), heartbeat=0.01), 5
    )
    bodies = b"".join(m.get("body", b"") for m in sent[1:])
    assert bodies.startswith(b": keepalive\n\n")
    assert b'data: "x"\n\n' in bodies
    assert b"event: error\ndata: " in bodies and b"server went away" in bodies
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
