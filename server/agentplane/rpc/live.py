"""A server stream's messages sent without a coroutine, when HTTP/2 lets them go at once.

A live event watcher (``EventLog.watch(live=...)``) is handed each event in
the log's delivery pass, which must never wait. ``LiveSender`` writes the
message as grpclib's ``send_message`` would (the 5-byte gRPC prefix, then
one DATA frame) when that needs no wait: the connection is writable, and the
stream's and the connection's flow-control windows and the peer's frame size
take the whole message. Otherwise it declines, and the watch yields the
event to the handler, whose ``send_message`` waits as usual. The bytes on
the wire are the same either way.

The frame is made here (``data_frame``), not by h2's ``send_data``: h2
builds a hyperframe object per frame and ran 40% of a fan-out's server time
(issue 16). ``data_frame`` does what h2 4.x's ``send_data`` does for an
unpadded DATA frame that does not end its stream (checks the connection's
and the stream's state, takes the size off both windows), and declines
where h2 would raise. ``tests/server/test_live_grpc.py`` holds it to h2's
own output and accounting on a live h2 connection, so an h2 that changes
fails there.

It reads grpclib 0.4.9's (pinned) protocol stream: ``Stream._stream`` and
its ``connection``, ``_h2_connection`` and ``_transport``. It skips
grpclib's ``SendMessage`` event, which this server does not listen to.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from grpclib.server import Stream
from h2.connection import ConnectionState, H2Connection
from h2.stream import StreamState

from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.service.convert import event_wire

# gRPC's message prefix: not compressed, then the length (grpclib's own layout).
_PREFIX = struct.Struct(">?I")
# An HTTP/2 frame header: 24-bit length, type, flags, stream id (RFC 9113 4.1).
_FRAME_HEAD = struct.Struct(">HBBBL")
_DATA = 0x0
# The stream states in which h2 lets a server send DATA.
_SENDING = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE})


def data_frame(connection: H2Connection, stream_id: int, payload: bytes) -> bytes | None:
    """One DATA frame of ``payload`` on ``stream_id``, accounted as h2 accounts it; None if not now.

    None where h2's ``send_data`` would raise or block: a stream or
    connection no longer open, a window or the peer's frame size too small.
    """
    stream = connection.streams.get(stream_id)
    if stream is None or stream.state_machine.state not in _SENDING:
        return None
    if connection.state_machine.state is not ConnectionState.SERVER_OPEN:
        return None
    size = len(payload)
    if (
        size > connection.outbound_flow_control_window
        or size > stream.outbound_flow_control_window
        or size > connection.max_outbound_frame_size
    ):
        return None
    connection.outbound_flow_control_window -= size
    stream.outbound_flow_control_window -= size
    return _FRAME_HEAD.pack(size >> 8, size & 0xFF, _DATA, 0, stream_id) + payload


class LiveSender:
    """Sends a StreamEvents message on ``stream`` at once, or declines (False)."""

    __slots__ = ("_raw", "_stream")

    def __init__(self, stream: Stream[Any, Any]) -> None:
        self._stream = stream
        self._raw = stream._stream  # grpclib.protocol.Stream

    def __call__(self, message: api_pb.StreamEventsResponse) -> bool:
        raw = self._raw
        connection = raw.connection
        transport = raw._transport
        if not connection.write_ready.is_set() or transport.is_closing():
            return False
        data = event_wire(message)
        framed = _PREFIX.pack(False, len(data)) + data
        h2_connection = raw._h2_connection
        stream_id = raw.id
        assert stream_id is not None  # a server stream has its id from the start
        frame = data_frame(h2_connection, stream_id, framed)
        if frame is None:
            return False  # the handler sends it, waiting, or finds the stream gone
        # What h2 already holds to send (a WINDOW_UPDATE, a PING ack) goes first.
        pending = h2_connection.data_to_send()
        transport.write(pending + frame if pending else frame)
        size = len(framed)
        # grpclib's own bookkeeping of what its send_message sent.
        raw.data_sent += size
        connection.data_sent += size
        connection.data_send_process()
        stream = self._stream
        stream._messages_sent += 1
        connection.messages_sent += 1
        connection.last_message_sent = time.monotonic()
        return True
