"""Session records, events and launcher errors <-> JSON, as stored in Redis.

Metrics may be NaN (a figure with no value yet): the JSON keeps it as
Python's ``NaN`` literal, which only agentplane reads back (no Lua script
parses these documents).
"""

from __future__ import annotations

import json
from typing import Any

from agentplane.core.errors import (
    AdmissionRejected,
    AgentStartFailed,
    Draining,
    FieldViolation,
    IdempotencyConflict,
    InvalidArgument,
    LauncherError,
    NotReady,
    SessionNotFound,
    Unavailable,
)
from agentplane.core.models import EndReason, EventKind, SessionEvent, SessionRecord, SessionState


def record_to_json(record: SessionRecord) -> str:
    data: dict[str, Any] = {
        "session_id": record.session_id,
        "call_id": record.call_id,
        "call_type": record.call_type,
        "started_at": record.started_at,
        "created_by": record.created_by,
        "metadata": record.metadata,
        "idempotency_key": record.idempotency_key,
        "state": record.state.name,
        "end_reason": None if record.end_reason is None else record.end_reason.name,
        "ended_at": record.ended_at,
        "error_message": record.error_message,
        "final_metrics": record.final_metrics,
    }
    return json.dumps(data, separators=(",", ":"))


def record_from_json(text: str | bytes) -> SessionRecord:
    data = json.loads(text)
    end_reason = data.get("end_reason")
    return SessionRecord(
        session_id=data["session_id"],
        call_id=data["call_id"],
        call_type=data["call_type"],
        started_at=float(data["started_at"]),
        created_by=data.get("created_by", ""),
        metadata=dict(data.get("metadata") or {}),
        idempotency_key=data.get("idempotency_key", ""),
        state=SessionState[data["state"]],
        end_reason=None if end_reason is None else EndReason[end_reason],
        ended_at=data.get("ended_at"),
        error_message=data.get("error_message", ""),
        final_metrics=data.get("final_metrics"),
    )


def event_to_json(
    session_id: str, call_id: str, time: float, kind: EventKind, payload: dict[str, Any]
) -> str:
    """An event as the cluster stream stores it (its cursor is the stream's to give)."""
    data: dict[str, Any] = {}
    for name, value in payload.items():
        if isinstance(value, SessionRecord):
            data[name] = {"record": json.loads(record_to_json(value))}
        elif isinstance(value, SessionState):
            data[name] = {"state": value.name}
        else:
            data[name] = value
    return json.dumps(
        {"s": session_id, "c": call_id, "t": time, "k": kind.value, "p": data},
        separators=(",", ":"),
    )


def event_from_json(cursor: int, text: str | bytes) -> SessionEvent:
    data = json.loads(text)
    payload: dict[str, Any] = {}
    for name, value in data["p"].items():
        if isinstance(value, dict) and set(value) == {"record"}:
            payload[name] = record_from_json(json.dumps(value["record"]))
        elif isinstance(value, dict) and set(value) == {"state"}:
            payload[name] = SessionState[value["state"]]
        else:
            payload[name] = value
    return SessionEvent(
        cursor, data["s"], data["c"], float(data["t"]), EventKind(data["k"]), payload
    )


def error_to_dict(error: LauncherError) -> dict[str, Any]:
    """A launcher error as another node re-raises it (``error_from_dict``)."""
    data: dict[str, Any] = {
        "type": type(error).__name__,
        "reason": error.reason,
        "message": error.message,
    }
    if isinstance(error, AdmissionRejected):
        data["retry_after"] = error.retry_after
    if isinstance(error, InvalidArgument):
        data["violations"] = [[v.field, v.description] for v in error.violations]
    if isinstance(error, SessionNotFound):
        data["session_id"] = error.session_id
    return data


def error_from_dict(data: dict[str, Any]) -> LauncherError:
    kind, reason, message = data.get("type"), str(data["reason"]), str(data["message"])
    if kind == "InvalidArgument":
        return InvalidArgument([FieldViolation(f, d) for f, d in data.get("violations", ())])
    if kind == "SessionNotFound":
        return SessionNotFound(str(data.get("session_id", "")))
    if kind == "AdmissionRejected":
        return AdmissionRejected(reason, message, data.get("retry_after"))
    if kind == "Draining":
        return Draining()
    if kind == "NotReady":
        return NotReady()
    if kind == "AgentStartFailed":
        return AgentStartFailed(message)
    if kind == "IdempotencyConflict":
        return IdempotencyConflict(message)
    # Unavailable and anything newer: the reason and message travel as they are.
    return Unavailable(reason, message)
