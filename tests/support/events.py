"""Reading the launcher's event streams in tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable

from agentplane.core import EventKind, SessionEvent


async def collect(
    stream: AsyncGenerator[SessionEvent, None],
    until: Callable[[SessionEvent], bool] | None = None,
    limit: int | None = None,
) -> list[SessionEvent]:
    """Read ``stream`` until it ends, ``until(event)`` holds, or ``limit`` events."""
    out: list[SessionEvent] = []
    async with contextlib.aclosing(stream):
        async for event in stream:
            out.append(event)
            if until is not None and until(event):
                break
            if limit is not None and len(out) >= limit:
                break
    return out


def ended_event_of(session_id: str) -> Callable[[SessionEvent], bool]:
    def check(event: SessionEvent) -> bool:
        return event.kind is EventKind.ENDED and event.session_id == session_id

    return check


def kinds(events: list[SessionEvent]) -> list[EventKind]:
    return [event.kind for event in events]
