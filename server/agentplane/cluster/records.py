"""SessionRecord <-> JSON, as stored in Redis."""

from __future__ import annotations

import json
from typing import Any

from agentplane.core.models import EndReason, SessionRecord, SessionState


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
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


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
