"""Offline stand-ins for Vision Agents' network plugins, around the REAL ``Agent``.

The agent under test is ``vision_agents.core.Agent`` itself, with its real
multi-speaker filter (``FirstSpeakerWinsFilter``, loading a tiny Silero-shaped
model from ``vad_model.py``), its real ``WarmupCache`` machinery, metrics
collector, event manager and close sequence. Only what would reach the network
is replaced, by subclasses of the package's base classes:

* ``LocalEdge`` (an ``EdgeTransport``): a call in memory. The test drives it:
  ``join(participant)``, ``speak(participant, pcm)``, ``leave(participant)``,
  ``end_call()`` (the edge's ``CallEndedEvent``, as Stream sends it).
* ``LocalLLM`` (an ``LLM``) and ``LocalSTT`` (an ``STT``), both ``Warmable``:
  they count their warm-ups; the STT records the audio that reached it and
  reports an STT transcript figure to the agent's metrics collector.

``create_agent`` / ``join_call`` are what a Vision Agents user writes, and the
module imports ``vision_agents``: agentplane's Runner recognises it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from getstream.video.rtc import PcmData
from vision_agents.core import Agent, User
from vision_agents.core.agents.conversation import InMemoryConversation
from vision_agents.core.edge import EdgeTransport
from vision_agents.core.edge.events import AudioReceivedEvent, CallEndedEvent
from vision_agents.core.edge.types import Connection, Participant
from vision_agents.core.llm.llm import LLM, LLMResponseDelta, LLMResponseFinal
from vision_agents.core.stt.stt import STT
from vision_agents.core.utils.audio_filter import FirstSpeakerWinsFilter
from vision_agents.core.warmup import Warmable

# Warm-ups per stand-in class: on_warmup loads (once per WarmupCache), and
# on_warmed_up hands the resource to each instance.
LOADS: Counter[str] = Counter()
HANDED: Counter[str] = Counter()


def reset_counts() -> None:
    LOADS.clear()
    HANDED.clear()
    LocalLLM.gate = None


class LocalCall:
    def __init__(self, call_id: str) -> None:
        self._id = call_id

    @property
    def id(self) -> str:
        return self._id


class LocalConnection(Connection):
    """Who is on the call besides the agent, and since when nobody is."""

    def __init__(self) -> None:
        self.participants: set[str] = set()
        self.alone_since = time.time()
        self.someone_joined = asyncio.Event()
        self.closed = False

    async def close(self) -> None:
        self.closed = True

    async def wait_for_participant(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await asyncio.wait_for(self.someone_joined.wait(), timeout)

    def idle_since(self) -> float:
        return 0.0 if self.participants else self.alone_since


class LocalEdge(EdgeTransport[LocalCall]):
    """A call in memory; the test plays the other participants."""

    def __init__(self) -> None:
        super().__init__()
        self.connection: LocalConnection | None = None
        self.call: LocalCall | None = None
        self.joined = asyncio.Event()

    async def authenticate(self, user: User) -> None:
        return None

    async def create_call(self, call_id: str, **kwargs: Any) -> LocalCall:
        self.call = LocalCall(call_id)
        return self.call

    def create_audio_track(self) -> Any:
        raise AssertionError("the stand-in agents publish no audio")

    def open_demo(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def join(self, agent: Any, call: LocalCall, **kwargs: Any) -> LocalConnection:
        self.connection = LocalConnection()
        self.joined.set()
        return self.connection

    async def publish_tracks(self, audio_track: Any, video_track: Any) -> None:
        return None

    async def create_conversation(self, call: Any, user: User, instructions: str) -> Any:
        return InMemoryConversation(instructions, [])

    def add_track_subscriber(self, track_id: str) -> None:
        return None

    async def send_custom_event(self, data: dict[str, Any]) -> None:
        return None

    # ------------------------------------------------------------ the test's side

    def participant(self, user_id: str) -> Participant:
        return Participant(original=None, user_id=user_id, id=f"{user_id}-session")

    def join_participant(self, user_id: str) -> Participant:
        assert self.connection is not None
        self.connection.participants.add(user_id)
        self.connection.someone_joined.set()
        return self.participant(user_id)

    def leave(self, user_id: str) -> None:
        assert self.connection is not None
        self.connection.participants.discard(user_id)
        if not self.connection.participants:
            self.connection.alone_since = time.time()

    def speak(self, participant: Participant, pcm: PcmData) -> None:
        self.events.send(AudioReceivedEvent(pcm_data=pcm, participant=participant))

    def end_call(self) -> None:
        assert self.call is not None
        self.events.send(CallEndedEvent(call=self.call))


def pcm(amplitude: float, ms: int = 40) -> PcmData:
    """``ms`` of 16 kHz mono audio at ``amplitude`` (0 silence, 0.8 "speech")."""
    samples = np.full(16 * ms, int(amplitude * 32767), dtype=np.int16)
    return PcmData(samples=samples, sample_rate=16000, format="s16", channels=1)


class LocalLLM(LLM, Warmable[str]):
    """Never called in these tests (no transcript ends a turn); warm-able.

    Its load waits for ``LocalLLM.gate`` when a test sets one (a slow model download).
    """

    gate: asyncio.Event | None = None

    def __init__(self) -> None:
        super().__init__()
        self.resource: str | None = None

    async def on_warmup(self) -> str:
        LOADS["llm"] += 1
        if LocalLLM.gate is not None:
            await LocalLLM.gate.wait()
        return "weights"

    def on_warmed_up(self, resource: str) -> None:
        HANDED["llm"] += 1
        self.resource = resource

    async def simple_response(  # type: ignore[override]
        self, text: str, participant: Participant | None = None
    ) -> AsyncIterator[LLMResponseDelta | LLMResponseFinal]:
        yield LLMResponseFinal(text="ok")


class LocalSTT(STT, Warmable[str]):
    """Records who it heard; each chunk reports an STT figure to the collector."""

    def __init__(self) -> None:
        super().__init__(provider_name="local")
        self.heard: list[str] = []
        self.resource: str | None = None

    async def on_warmup(self) -> str:
        LOADS["stt"] += 1
        return "model"

    def on_warmed_up(self, resource: str) -> None:
        HANDED["stt"] += 1
        self.resource = resource

    async def process_audio(self, pcm_data: PcmData, participant: Participant) -> None:
        self.heard.append(participant.user_id)
        self.metrics.on_stt_transcript(
            processing_time_ms=12.5, audio_duration_ms=pcm_data.duration_ms
        )


class Agents:
    """``create_agent`` for the launcher; keeps every agent it made."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.made: list[Agent] = []

    async def create_agent(self, **metadata: Any) -> Agent:
        agent = Agent(
            edge=LocalEdge(),
            llm=LocalLLM(),
            stt=LocalSTT(),
            agent_user=User(name="Assistant", id="agent"),
            instructions="Be brief.",
            multi_speaker_filter=FirstSpeakerWinsFilter(model_dir=str(self.model_dir)),
        )
        self.made.append(agent)
        return agent

    @property
    def last(self) -> Agent:
        return self.made[-1]


def edge_of(agent: Agent) -> LocalEdge:
    edge = agent.edge
    assert isinstance(edge, LocalEdge)
    return edge


def stt_of(agent: Agent) -> LocalSTT:
    stt = agent.stt
    assert isinstance(stt, LocalSTT)
    return stt


async def join_call(agent: Agent, call_type: str, call_id: str, **kwargs: Any) -> None:
    """What Vision Agents' examples do: join, then stay until the call ends."""
    call = await agent.create_call(call_type, call_id)
    async with agent.join(call, participant_wait_timeout=0):
        await agent.finish()
