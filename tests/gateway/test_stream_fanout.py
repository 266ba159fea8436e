"""Fan-out over HTTP: a shared message is rendered once for all its streams."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import httpx
import pytest
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from agentplane.gateway import streaming
from agentplane.gateway.codec import RenderMemo
from tests.support import wait_until

from .support import CountingWatches, Deployment

SSE = {"accept": "text/event-stream"}
WATCHERS = 6


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often the streams rendered a message, by message cursor."""
    counts: Counter[str] = Counter()
    render = streaming.render

    def counting(message: Message) -> Any:
        counts[str(getattr(message, "cursor", ""))] += 1
        return render(message)

    monkeypatch.setattr(streaming, "render", counting)
    return counts


async def body_of(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> bytes:
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        return await response.aread()


def sse_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in body.decode().split("\n\n"):
        if frame:
            head, data = frame.split("\n")
            assert head.startswith("id: ") and data.startswith("data: ")
            events.append((head[4:], json.loads(data[6:])))
    return events


async def test_watchers_get_byte_identical_streams_rendered_once(
    gw: Deployment, renders: Counter[str]
) -> None:
    watches = CountingWatches(gw.launcher)
    response = await gw.http.post("/sessions", json={"call_id": "fan"})
    sid = response.json()["session_id"]
    url = f"/sessions/{sid}/events?after_cursor=0"
    readers = [
        asyncio.create_task(body_of(gw.http, url, headers))
        for headers in [{}] * WATCHERS + [SSE] * WATCHERS
    ]
    # Every watcher is subscribed: the events of the close fan out live.
    await wait_until(lambda: watches.active == 2 * WATCHERS)
    assert (await gw.http.delete(f"/sessions/{sid}")).status_code == 200
    bodies = await asyncio.wait_for(asyncio.gather(*readers), 10)
    ndjson, sse = bodies[:WATCHERS], bodies[WATCHERS:]
    assert len(set(ndjson)) == 1 and len(set(sse)) == 1

    lines = [json.loads(line)["result"] for line in ndjson[0].splitlines()]
    assert "started" in lines[0] and "ended" in lines[-1]
    assert all(line["session_id"] == sid for line in lines)
    frames = sse_events(sse[0])
    assert [data for _, data in frames] == lines
    # Each id names the log and the cursor: "<epoch>:<cursor>".
    assert [event_id for event_id, _ in frames] == [
        f"{line['epoch']}:{line['cursor']}" for line in lines
    ]

    cursors = [line["cursor"] for line in lines]
    if gw.kind == "embedded":
        # One message per event, shared: rendered once per format.
        assert renders == dict.fromkeys(cursors, 2)
    else:
        # Proxied: every stream has its own copy of each message.
        assert renders == dict.fromkeys(cursors, 2 * WATCHERS)

    # A reconnecting EventSource resumes with exactly the rest of the stream.
    resume_id = frames[1][0]
    rest = await body_of(gw.http, url, {**SSE, "last-event-id": resume_id})
    assert sse[0].endswith(rest) and rest.startswith(f"id: {frames[2][0]}\n".encode())
    assert len(streaming.NDJSON_LINES) <= streaming.NDJSON_LINES.size


def test_render_memo_is_bounded_and_keyed_by_identity() -> None:
    rendered: list[str] = []

    def render(message: Message) -> bytes:
        assert isinstance(message, struct_pb2.Value)
        rendered.append(message.string_value)
        return message.string_value.encode()

    memo = RenderMemo(render, size=3)
    a = struct_pb2.Value(string_value="a")
    assert memo(a) == memo(a) == b"a"
    assert rendered == ["a"]
    # An equal message that is another object is rendered for itself.
    assert memo(struct_pb2.Value(string_value="a")) == b"a"
    assert rendered == ["a", "a"]
    assert len(memo) == 2

    # Entries hold their message, so its id is not reused while cached: each
    # of these temporaries is a distinct entry, and the oldest ones go first.
    for n in range(10):
        assert memo(struct_pb2.Value(string_value=str(n))) == str(n).encode()
    assert len(memo) == 3
    assert memo(a) == b"a" and rendered[-1] == "a"  # evicted, so rendered again
