"""What the CLI prints: aligned tables for people, protojson for scripts.

JSON is the message's protojson (betterproto2's ``to_dict``) with proto field
names and every field without presence, as the HTTP/JSON gateway answers
(docs/decisions/0016): enums by name, timestamps in RFC 3339, 64-bit integers
(the event cursors) as strings, a missing metric value as ``"NaN"``. Message
fields that are absent are left out, as protojson does.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import betterproto2

from agentplane.clients.betterproto import (
    EndReason,
    MetricsResponse,
    Session,
    SessionState,
    StartResponse,
    StreamEventsResponse,
)

_OWN_MODULE = Session.__module__  # agentplane.v1's messages (not the well-known types)


def message_dict(message: betterproto2.Message) -> dict[str, Any]:
    """``message`` as protojson (a dict), proto field names, absent messages left out."""
    data = message.to_dict(casing=betterproto2.Casing.SNAKE, include_default_values=True)
    return _prune(message, data)


def _prune(message: betterproto2.Message, data: dict[str, Any]) -> dict[str, Any]:
    # Only agentplane's own message fields are walked: a Struct's null stays null.
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        field = getattr(message, key, None)
        if isinstance(field, betterproto2.Message) and type(field).__module__ == _OWN_MODULE:
            value = _prune(field, value)
        elif isinstance(field, list) and isinstance(value, list):
            value = [
                _prune(item, entry)
                if isinstance(item, betterproto2.Message) and isinstance(entry, dict)
                else entry
                for item, entry in zip(field, value, strict=True)
            ]
        out[key] = value
    return out


def to_json(data: Any, *, sort_keys: bool = False) -> str:
    """One line of JSON (the CLI prints one object per command, one per event)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)


def state_name(state: SessionState) -> str:
    return state.name.lower() if state is not SessionState.UNSPECIFIED else "-"


def reason_name(reason: EndReason) -> str:
    return reason.name.lower() if reason is not EndReason.UNSPECIFIED else "-"


def _time(instant: datetime.datetime | None) -> str:
    if instant is None:
        return "-"
    return instant.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _age(seconds: float) -> str:
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns aligned on the widest cell, two spaces apart; no trailing spaces."""
    grid = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[column]) for row in grid) for column in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in grid
    )


SESSION_COLUMNS = ("SESSION", "CALL", "STATE", "END REASON", "STARTED", "ENDED / AGE", "CREATED BY")


def session_row(session: Session, now: datetime.datetime) -> list[str]:
    if session.ended_at is not None:
        ended = _time(session.ended_at)
    elif session.session_started_at is not None:
        ended = "up " + _age((now - session.session_started_at).total_seconds())
    else:
        ended = "-"
    return [
        session.session_id,
        session.call_id,
        state_name(session.state),
        reason_name(session.end_reason),
        _time(session.session_started_at),
        ended,
        session.created_by or "-",
    ]


def sessions_table(sessions: Sequence[Session], now: datetime.datetime | None = None) -> str:
    """The sessions as a table (a header line only, when there are none)."""
    now = now or datetime.datetime.now(datetime.UTC)
    return table(SESSION_COLUMNS, (session_row(s, now) for s in sessions))


def _pairs(pairs: Iterable[tuple[str, str]]) -> str:
    items = list(pairs)
    width = max((len(key) for key, _ in items), default=0)
    return "\n".join(f"{key.ljust(width)}  {value}".rstrip() for key, value in items)


def session_details(session: Session) -> str:
    """Every field of a session, one per line."""
    metadata = session.metadata.to_dict() if session.metadata is not None else {}
    pairs = [
        ("session_id", session.session_id),
        ("call_id", session.call_id),
        ("call_type", session.call_type),
        ("state", state_name(session.state)),
        ("end_reason", reason_name(session.end_reason)),
        ("started", _time(session.session_started_at)),
        ("ended", _time(session.ended_at)),
        ("created_by", session.created_by or "-"),
        # A Struct's keys come in no fixed order: sorted, so the line reads the same each time.
        (
            "metadata",
            to_json(metadata, sort_keys=True) if metadata else "-",
        ),
    ]
    if session.error_message:
        pairs.append(("error", session.error_message))
    return _pairs(pairs)


def started_details(started: StartResponse) -> str:
    pairs = [
        ("session_id", started.session_id),
        ("call_id", started.call_id),
        ("started", _time(started.session_started_at)),
    ]
    if started.close_token is not None:
        pairs.append(("close_token", started.close_token))
    return _pairs(pairs)


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"  # no value yet (README: a key with no value yet is NaN)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def metrics_details(metrics: MetricsResponse) -> str:
    head = _pairs(
        [
            ("session_id", metrics.session_id),
            ("call_id", metrics.call_id),
            ("started", _time(metrics.session_started_at)),
            ("generated", _time(metrics.metrics_generated_at)),
        ]
    )
    if not metrics.metrics:
        return head + "\n\n(no metrics yet)"
    rows = [(key, _number(metrics.metrics[key])) for key in sorted(metrics.metrics)]
    return head + "\n\n" + table(("METRIC", "VALUE"), rows)


def _metrics_line(values: dict[str, float]) -> str:
    shown = [f"{key}={_number(values[key])}" for key in sorted(values)]
    return " ".join(shown) if shown else "(none)"


def event_kind(event: StreamEventsResponse) -> str:
    """The name of the event's oneof member (``started``, ``gap``, ...)."""
    kind, _ = betterproto2.which_one_of(event, "event")
    return kind or "unknown"


def event_line(event: StreamEventsResponse) -> str:
    """``<time>  <cursor>  <kind>  <session>  <call>  <what>``, one line."""
    kind = event_kind(event)
    detail = ""
    if event.started is not None and event.started.session is not None:
        session = event.started.session
        detail = f"call_type={session.call_type}"
        if session.created_by:
            detail += f" created_by={session.created_by}"
    elif event.state_changed is not None:
        change = event.state_changed
        detail = f"{state_name(change.previous_state)} -> {state_name(change.state)}"
    elif event.metrics_updated is not None:
        detail = _metrics_line(event.metrics_updated.metrics)
    elif event.ended is not None and event.ended.session is not None:
        session = event.ended.session
        detail = f"reason={reason_name(session.end_reason)}"
        if session.error_message:
            detail += f" error={to_json(session.error_message)}"
    elif event.agent_event is not None:
        data = event.agent_event.data.to_dict() if event.agent_event.data is not None else {}
        detail = f"{event.agent_event.name} {to_json(data)}"
    elif event.gap is not None:
        detail = gap_text(event)
    cells = [
        _time(event.time) if event.time is not None else "-",
        f"#{event.cursor}".rjust(6),
        (kind.upper() if kind == "gap" else kind).ljust(15),
        event.session_id or "-",
        event.call_id or "-",
        detail,
    ]
    return "  ".join(cells).rstrip()


def gap_text(event: StreamEventsResponse) -> str:
    """What an EventsGap means, in words."""
    gap = event.gap
    assert gap is not None
    if gap.next_cursor <= gap.after_cursor:
        return (
            f"events after #{gap.after_cursor} may be missed: the server's event log changed "
            f"(restart?, epoch {event.epoch}); what it still holds follows"
        )
    return (
        f"missed the events after #{gap.after_cursor} and before #{gap.next_cursor}: "
        "the server no longer held them; re-read the sessions you care about"
    )
