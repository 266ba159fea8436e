"""StreamEvents over gRPC: resume by cursor, gaps, and no leftovers after a disconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import agentplane.clients.betterproto as bp
from agentplane.server import AgentLauncher
from tests.support import Served, ServerAgents, Servers, wait_until

from .conftest import Clients


def kind(event: bp.StreamEventsResponse) -> str:
    for name in ("started", "state_changed", "metrics_updated", "ended", "agent_event", "gap"):
        if getattr(event, name) is not None:
            return name
    raise AssertionError(f"event without a kind: {event}")


def label(event: bp.StreamEventsResponse) -> str:
    if event.agent_event is not None:
        return event.agent_event.name
    return kind(event)


async def take(
    stream: AsyncIterator[bp.StreamEventsResponse], n: int
) -> list[bp.StreamEventsResponse]:
    got = []
    while len(got) < n:
        got.append(await asyncio.wait_for(anext(stream), 5))
    return got


async def test_resume_a_session_stream_by_cursor(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    stub = served.stub
    started = await stub.start(bp.StartRequest(call_id="resume"), timeout=5)
    sid = started.session_id
    session = await toy.context(sid)
    session.emit("e1", {"n": 1})

    stream = stub.stream_events(bp.StreamEventsRequest(session_id=sid, after_cursor=0), timeout=10)
    first = await take(stream, 2)
    assert [label(e) for e in first] == ["started", "e1"]
    session.emit("e2", {"n": 2})
    second = await take(stream, 1)
    assert [label(e) for e in second] == ["e2"]
    assert second[0].agent_event is not None and second[0].agent_event.data is not None
    assert second[0].agent_event.data.to_dict() == {"n": 2}
    await stream.aclose()  # disconnect
    last_seen = second[-1].cursor

    # The agent keeps going while nobody watches.
    for n in (3, 4, 5):
        session.emit(f"e{n}", {"n": n})

    resumed = stub.stream_events(
        bp.StreamEventsRequest(session_id=sid, after_cursor=last_seen), timeout=10
    )
    missed = await take(resumed, 3)
    assert [label(e) for e in missed] == ["e3", "e4", "e5"]
    assert missed[0].cursor > last_seen
    # Nothing else was buffered: the next events are the ones of the close.
    await stub.close(bp.CloseRequest(session_id=sid), timeout=5)
    rest = [e async for e in resumed]
    assert [label(e) for e in rest] == ["state_changed", "state_changed", "ended"]
    cursors = [e.cursor for e in first + second + missed + rest]
    assert cursors == sorted(set(cursors))  # strictly increasing: no duplicates


async def test_resume_the_feed_of_all_sessions_by_cursor(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    stub = served.stub
    feed = stub.stream_events(bp.StreamEventsRequest(after_cursor=0), timeout=10)
    a = await stub.start(bp.StartRequest(call_id="a"), timeout=5)
    seen = await take(feed, 1)
    assert seen[0].started is not None and seen[0].session_id == a.session_id
    await feed.aclose()

    b = await stub.start(bp.StartRequest(call_id="b"), timeout=5)
    (await toy.context(a.session_id)).emit("from-a")
    resumed = stub.stream_events(bp.StreamEventsRequest(after_cursor=seen[-1].cursor), timeout=10)
    missed = await take(resumed, 2)
    assert [(e.session_id, label(e)) for e in missed] == [
        (b.session_id, "started"),
        (a.session_id, "from-a"),
    ]
    await resumed.aclose()


async def test_a_tiny_buffer_reports_a_gap(
    serve: Servers, clients: Clients, toy: ServerAgents
) -> None:
    served = await serve(toy.launcher(event_buffer_size=4))
    stub = served.stub
    started = await stub.start(bp.StartRequest(call_id="chatty"), timeout=5)
    session = await toy.context(started.session_id)
    for n in range(10):
        session.emit(f"e{n}")
    last = served.launcher.events.last_cursor

    feed = stub.stream_events(bp.StreamEventsRequest(after_cursor=0), timeout=10)
    got = await take(feed, 5)
    await feed.aclose()
    gap = got[0].gap
    assert gap is not None
    assert gap.after_cursor == 0
    assert gap.next_cursor == last - 3  # the oldest event the 4-slot ring still holds
    assert [label(e) for e in got[1:]] == ["e6", "e7", "e8", "e9"]
    assert [e.cursor for e in got[1:]] == list(range(last - 3, last + 1))


async def test_a_long_session_stream_reports_a_gap(
    serve: Servers, clients: Clients, toy: ServerAgents
) -> None:
    served = await serve(toy.launcher())
    stub = served.stub
    started = await stub.start(bp.StartRequest(call_id="long"), timeout=5)
    session = await toy.context(started.session_id)
    for n in range(300):  # more than one session's own buffer holds
        session.emit(f"e{n}")

    stream = stub.stream_events(
        bp.StreamEventsRequest(session_id=started.session_id, after_cursor=0), timeout=10
    )
    got = await take(stream, 2)
    await stream.aclose()
    assert got[0].gap is not None and got[0].gap.after_cursor == 0
    assert got[1].agent_event is not None
    assert got[0].gap.next_cursor == got[1].cursor  # resumes at the oldest event still held
    assert got[1].agent_event.name != "e0"


def _waiting_watchers(launcher: AgentLauncher) -> int:
    """Watchers parked in the event log, plain or live."""
    return launcher.events.parked


async def _nothing_left(served: Served, baseline: int) -> None:
    """Wait until the server's tasks are back to ``baseline`` and no watcher is parked."""
    await wait_until(
        lambda: len(asyncio.all_tasks()) <= baseline and _waiting_watchers(served.launcher) == 0,
        what=f"the server back to {baseline} tasks and no parked watcher",
    )


async def test_client_disconnect_leaves_nothing_behind(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    channel = served.channel
    stub = bp.SessionServiceStub(channel)
    started = await stub.start(bp.StartRequest(call_id="watched"), timeout=5)
    sid = started.session_id
    await toy.context(sid)
    baseline = len(asyncio.all_tasks())
    assert _waiting_watchers(served.launcher) == 0

    # Streams parked waiting for events, then dropped by the client.
    streams = [
        stub.stream_events(bp.StreamEventsRequest(session_id=sid, after_cursor=0), timeout=30),
        stub.stream_events(bp.StreamEventsRequest(session_id=sid), timeout=30),
        stub.stream_events(bp.StreamEventsRequest(after_cursor=0), timeout=30),
        stub.stream_events(bp.StreamEventsRequest(), timeout=30),
    ]
    readers = [asyncio.ensure_future(anext(s)) for s in streams]
    # The two live-only streams park (the others replay STARTED and return it).
    await wait_until(lambda: _waiting_watchers(served.launcher) >= 2)
    assert len(asyncio.all_tasks()) > baseline
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for stream in streams:
        await stream.aclose()
    await _nothing_left(served, baseline)

    # The same when the whole connection goes away mid-stream.
    other = clients.grpclib(served.grpc_port)
    dropped = bp.SessionServiceStub(other).stream_events(
        bp.StreamEventsRequest(session_id=sid, after_cursor=0), timeout=30
    )
    assert (await take(dropped, 1))[0].started is not None
    reader = asyncio.ensure_future(anext(dropped))
    await wait_until(lambda: _waiting_watchers(served.launcher) == 1)
    other.close()
    await asyncio.gather(reader, return_exceptions=True)
    await _nothing_left(served, baseline)

    # The session itself is untouched and still streams to a new watcher.
    session = toy.contexts[sid]
    fresh = stub.stream_events(bp.StreamEventsRequest(session_id=sid), timeout=10)
    reader = asyncio.ensure_future(anext(fresh))
    # A live-only stream: the event must come after it subscribed.
    await wait_until(lambda: _waiting_watchers(served.launcher) == 1)
    session.emit("still-here")
    assert label(await asyncio.wait_for(reader, 5)) == "still-here"
    await fresh.aclose()
