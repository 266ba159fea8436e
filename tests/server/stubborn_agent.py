"""Agents that ignore cancellation, for the shutdown-bound tests (issue 12).

``join_call`` swallows every cancellation forever; ``create_agent`` does the
same for calls whose metadata says ``stubborn_create``. Each prints a line when
it swallowed one, so a test can see that it really was cancelled.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agentplane.server import AgentLauncher


class Agent:
    def close(self) -> None:
        pass


async def _forever(what: str) -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            print(f"{what} swallowed a cancellation", flush=True)


async def create_agent(**metadata: Any) -> Agent:
    if metadata.get("stubborn_create"):
        await _forever("create_agent")
    return Agent()


async def join_call(agent: Agent, call_type: str, call_id: str, **_: Any) -> None:
    await _forever("join_call")


launcher = AgentLauncher(
    create_agent=create_agent,
    join_call=join_call,
    drain_timeout=0.5,
    stop_timeout=0.5,
    create_agent_timeout=0.5,
    max_concurrent_sessions=2,
)
