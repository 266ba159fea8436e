"""Event fan-out: each published event becomes one protobuf message, whoever watches."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

import agentplane.clients.betterproto as bp
from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.core.events import EventLog
from agentplane.core.models import EventKind, SessionEvent
from agentplane.net import BadRequestLog
from agentplane.rpc.transport import DecodingCodec
from agentplane.service import convert
from agentplane.service.api import SessionAPI
from agentplane.service.auth import RequestContext
from tests.support import ServerAgents, Servers, open_options

from .conftest import Clients


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """How often each cursor was converted to a message (GAPs included)."""
    counts: Counter[int] = Counter()
    build = convert._build_event_message

    def counting(event: SessionEvent, epoch: str) -> api_pb.StreamEventsResponse:
        counts[event.cursor] += 1
        return build(event, epoch)

    monkeypatch.setattr(convert, "_build_event_message", counting)
    return counts


async def take(stream: AsyncIterator[Any], n: int) -> list[Any]:
    return [await asyncio.wait_for(anext(stream), 5) for _ in range(n)]


async def test_many_grpc_watchers_cost_one_conversion_per_event(
    toy: ServerAgents, serve: Servers, clients: Clients, conversions: Counter[int]
) -> None:
    served = await serve(toy.launcher())
    stub = served.stub
    started = await stub.start(bp.StartRequest(call_id="fan"), timeout=5)
    sid = started.session_id
    session = await toy.context(sid)
    first = served.launcher.events.last_cursor

    # Watchers of the session and of the feed of all sessions, from the start.
    streams = [
        stub.stream_events(bp.StreamEventsRequest(session_id=sid, after_cursor=0), timeout=10)
        for _ in range(10)
    ] + [stub.stream_events(bp.StreamEventsRequest(after_cursor=0), timeout=10) for _ in range(10)]
    for stream in streams:
        assert (await take(stream, 1))[0].started is not None
    for n in range(5):
        session.emit(f"e{n}", {"n": n})
    got = [await take(stream, 5) for stream in streams]
    for stream in streams:
        await stream.aclose()

    for events in got:
        assert [e.agent_event.name for e in events] == [f"e{n}" for n in range(5)]
        assert [e.agent_event.data.to_dict() for e in events] == [{"n": n} for n in range(5)]
    emitted = range(first + 1, served.launcher.events.last_cursor + 1)
    assert [e.cursor for e in got[0]] == list(emitted)
    # Twenty watchers, and yet every event was converted exactly once.
    assert {cursor: conversions[cursor] for cursor in emitted} == dict.fromkeys(emitted, 1)
    assert conversions[first] == 1  # the STARTED event the watchers replayed


async def test_in_process_watchers_get_the_same_message_object(toy: ServerAgents) -> None:
    launcher = toy.launcher()
    await launcher.start()
    try:
        api = SessionAPI(launcher, open_options().auth_policy())
        ctx = RequestContext(method="/agentplane.v1.SessionService/StreamEvents")
        record = await launcher.start_session(call_id="shared")
        request = api_pb.StreamEventsRequest(session_id=record.session_id, after_cursor=0)
        watchers = [await api.open_events(request, ctx) for _ in range(2)]
        feed = await api.open_events(api_pb.StreamEventsRequest(after_cursor=0), ctx)
        (await toy.context(record.session_id)).emit("hello", {"x": 1})
        a, b, c = [await take(w, 2) for w in (*watchers, feed)]
        assert [e.WhichOneof("event") for e in a] == ["started", "agent_event"]
        assert a[0] is b[0] and a[1] is b[1]
        assert c[0] is a[0] and c[1] is a[1]  # the feed of all shares them too
        for watcher in (*watchers, feed):
            await watcher.aclose()  # type: ignore[attr-defined]
    finally:
        await launcher.shutdown()


def published(log: EventLog, count: int) -> list[SessionEvent]:
    return [
        log.publish("s", "c", EventKind.AGENT, {"name": f"e{n}", "data": {}}) for n in range(count)
    ]


async def gap_of(log: EventLog, after: int) -> SessionEvent:
    watch = log.watch(None, after)
    try:
        event = await anext(watch)
    finally:
        await watch.aclose()  # type: ignore[attr-defined]
    assert event.kind is EventKind.GAP
    return event


async def test_gap_messages_are_made_per_watcher_and_never_shared() -> None:
    log = EventLog(buffer_size=4)
    events = published(log, 10)
    oldest = events[-4]
    held = convert.event_message(oldest, "e")
    gap_a, gap_b = await gap_of(log, 0), await gap_of(log, 3)
    # Both gaps carry the cursor before the oldest event held, a published one.
    assert gap_a.cursor == gap_b.cursor == events[-5].cursor
    message_a, message_b = convert.event_message(gap_a, "e"), convert.event_message(gap_b, "e")
    assert message_a is not message_b
    assert (message_a.gap.after_cursor, message_b.gap.after_cursor) == (0, 3)
    assert message_a.gap.next_cursor == message_b.gap.next_cursor == oldest.cursor
    # The published event of that cursor still gets its own message.
    before = convert.event_message(events[-5], "e")
    assert before.WhichOneof("event") == "agent_event" and before.agent_event.name == "e5"
    assert convert.event_message(oldest, "e") is held


def test_the_message_cache_is_bounded_and_checks_the_event() -> None:
    size = convert.EVENT_MESSAGE_CACHE
    log = EventLog(buffer_size=size * 2)
    events = published(log, size + 10)
    messages = [convert.event_message(event, "e") for event in events]
    assert len(convert._event_messages) == size
    # The newest `size` events are still shared ...
    assert all(
        convert.event_message(e, "e") is m for e, m in zip(events[10:], messages[10:], strict=True)
    )
    # ... the older ones were displaced: converted again, to an equal message.
    again = convert.event_message(events[0], "e")
    assert again is not messages[0] and again == messages[0]
    assert len(convert._event_messages) == size

    # Another log (another server in this process) issues the same cursors:
    # its events are never answered with this log's messages.
    other = EventLog()
    theirs = other.publish("t", "d", EventKind.AGENT, {"name": "theirs", "data": {}})
    mine = events[theirs.cursor - 1]
    assert mine.cursor == theirs.cursor
    assert convert.event_message(theirs, "e").agent_event.name == "theirs"
    assert convert.event_message(mine, "e").agent_event.name == mine.payload["name"]


async def test_each_shared_message_is_serialized_once_and_gaps_alone() -> None:
    log = EventLog(buffer_size=4)
    events = published(log, 10)
    shared = convert.event_message(events[-5], "e")
    wire = convert.event_wire(shared)
    assert wire == shared.SerializeToString()
    assert convert.event_wire(shared) is wire  # every watcher sends the same bytes
    # A GAP's message carries the same cursor, and its own bytes.
    gap = convert.event_message(await gap_of(log, 0), "e")
    assert gap.cursor == shared.cursor
    assert convert.event_wire(gap) == gap.SerializeToString() != wire
    assert convert.event_wire(shared) == wire
    # An equal message that is another object is serialized for itself.
    copy = api_pb.StreamEventsResponse()
    copy.CopyFrom(shared)
    assert convert.event_wire(copy) == wire


def test_the_grpc_codec_sends_bytes_as_they_are() -> None:
    codec = DecodingCodec(BadRequestLog(logging.getLogger("test"), 10.0))
    message = api_pb.StreamEventsResponse(cursor=7, epoch="e")
    wire = message.SerializeToString()
    assert codec.encode(wire, api_pb.StreamEventsResponse) is wire
    assert codec.encode(message, api_pb.StreamEventsResponse) == wire
    with pytest.raises(TypeError):  # any other object is still checked, as grpclib does
        codec.encode(api_pb.StreamEventsRequest(), api_pb.StreamEventsResponse)
    assert codec.decode(wire, api_pb.StreamEventsResponse) == message
