"""Retained ended sessions share one byte budget for their events (issue 12)."""

from __future__ import annotations

import asyncio
from typing import Any

from agentplane.core import AgentLauncher, EventKind, SessionContext
from agentplane.core.events import EVENT_OVERHEAD_BYTES, EventLog


class Chatty:
    def close(self) -> None:
        pass


async def chatty_join(agent: Chatty, call_type: str, call_id: str, *, session: SessionContext,
                      **_: Any) -> None:  # fmt: skip
    for n in range(20):
        session.emit("chunk", {"n": n, "text": "x" * 10_000})


def _budget_for(sessions: int) -> int:
    # 20 agent events of ~10 KB each per session, plus the lifecycle events.
    return sessions * (20 * (10_000 + 100 + EVENT_OVERHEAD_BYTES) + 4 * EVENT_OVERHEAD_BYTES)


async def _ended_events(launcher: AgentLauncher, session_id: str) -> list[EventKind]:
    kinds = []
    async for event in launcher.events.watch(session_id, 0):
        kinds.append(event.kind)
    return kinds


async def test_oldest_ended_sessions_lose_their_events_past_the_budget() -> None:
    launcher = AgentLauncher(
        create_agent=Chatty, join_call=chatty_join, retained_event_bytes=_budget_for(2),
        agent_idle_timeout=None, session_retention_seconds=300,
    )  # fmt: skip
    async with launcher:
        ids = []
        for n in range(4):
            record = await launcher.start_session(f"call-{n}")
            ids.append(record.session_id)
            await asyncio.wait_for(_ended_events(launcher, record.session_id), 5)
        assert launcher.events.retained_bytes <= _budget_for(2)
        assert launcher.events.retained_bytes > _budget_for(1)
        # The two oldest keep only how they ended, after an explicit gap.
        for session_id in ids[:2]:
            kinds = await asyncio.wait_for(_ended_events(launcher, session_id), 5)
            assert kinds == [EventKind.GAP, EventKind.ENDED]
        # The two newest keep everything.
        for session_id in ids[2:]:
            kinds = await asyncio.wait_for(_ended_events(launcher, session_id), 5)
            assert kinds.count(EventKind.AGENT) == 20
            assert kinds[-1] is EventKind.ENDED
        # Reads of the trimmed sessions are unaffected.
        assert (await launcher.get_session(ids[0])).end_reason is not None


async def test_forgetting_a_session_returns_its_bytes() -> None:
    log = EventLog(retained_bytes=10**9)
    log.open_session("s")
    log.publish("s", "c", EventKind.AGENT, {"name": "n", "data": {"t": "x" * 1000}})
    log.publish("s", "c", EventKind.ENDED, {"session": None, "metrics": {}})
    assert log.retained_bytes >= 1000
    log.forget_session("s")
    assert log.retained_bytes == 0
