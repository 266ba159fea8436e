"""Agents for the server subprocess tests (``agentplane serve --agent tests.server.agents:...``).

join_call runs for ``metadata["run_for"]`` seconds and returns (reason
COMPLETED), or, without it, never returns by itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agentplane.server import AgentLauncher, Runner


class Agent:
    def __init__(self, metadata: dict[str, Any]) -> None:
        self.metadata = metadata


async def create_agent(**metadata: Any) -> Agent:
    return Agent(metadata)


async def join_call(agent: Agent, call_type: str, call_id: str, **_: Any) -> None:
    run_for = agent.metadata.get("run_for")
    if isinstance(run_for, (int, float)):
        await asyncio.sleep(run_for)
        return
    await asyncio.Event().wait()


def _runner(drain_timeout: float) -> Runner:
    return Runner(
        AgentLauncher(
            create_agent,
            join_call,
            drain_timeout=drain_timeout,
            agent_idle_timeout=None,
            stop_timeout=2.0,
        )
    )


def drain_runner() -> Runner:
    """Sessions get 2 s to finish after the first SIGTERM."""
    return _runner(2.0)


def slow_drain_runner() -> Runner:
    """Sessions would get 30 s: only a second signal ends the process quickly."""
    return _runner(30.0)
