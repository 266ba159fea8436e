"""A Vision Agents agent file with only its imports changed (issue 13).

Served as ``python dropin_agent.py serve|run`` (its loggers are ``__main__``)
or ``agentplane serve --agent dropin_agent:launcher`` from this folder (its
loggers are ``dropin_agent``). What it logs tells the tests what happened:

* ``create_agent`` logs at INFO on its own module's logger and on a
  ``vision_agents.*`` logger (where a Vision Agents ``Agent`` logs);
* ``join_call`` logs whether the loop is in debug mode and the video track
  override at WARNING, then forwards its kwargs to ``agent.join`` (which
  takes none), as Vision Agents examples do;
* ``agent.edge.open_demo_for_agent`` prints to stdout.

A call id starting with ``once-`` ends the session (COMPLETED) after joining.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agentplane.server import AgentLauncher, Runner

logger = logging.getLogger(__name__)
sdk_logger = logging.getLogger("vision_agents.core.agents.agents")


class Edge:
    async def open_demo_for_agent(self, agent: Agent, call_type: str, call_id: str) -> None:
        print(f"demo UI opened for {call_type}/{call_id}", flush=True)


class Agent:
    def __init__(self) -> None:
        self.edge = Edge()
        self.override: str | None = None

    def set_video_track_override_path(self, path: str) -> None:
        self.override = path

    async def join(self, call_id: str) -> None:  # no **kwargs, as a Vision Agents Agent's
        logger.warning("joined %s", call_id)

    async def close(self) -> None:
        pass


async def create_agent(**kwargs: Any) -> Agent:
    logger.info("user module info: creating an agent")
    sdk_logger.info("vision_agents info: agent created")
    return Agent()


async def join_call(agent: Agent, call_type: str, call_id: str, **kwargs: Any) -> None:
    loop_debug = asyncio.get_running_loop().get_debug()
    logger.warning("join_call: loop debug=%s override=%s", loop_debug, agent.override)
    await agent.join(call_id, **kwargs)
    if not call_id.startswith("once-"):
        await asyncio.Event().wait()


# Vision Agents' own positional order and its maintenance interval (the drain
# timeout is agentplane's: the tests need not wait 30 s for SIGTERM).
launcher = AgentLauncher(create_agent, join_call, 0, 4, None, None, 5.0, drain_timeout=0.5)

if __name__ == "__main__":
    Runner(launcher).cli()
