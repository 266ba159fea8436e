"""The session context: what a running agent can tell the control plane.

``join_call`` receives it as its ``session`` keyword argument (when it accepts
``**kwargs`` or a ``session`` parameter), and any code running inside the
session can reach it with ``current_session()``.

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

import asyncio
import contextvars
import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .metrics import SessionMetrics
from .models import SessionRecord

AGENT_EVENT_MAX_BYTES = 16 * 1024


class _Host(Protocol):
    def _metrics_changed(self, live: LiveSession) -> None: ...
    def _agent_event(self, live: LiveSession, name: str, data: dict[str, Any]) -> None: ...
    def _presence_changed(self, live: LiveSession) -> None: ...


@dataclass(slots=True, eq=False)
class LiveSession:
    """Node-local state of a running session; dropped when it ends."""

    record: SessionRecord
    metrics: SessionMetrics = field(default_factory=SessionMetrics)
    agent: Any = None
    task: asyncio.Task[None] | None = None
    # Resolved once Start finished (or failed): idempotent retries wait on it.
    started: asyncio.Future[None] | None = None
    # Resolved with the final record once the session ended.
    ended: asyncio.Future[SessionRecord] | None = None
    ending: bool = False
    participants: set[str] | None = None
    alone_since: float | None = None
    max_duration_timer: asyncio.TimerHandle | None = None
    idle_timer: asyncio.TimerHandle | None = None
    metrics_timer: asyncio.TimerHandle | None = None


class SessionContext:
    """The running session, as its agent sees it."""

    __slots__ = ("_host", "_live")

    def __init__(self, host: _Host, live: LiveSession) -> None:
        self._host = host
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
        """False once the session is ending: further reports are ignored."""
        return not self._live.ending

    def observe(self, name: str, value: float) -> None:
        """Record one observation (a latency in ms, a size) under ``name``."""
        if self._live.ending:
            return
        self._live.metrics.observe(name, value)
        self._host._metrics_changed(self._live)

    def add(self, name: str, amount: float = 1.0) -> None:
        """Add ``amount`` to the counter ``name`` (reported as ``name__total``)."""
        if self._live.ending:
            return
        self._live.metrics.add(name, amount)
        self._host._metrics_changed(self._live)

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
        if self._live.ending:
            return
        self._host._agent_event(self._live, name, json.loads(encoded))

    def participant_joined(self, participant_id: str) -> None:
        """Someone other than the agent joined the call (stops the idle clock)."""
        participants = self._live.participants
        if participants is None:
            participants = self._live.participants = set()
        participants.add(participant_id)
        self._live.alone_since = None
        self._host._presence_changed(self._live)

    def participant_left(self, participant_id: str) -> None:
        """Someone left the call; when nobody is left the idle clock runs."""
        participants = self._live.participants
        if participants is not None:
            participants.discard(participant_id)
        if not participants and self._live.alone_since is None:
            self._live.alone_since = time.monotonic()
        self._host._presence_changed(self._live)

    @property
    def participants(self) -> frozenset[str]:
        return frozenset(self._live.participants or ())


_current: contextvars.ContextVar[SessionContext] = contextvars.ContextVar("agentplane_session")


def current_session() -> SessionContext:
    """The context of the session whose agent code is running.

    Raises LookupError outside of a session's ``join_call``.
    """
    return _current.get()
