"""Launcher records and events <-> protobuf messages of ``agentplane.v1``."""

from __future__ import annotations

from typing import Any, cast

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from agentplane.clients.grpcio import session_pb2 as pb
from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.core.errors import FieldViolation, InvalidArgument
from agentplane.core.models import EndReason, EventKind, SessionEvent, SessionRecord, SessionState

# Built by name, so a core enum that drifts from the proto fails at import.
_STATES = {
    s: cast(pb.SessionState, pb.SessionState.Value(f"SESSION_STATE_{s.name}")) for s in SessionState
}
_REASONS = {r: cast(pb.EndReason, pb.EndReason.Value(f"END_REASON_{r.name}")) for r in EndReason}
_STATES_BACK = {int(value): state for state, value in _STATES.items()}
_REASONS_BACK = {int(value): reason for reason, value in _REASONS.items()}


def state_from_message(value: int) -> SessionState | None:
    """The core state of a wire ``SessionState`` (None: unspecified or unknown)."""
    return _STATES_BACK.get(value)


def end_reason_from_message(value: int) -> EndReason | None:
    """The core reason of a wire ``EndReason`` (None: unspecified or unknown)."""
    return _REASONS_BACK.get(value)


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    set_time(ts, seconds)
    return ts


def set_time(ts: timestamp_pb2.Timestamp, seconds: float) -> None:
    """Set ``ts`` (a message's own field: no Timestamp built and copied in) to ``seconds``."""
    # Microseconds are what time.time() really resolves; more digits would be noise.
    micros = round(seconds * 1_000_000)
    ts.seconds = micros // 1_000_000
    ts.nanos = micros % 1_000_000 * 1000


def struct_to_dict(value: struct_pb2.Struct, field: str = "metadata") -> dict[str, Any]:
    """``value`` as plain Python; NaN or Infinity anywhere is InvalidArgument naming the key.

    protojson has no form for them (protobuf's MessageToDict raises
    ValueError), so a request carrying one is the client's error, not ours.
    """
    result: dict[str, Any] = {}
    if not value.fields:
        return result  # most Starts: items() on an empty map still costs ~4 µs
    violations: list[FieldViolation] = []
    for key, item in value.fields.items():
        try:
            result[key] = json_format.MessageToDict(item)
        except ValueError:
            violations.append(
                FieldViolation(f"{field}.{key}", "numbers must be finite, not NaN or Infinity")
            )
    if violations:
        raise InvalidArgument(sorted(violations, key=lambda v: v.field))
    return result


def dict_to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def session_message(record: SessionRecord) -> pb.Session:
    message = pb.Session()
    fill_session(message, record)
    return message


def fill_session(message: pb.Session, record: SessionRecord) -> None:
    """Set the empty ``message`` (a response's own ``session``: no copy) from ``record``."""
    message.session_id = record.session_id
    message.call_id = record.call_id
    set_time(message.session_started_at, record.started_at)
    message.call_type = record.call_type
    message.state = _STATES[record.state]
    message.error_message = record.error_message
    message.created_by = record.created_by
    if record.metadata:
        message.metadata.update(record.metadata)
    if record.end_reason is not None:
        message.end_reason = _REASONS[record.end_reason]
    if record.ended_at is not None:
        set_time(message.ended_at, record.ended_at)


# The message of each published event, built once however many watchers
# stream it (the fan-out of one event to a thousand watchers costs one
# conversion, not a thousand). A ring by cursor, like the event log's own: a
# cursor belongs to exactly one published event, and each slot keeps that event
# so a hit is checked by identity. An event of another log with the same cursor
# (several servers in one process), or one that fell EVENT_MESSAGE_CACHE events
# behind, is converted again and takes the slot; nothing else is ever evicted.
EVENT_MESSAGE_CACHE = 1024
_event_messages: list[tuple[SessionEvent, api_pb.StreamEventsResponse] | None] = [
    None
] * EVENT_MESSAGE_CACHE


def event_message(event: SessionEvent, epoch: str) -> api_pb.StreamEventsResponse:
    """The ``StreamEventsResponse`` of ``event`` (of the log ``epoch``), shared by all its watchers.

    The same message object goes to every watcher of a published event, so it
    must never be changed: the gRPC service only serializes it and the gateway
    only renders it. A GAP event is made for one watcher (its own position) and
    may carry the cursor of a published event, so its message is never shared.
    """
    if event.kind is EventKind.GAP:
        return _build_event_message(event, epoch)
    slot = event.cursor % EVENT_MESSAGE_CACHE
    cached = _event_messages[slot]
    if cached is not None and cached[0] is event:
        return cached[1]
    message = _build_event_message(event, epoch)
    _event_messages[slot] = (event, message)
    return message


def _build_event_message(event: SessionEvent, epoch: str) -> api_pb.StreamEventsResponse:
    message = api_pb.StreamEventsResponse(
        cursor=event.cursor,
        epoch=epoch,
        session_id=event.session_id,
        call_id=event.call_id,
        time=timestamp(event.time),
    )
    payload = event.payload
    kind = event.kind
    if kind is EventKind.STARTED:
        message.started.session.CopyFrom(session_message(payload["session"]))
    elif kind is EventKind.STATE_CHANGED:
        message.state_changed.previous_state = _STATES[payload["previous_state"]]
        message.state_changed.state = _STATES[payload["state"]]
    elif kind is EventKind.METRICS_UPDATED:
        message.metrics_updated.metrics.update(payload["metrics"])
    elif kind is EventKind.ENDED:
        message.ended.session.CopyFrom(session_message(payload["session"]))
        message.ended.metrics.update(payload["metrics"])
    elif kind is EventKind.AGENT:
        message.agent_event.name = payload["name"]
        message.agent_event.data.update(payload["data"])
    elif kind is EventKind.GAP:
        message.gap.after_cursor = payload["after_cursor"]
        message.gap.next_cursor = payload["next_cursor"]
    else:  # pragma: no cover - a new EventKind must be mapped here
        raise AssertionError(f"unmapped event kind {kind}")
    return message


# Each shared event message serialized once for every gRPC watcher (the codec
# passes bytes through: rpc/transport.py). Keyed by the message's cursor and
# checked by identity, as the ring above; a GAP's message or an evicted one is
# serialized again and takes the slot.
_event_wire: list[tuple[api_pb.StreamEventsResponse, bytes] | None] = [None] * EVENT_MESSAGE_CACHE


def event_wire(message: api_pb.StreamEventsResponse) -> bytes:
    """``message.SerializeToString()``, made once for a message ``event_message`` shares."""
    slot = message.cursor % EVENT_MESSAGE_CACHE
    cached = _event_wire[slot]
    if cached is not None and cached[0] is message:
        return cached[1]
    data = message.SerializeToString()
    _event_wire[slot] = (message, data)
    return data
