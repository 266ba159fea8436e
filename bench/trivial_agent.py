"""The trivial agent agentplane serves in the benchmarks (no network, no LLM).

``create_agent`` returns a minimal object; ``join_call`` waits until it is
cancelled. With ``emit_every_ms`` and ``emit_count`` in the Start metadata it
first emits that many ``tick`` events (the event fan-out scenario); with
``fail_after_ms`` it raises after that long, so the session ends with
END_REASON_ERROR (the ListSessions scenario's selective filter).

Served with ``agentplane serve --agent bench.trivial_agent:make_launcher``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agentplane.server import AgentLauncher, SessionContext

# The same settings as the peer's trivial agent (bench/peer_agent.py): the
# reference defaults, no session limits.
IDLE_TIMEOUT = 60.0


class TrivialAgent:
    """Never idle (someone is always "on the call"), closes instantly."""

    __slots__ = ("emit_count", "emit_every", "fail_after")

    def __init__(
        self,
        emit_every_ms: float = 0.0,
        emit_count: float = 0,
        fail_after_ms: float | None = None,
        **_: Any,
    ) -> None:
        self.emit_every = float(emit_every_ms) / 1000.0
        self.emit_count = int(emit_count)
        self.fail_after = None if fail_after_ms is None else float(fail_after_ms) / 1000.0

    def idle_for(self) -> float:
        return 0.0

    async def close(self) -> None:
        return None


def create_agent(**metadata: Any) -> TrivialAgent:
    return TrivialAgent(**metadata)


async def join_call(
    agent: TrivialAgent, call_type: str, call_id: str, *, session: SessionContext, **_: Any
) -> None:
    for n in range(agent.emit_count):
        await asyncio.sleep(agent.emit_every)
        session.emit("tick", {"n": n})
    if agent.fail_after is not None:
        await asyncio.sleep(agent.fail_after)
        raise RuntimeError("failed on purpose (fail_after_ms)")
    await asyncio.get_running_loop().create_future()  # until cancelled


def make_launcher() -> AgentLauncher:
    return AgentLauncher(
        create_agent=create_agent, join_call=join_call, agent_idle_timeout=IDLE_TIMEOUT
    )
