"""The trivial agent served by the peer: the Vision Agents agent server.

Runs in the peer's own environment (bench/.venv-peer), never in agentplane's:

    bench/.venv-peer/bin/python -P bench/peer_agent.py serve --port 8001 --no-splash

What its ``AgentLauncher`` needs from an agent (read from vision_agents
0.6.9, ``core/agents/agent_launcher.py``): an ``id``; ``llm``, ``tts``,
``stt``, ``turn_detection``, ``_multi_speaker_filter`` and ``processors``
for the warm-up (None / empty: nothing to warm up); ``agent_user.id`` for
its log lines; ``metrics`` (an ``AgentMetrics``, flushed to the registry by
the 5 s maintenance pass); ``idle_for()`` and ``on_call_for()`` for that
pass; and ``close()``. No Stream edge, no LLM: nothing connects anywhere.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

# vision-agents is in agentplane's test extra too (tests/vision/): typed there, absent elsewhere.
from vision_agents.core import AgentLauncher, Runner  # type: ignore[import-not-found, unused-ignore]
from vision_agents.core.observability.agent import (  # type: ignore[import-not-found, unused-ignore]
    AgentMetrics,
)

IDLE_TIMEOUT = 60.0

# One metrics object shared by every agent: the launcher only reads it, and a
# trivial agent should cost the launcher's own memory, not 25 metric objects.
SHARED_METRICS = AgentMetrics()


class _User:
    __slots__ = ("id",)

    def __init__(self, user_id: str) -> None:
        self.id = user_id


class TrivialAgent:
    """Never idle, closes instantly, owns no connection."""

    __slots__ = ("agent_user", "id")

    llm = tts = stt = turn_detection = _multi_speaker_filter = None
    processors: tuple[Any, ...] = ()
    metrics = SHARED_METRICS

    def __init__(self) -> None:
        self.id = str(uuid.uuid4())
        self.agent_user = _User(f"agent-{self.id[:8]}")

    def idle_for(self) -> float:
        return 0.0

    def on_call_for(self) -> float:
        return 0.0

    async def close(self) -> None:
        return None


def create_agent(**_: Any) -> TrivialAgent:
    return TrivialAgent()


async def join_call(agent: TrivialAgent, call_type: str, call_id: str, **_: Any) -> None:
    await asyncio.get_running_loop().create_future()  # until cancelled


# The trivial agent is duck-typed, not a vision_agents Agent.
launcher = AgentLauncher(
    create_agent=cast(Any, create_agent),
    join_call=cast(Any, join_call),
    agent_idle_timeout=IDLE_TIMEOUT,
)

if __name__ == "__main__":
    Runner(launcher).cli()
