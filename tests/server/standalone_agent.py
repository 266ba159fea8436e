"""A user's own agent file: ``python standalone_agent.py serve`` (see the Runner docs)."""

from __future__ import annotations

import asyncio
from typing import Any

from agentplane.server import AgentLauncher, Runner


async def create_agent(**metadata: Any) -> dict[str, Any]:
    return {"metadata": metadata}


async def join_call(agent: dict[str, Any], call_type: str, call_id: str, **_: Any) -> None:
    await asyncio.Event().wait()


if __name__ == "__main__":
    Runner(AgentLauncher(create_agent=create_agent, join_call=join_call, drain_timeout=0.5)).cli()
