"""The session context: what a running agent can tell the control plane.

``join_call`` receives it as its ``session`` keyword argument when it names a
``session`` parameter (``**kwargs`` alone gets nothing extra: a ``join_call``
written for Vision Agents may forward its kwargs). Any code running inside the
session, ``create_agent`` included, reaches it with ``current_session()``;
reports (metrics, events, participants) count from ``join_call``'s start.

Example::

    async def join_call(agent, call_type, call_id, *, session, **kwargs):
        session.participant_joined("user-1")
        started = time.perf_counter()
        reply = await agent.respond("hello")
        session.observe("llm_latency_ms", (time.perf_counter() - started) * 1000)
        session.add("llm_output_tokens", reply.tokens)
        session.emit("turn_finished", {"text": reply.text})
"""

from __future__ import annotations

import contextvars
import json
from typing import Any, Protocol

from .models import SessionRecord

AGENT_EVENT_MAX_BYTES = 16 * 1024


class _Session(Protocol):
    """What the context needs of the running session (``session.LiveSession``)."""

    record: SessionRecord
    participants: set[str] | None

    @property
    def accepts_reports(self) -> bool: ...

    def observe(self, name: str, value: float) -> None: ...
    def add(self, name: str, amount: float) -> None: ...
    def emit(self, name: str, data: dict[str, Any]) -> None: ...
    def participant_joined(self, participant_id: str) -> None: ...
    def participant_left(self, participant_id: str) -> None: ...


class SessionContext:
    """The running session, as its agent sees it."""

    __slots__ = ("_live",)

    def __init__(self, live: _Session) -> None:
        self._live = live

    @property
    def session_id(self) -> str:
        return self._live.record.session_id

    @property
    def call_id(self) -> str:
        return self._live.record.call_id

    @property
    def call_type(self) -> str:
        return self._live.record.call_type

    @property
    def created_by(self) -> str:
        return self._live.record.created_by

    @property
    def metadata(self) -> dict[str, Any]:
        return self._live.record.metadata

    @property
    def active(self) -> bool:
        """True while reports count: from join_call's start until the session is ending."""
        return self._live.accepts_reports

    def observe(self, name: str, value: float) -> None:
        """Record one observation (a latency in ms, a size) under ``name``."""
        self._live.observe(name, value)

    def add(self, name: str, amount: float = 1.0) -> None:
        """Add ``amount`` to the counter ``name`` (reported as ``name__total``)."""
        self._live.add(name, amount)

    def emit(self, name: str, data: dict[str, Any] | None = None) -> None:
        """Publish an agent-defined event to the session's watchers.

        ``data`` must be JSON-serialisable (it travels as a protobuf Struct)
        and at most 16 KiB encoded.
        """
        if not name or len(name) > 128:
            raise ValueError("event name must be 1 to 128 characters")
        payload = dict(data or {})
        encoded = json.dumps(payload, allow_nan=False)
        if len(encoded) > AGENT_EVENT_MAX_BYTES:
            raise ValueError(f"event data must be at most {AGENT_EVENT_MAX_BYTES} bytes encoded")
        self._live.emit(name, json.loads(encoded))

    def participant_joined(self, participant_id: str) -> None:
        """Someone other than the agent joined the call (stops the idle clock)."""
        self._live.participant_joined(participant_id)

    def participant_left(self, participant_id: str) -> None:
        """Someone left the call; when nobody is left the idle clock runs."""
        self._live.participant_left(participant_id)

    @property
    def participants(self) -> frozenset[str]:
        return frozenset(self._live.participants or ())


_current: contextvars.ContextVar[SessionContext] = contextvars.ContextVar("agentplane_session")


def current_session() -> SessionContext:
    """The context of the session whose agent code is running.

    Answers it inside a session's ``create_agent`` and ``join_call`` (and the
    tasks they start); raises LookupError anywhere else.
    """
    return _current.get()


def bind_current(context: SessionContext) -> None:
    """Make ``context`` what ``current_session()`` answers in this task."""
    _current.set(context)
