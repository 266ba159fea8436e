"""The agent of the cluster tests: joins at once and stays until closed; 50 sessions at most."""

from __future__ import annotations

import asyncio
from typing import Any

from agentplane.server import AgentLauncher, current_session


async def create_agent(**_: Any) -> dict[str, str]:
    return {}


async def join_call(agent: dict[str, str], call_type: str, call_id: str) -> None:
    session = current_session()
    assert session is not None
    session.add("frames", 7)  # a live metric only this node has
    await asyncio.Event().wait()  # until the session is closed


def make_launcher() -> AgentLauncher:
    return AgentLauncher(
        create_agent=create_agent,
        join_call=join_call,
        max_concurrent_sessions=50,
        max_sessions_per_call=1,
    )
