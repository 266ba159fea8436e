"""The built-in DEMO agent that ``agentplane serve`` runs without ``--agent``.

It is a demonstration, not an AI agent: it needs no network and no API key.
It "joins" the call, then once a second processes a synthetic 64 KiB video
frame (hashing it), and reports what it really did: the measured processing
latency (``video_processing_latency_ms``) and the frames processed
(``video_frames_processed``), plus a ``frame_processed`` event every few
frames. Nobody else ever joins a demo call, so it idles out after the idle
timeout (60 s by default) unless closed first.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

from agentplane.core import AgentLauncher, SessionContext

FRAME_BYTES = 64 * 1024
FRAME_INTERVAL = 1.0
EVENT_EVERY = 5


class DemoAgent:
    """A stand-in agent: holds its frames count and knows when it was closed."""

    def __init__(self, greeting: str = "Hello from the agentplane demo agent") -> None:
        self.greeting = greeting
        self.frames = 0
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def create_agent(**metadata: Any) -> DemoAgent:
    """Metadata ``greeting`` (a string) changes what the agent says on joining."""
    greeting = metadata.get("greeting")
    return DemoAgent(greeting) if isinstance(greeting, str) else DemoAgent()


async def join_call(
    agent: DemoAgent, call_type: str, call_id: str, *, session: SessionContext, **_: Any
) -> None:
    session.emit("joined", {"call_type": call_type, "call_id": call_id, "say": agent.greeting})
    while True:
        frame = os.urandom(FRAME_BYTES)
        started = time.perf_counter()
        digest = hashlib.sha256(frame).hexdigest()
        session.observe("video_processing_latency_ms", (time.perf_counter() - started) * 1000)
        session.add("video_frames_processed")
        agent.frames += 1
        if agent.frames % EVENT_EVERY == 0:
            session.emit("frame_processed", {"frames": agent.frames, "sha256": digest[:16]})
        await asyncio.sleep(FRAME_INTERVAL)


def demo_launcher(**limits: Any) -> AgentLauncher:
    """An AgentLauncher running the demo agent; ``limits`` go to AgentLauncher."""
    return AgentLauncher(create_agent=create_agent, join_call=join_call, **limits)
