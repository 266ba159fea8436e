"""A server stream's messages sent without a coroutine, when HTTP/2 lets them go at once.

A live event watcher (``EventLog.watch(live=...)``) is handed each event in
the log's delivery pass, which must never wait. ``LiveSender`` writes the
message as grpclib's ``send_message`` would (the 5-byte gRPC prefix, then
one DATA frame through the connection's h2 state machine) when that needs
no wait: the connection is writable, and the stream's and the connection's
flow-control windows and the peer's frame size take the whole message.
Otherwise it declines, and the watch yields the event to the handler, whose
``send_message`` waits as usual. The bytes on the wire are the same either
way.

It reads grpclib 0.4.9's (pinned) protocol stream: ``Stream._stream`` and
its ``connection``, ``_h2_connection`` and ``_transport``.
``tests/server/test_live_grpc.py`` covers each way it declines. It skips
grpclib's ``SendMessage`` event, which this server does not listen to.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import h2.exceptions
from grpclib.server import Stream

from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.service.convert import event_wire

# gRPC's message prefix: not compressed, then the length (grpclib's own layout).
_PREFIX = struct.Struct(">?I")


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
        size = len(framed)
        h2_connection = raw._h2_connection
        stream_id = raw.id
        assert stream_id is not None  # a server stream has its id from the start
        try:
            if (
                size > h2_connection.local_flow_control_window(stream_id)
                or size > h2_connection.max_outbound_frame_size
            ):
                return False
            h2_connection.send_data(stream_id, framed)
        except h2.exceptions.ProtocolError:
            return False  # the stream was reset or closed: the handler finds out itself
        transport.write(h2_connection.data_to_send())
        # grpclib's own bookkeeping of what its send_message sent.
        raw.data_sent += size
        connection.data_sent += size
        connection.data_send_process()
        stream = self._stream
        stream._messages_sent += 1
        connection.messages_sent += 1
        connection.last_message_sent = time.monotonic()
        return True
