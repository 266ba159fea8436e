"""Waiting for what a test cannot await directly: always bounded, never a fixed sleep.

``wait_until`` is ``agentplane.testing.wait_until`` (users get the same one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agentplane.core import AgentLauncher, SessionRecord, SessionState
from agentplane.testing import WaitTimeout, wait_until

__all__ = ["WaitTimeout", "settle", "wait_ended", "wait_until", "wait_until_sync"]


async def settle(rounds: int = 10) -> None:
    """Let callbacks and tasks already scheduled run a few loop iterations (no time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def wait_ended(
    launcher: AgentLauncher, session_id: str, within: float = 5.0
) -> SessionRecord:
    """Wait until the session is ENDED; answer its record."""

    async def ended() -> SessionRecord | None:
        record = await launcher.get_session(session_id)
        return record if record.state is SessionState.ENDED else None

    record: SessionRecord = await wait_until(ended, within, what=f"session {session_id} to end")
    return record


def wait_until_sync(
    predicate: Callable[[], object],
    timeout: float = 5.0,
    interval: float = 0.005,
    *,
    what: str | None = None,
) -> Any:
    """``wait_until`` for synchronous tests (a server in another process), on a loop of its own."""
    return asyncio.run(wait_until(predicate, timeout, interval, what=what))
