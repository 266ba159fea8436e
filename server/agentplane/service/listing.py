"""ListSessions requests -> launcher queries, and page tokens.

A page token is the position the previous page ended at, plus a fingerprint
of the request's filters and order: a token used with other filters is
INVALID_ARGUMENT (AIP-158), not a silently wrong page. Tokens are opaque to
callers but not secret: whatever position one names, every session it leads
to is still checked against the caller's view permission.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math

from google.protobuf import timestamp_pb2

from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.core.errors import FieldViolation, InvalidArgument
from agentplane.core.listing import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, ListPosition, SessionQuery
from agentplane.core.models import EndReason, SessionState
from agentplane.core.validation import call_id_violation

from .convert import end_reason_from_message, state_from_message

_ORDERS = {
    "": True,
    "session_started_at desc": True,
    "session_started_at": False,
    "session_started_at asc": False,
}
_CREATED_BY_MAX = 256


def page_size(request: api_pb.ListSessionsRequest) -> int:
    """The request's page size: 0 is the default; above the maximum, the maximum (AIP-158)."""
    if request.page_size < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    if request.page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(request.page_size, MAX_PAGE_SIZE)


def query_from_request(request: api_pb.ListSessionsRequest) -> SessionQuery:
    """The launcher query a request asks for; every bad field is named at once."""
    violations: list[FieldViolation] = []
    if request.call_id:
        violation = call_id_violation("call_id", request.call_id)
        if violation is not None:
            violations.append(violation)
    if len(request.created_by) > _CREATED_BY_MAX:
        violations.append(
            FieldViolation("created_by", f"must be at most {_CREATED_BY_MAX} characters")
        )
    states: set[SessionState] = set()
    for wire_state in request.states:
        state: SessionState | None = state_from_message(wire_state)
        if state is None:
            violations.append(FieldViolation("states", f"{wire_state} is not a session state"))
        else:
            states.add(state)
    reasons: set[EndReason] = set()
    for wire_reason in request.end_reasons:
        reason: EndReason | None = end_reason_from_message(wire_reason)
        if reason is None:
            violations.append(FieldViolation("end_reasons", f"{wire_reason} is not an end reason"))
        else:
            reasons.add(reason)
    order = " ".join(request.order_by.split()).lower()
    if order not in _ORDERS:
        violations.append(
            FieldViolation(
                "order_by",
                f"{request.order_by!r} is not an order: use 'session_started_at desc' "
                "(the default) or 'session_started_at'",
            )
        )
    times: dict[str, float | None] = {}
    for name in ("started_after", "started_before", "ended_after", "ended_before"):
        times[name] = _seconds(request, name)
    for low, high in (("started_after", "started_before"), ("ended_after", "ended_before")):
        low_at, high_at = times[low], times[high]
        if low_at is not None and high_at is not None and low_at >= high_at:
            violations.append(FieldViolation(high, f"must be later than {low}"))
    if violations:
        raise InvalidArgument(violations)
    return SessionQuery(
        call_id=request.call_id,
        states=frozenset(states),
        end_reasons=frozenset(reasons),
        created_by=request.created_by,
        started_after=times["started_after"],
        started_before=times["started_before"],
        ended_after=times["ended_after"],
        ended_before=times["ended_before"],
        newest_first=_ORDERS.get(order, True),
    )


def _seconds(request: api_pb.ListSessionsRequest, name: str) -> float | None:
    if not request.HasField(name):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(request, name)
    return stamp.seconds + stamp.nanos / 1e9


def _fingerprint(query: SessionQuery) -> str:
    shape = [
        query.call_id,
        sorted(int(state) for state in query.states),
        sorted(int(reason) for reason in query.end_reasons),
        query.created_by,
        query.started_after,
        query.started_before,
        query.ended_after,
        query.ended_before,
        query.newest_first,
    ]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]


def encode_page_token(position: ListPosition, query: SessionQuery) -> str:
    data = {"t": position.started_at, "s": position.session_id, "q": _fingerprint(query)}
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_page_token(token: str, query: SessionQuery) -> ListPosition | None:
    """The position a token names (None for no token); INVALID_ARGUMENT when it is not ours."""
    if not token:
        return None
    bad = InvalidArgument(
        [FieldViolation("page_token", "is not a next_page_token of ListSessions")]
    )
    if len(token) > 512:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(data, dict):
        raise bad
    started_at, session_id = data.get("t"), data.get("s")
    if (
        not isinstance(started_at, int | float)
        or isinstance(started_at, bool)
        or not math.isfinite(started_at)
        or not isinstance(session_id, str)
    ):
        raise bad
    if data.get("q") != _fingerprint(query):
        raise InvalidArgument(
            [
                FieldViolation(
                    "page_token",
                    "was given for other filters or another order: send the first page's "
                    "filters and order with it",
                )
            ]
        )
    return ListPosition(float(started_at), session_id)
