"""gRPC watchers that follow the event log live (``rpc/live.py``).

A caught-up StreamEvents handler's events are written from the log's delivery
pass; whatever HTTP/2 cannot take at once (a message larger than a frame, a
window too small) goes through the handler's own ``send_message``. Either way
the watcher gets every event once, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from grpclib.config import Configuration
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived
from h2.exceptions import FlowControlError, FrameTooLargeError, ProtocolError

import agentplane.clients.betterproto as bp
from agentplane.rpc.live import data_frame
from agentplane.testing import wait_until
from tests.support import ServerAgents, Servers

from .conftest import Clients


async def take(stream: AsyncIterator[Any], n: int) -> list[Any]:
    return [await asyncio.wait_for(anext(stream), 5) for _ in range(n)]


async def test_caught_up_watchers_get_their_events_live(toy: ServerAgents, serve: Servers) -> None:
    served = await serve(toy.launcher())
    stub = served.stub
    sid = (await stub.start(bp.StartRequest(call_id="live"), timeout=5)).session_id
    session = await toy.context(sid)
    one = stub.stream_events(bp.StreamEventsRequest(session_id=sid), timeout=10)
    every = stub.stream_events(bp.StreamEventsRequest(), timeout=10)
    readers = [asyncio.ensure_future(take(stream, 3)) for stream in (one, every)]
    log = served.launcher.events
    # Both parked as live watchers: nothing of theirs waits on a wake-up.
    await wait_until(lambda: set(log._live) == {sid, None}, what="two live watchers")
    assert log._wakeups == {}
    for n in range(3):
        session.emit(f"e{n}", {"n": n})
    # The feed of all sessions judges a session's permission once, by itself.
    for events in await asyncio.gather(*readers):
        assert [e.agent_event.name for e in events] == ["e0", "e1", "e2"]
        assert [e.agent_event.data.to_dict() for e in events] == [{"n": n} for n in range(3)]
        assert [e.cursor for e in events] == list(range(events[0].cursor, events[0].cursor + 3))
    await wait_until(lambda: log.parked == 2, what="both watchers live again")
    for stream in (one, every):
        await stream.aclose()
    await wait_until(lambda: log.parked == 0 and log._live == {}, what="no watcher left")


async def test_a_message_larger_than_a_frame_goes_through_the_handler(
    toy: ServerAgents, serve: Servers
) -> None:
    served = await serve(toy.launcher())
    stub = served.stub
    sid = (await stub.start(bp.StartRequest(call_id="big"), timeout=5)).session_id
    session = await toy.context(sid)
    stream = stub.stream_events(bp.StreamEventsRequest(session_id=sid), timeout=10)
    reader = asyncio.ensure_future(take(stream, 3))
    await wait_until(lambda: sid in served.launcher.events._live, what="a live watcher")
    blob = "x" * 16_000  # with its envelope, more than HTTP/2's 16 KiB frame
    session.emit("small", {"n": 1})
    session.emit("big", {"blob": blob})
    session.emit("after", {"n": 2})
    events = await reader
    assert [e.agent_event.name for e in events] == ["small", "big", "after"]
    assert events[1].agent_event.data.to_dict() == {"blob": blob}
    await stream.aclose()


async def test_a_watcher_that_stops_reading_waits_alone_then_gets_everything(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    sid = (await served.stub.start(bp.StartRequest(call_id="slow"), timeout=5)).session_id
    session = await toy.context(sid)
    # The smallest windows HTTP/2 allows: a few events fill them.
    small = Configuration(http2_connection_window_size=65_535, http2_stream_window_size=65_535)
    slow = bp.SessionServiceStub(clients.grpclib(served.grpc_port, small)).stream_events(
        bp.StreamEventsRequest(session_id=sid), timeout=30
    )
    fast = served.stub.stream_events(bp.StreamEventsRequest(session_id=sid), timeout=30)
    first = asyncio.ensure_future(anext(slow))  # then it reads nothing for a while
    fast_reader = asyncio.ensure_future(take(fast, 20))
    log = served.launcher.events
    await wait_until(lambda: len(log._live.get(sid, ())) == 2, what="two live watchers")
    blob = "y" * 10_000
    for n in range(20):
        session.emit("chunk", {"n": n, "blob": blob})
    # The reading watcher gets everything while the other's windows are full.
    assert [e.agent_event.data.to_dict()["n"] for e in await fast_reader] == list(range(20))
    assert (await asyncio.wait_for(first, 5)).agent_event.data.to_dict()["n"] == 0
    # The slow one's handler waits for its window, not in the delivery pass.
    await wait_until(lambda: len(log._live.get(sid, ())) == 1, what="only the fast one live")
    rest = await take(slow, 19)
    assert [e.agent_event.data.to_dict()["n"] for e in rest] == list(range(1, 20))
    await wait_until(lambda: len(log._live.get(sid, ())) == 2, what="both live again")
    for stream in (slow, fast):
        await stream.aclose()


# ------------------------------------------- data_frame against h2's send_data


def connected(end_request: bool) -> tuple[H2Connection, H2Connection, int]:
    """An h2 client and server in memory, with one request stream the server answered."""
    client = H2Connection(H2Configuration(client_side=True))
    server = H2Connection(H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    stream_id = client.get_next_available_stream_id()
    headers = [(":method", "POST"), (":path", "/s/M"), (":scheme", "http"), (":authority", "a")]
    client.send_headers(stream_id, headers, end_stream=end_request)
    server.receive_data(client.data_to_send())
    server.send_headers(stream_id, [(":status", "200")])
    client.receive_data(server.data_to_send())
    return client, server, stream_id


def windows(connection: H2Connection, stream_id: int) -> tuple[int, int]:
    return (
        connection.outbound_flow_control_window,
        connection.streams[stream_id].outbound_flow_control_window,
    )


@pytest.mark.parametrize("end_request", [True, False], ids=["half-closed", "open"])
def test_data_frame_is_what_h2_sends_and_accounts(end_request: bool) -> None:
    _, by_h2, stream_id = connected(end_request)
    client, ours, _ = connected(end_request)
    for payload in (b"\x00\x00\x00\x00\x03abc", b"x" * 16_384, b""):
        by_h2.send_data(stream_id, payload)
        expected = by_h2.data_to_send()
        assert data_frame(ours, stream_id, payload) == expected
        assert windows(ours, stream_id) == windows(by_h2, stream_id)
        assert ours.data_to_send() == b""  # nothing of it left in h2's buffer
        (received,) = client.receive_data(expected)
        assert isinstance(received, DataReceived)
        assert (received.stream_id, received.data) == (stream_id, payload)


def test_data_frame_declines_where_h2_would_raise() -> None:
    _, server, stream_id = connected(True)
    too_big = b"x" * (server.max_outbound_frame_size + 1)
    with pytest.raises(FrameTooLargeError):
        server.send_data(stream_id, too_big)
    assert data_frame(server, stream_id, too_big) is None
    # Fill the stream's window, then one byte more is refused.
    window = server.local_flow_control_window(stream_id)
    while window:
        chunk = min(window, server.max_outbound_frame_size)
        assert data_frame(server, stream_id, b"x" * chunk) is not None
        window -= chunk
    with pytest.raises(FlowControlError):
        server.send_data(stream_id, b"x")
    assert data_frame(server, stream_id, b"x") is None
    # A stream the client reset, and a stream of a closed connection.
    client, server, stream_id = connected(False)
    client.reset_stream(stream_id)
    server.receive_data(client.data_to_send())
    with pytest.raises(ProtocolError):
        server.send_data(stream_id, b"x")
    assert data_frame(server, stream_id, b"x") is None
    _, server, stream_id = connected(True)
    server.close_connection()
    with pytest.raises(ProtocolError):
        server.send_data(stream_id, b"x")
    assert data_frame(server, stream_id, b"x") is None
