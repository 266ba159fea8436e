"""A user's agent file that configures its server in code: ``ServeOptions(grpc_port=0, ...)``.

``python configured_agent.py serve`` with no flags must serve with these
options; a command-line flag overrides the one option it names.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agentplane.server import AgentLauncher, Runner, ServeOptions


async def create_agent(**metadata: Any) -> dict[str, Any]:
    return {"metadata": metadata}


async def join_call(agent: dict[str, Any], call_type: str, call_id: str, **_: Any) -> None:
    await asyncio.Event().wait()


if __name__ == "__main__":
    Runner(
        AgentLauncher(create_agent=create_agent, join_call=join_call, drain_timeout=0.5),
        ServeOptions(host="127.0.0.1", port=0, grpc_port=0, api_token="file-token"),
    ).cli()
