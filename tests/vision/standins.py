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

The plugins the Vision Agents docs use, for their code samples run as they are
(``docs_examples/``): ``from tests.vision.standins import deepgram, elevenlabs,
gemini, getstream`` in place of ``from vision_agents.plugins import ...``.
``gemini.LLM(model)``, ``elevenlabs.TTS()``, ``deepgram.STT(...)`` and
``getstream.Edge()`` build on the stand-ins above, log what the tests look for
at WARNING (loads, who was heard, the agent speaking, tool calls), and
``getstream.Edge()``'s call plays a script named by the call id (``StreamEdge``).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
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
from vision_agents.core.tts.tts import TTS
from vision_agents.core.utils.audio_filter import FirstSpeakerWinsFilter
from vision_agents.core.warmup import Warmable

from .vad_model import write_model

# The 25 keys of vision-agents' AgentMetrics, as the reference agent server reports them.
VA_KEYS = {
    "stt_latency_ms__avg",
    "stt_audio_duration_ms__total",
    "tts_latency_ms__avg",
    "tts_audio_duration_ms__total",
    "tts_characters__total",
    "llm_latency_ms__avg",
    "llm_time_to_first_token_ms__avg",
    "llm_input_tokens__total",
    "llm_output_tokens__total",
    "llm_tool_calls__total",
    "llm_tool_latency_ms__avg",
    "turn_duration_ms__avg",
    "turn_trailing_silence_ms__avg",
    "realtime_audio_input_bytes__total",
    "realtime_audio_output_bytes__total",
    "realtime_audio_input_duration_ms__total",
    "realtime_audio_output_duration_ms__total",
    "realtime_user_transcriptions__total",
    "realtime_agent_transcriptions__total",
    "vlm_inference_latency_ms__avg",
    "vlm_inferences__total",
    "vlm_input_tokens__total",
    "vlm_output_tokens__total",
    "video_frames_processed__total",
    "video_processing_latency_ms__avg",
}

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


# ------------------------------------------------ the docs' plugins, offline

log = logging.getLogger(__name__)
# What the stand-in callers say, and how long each chunk lasts (real time).
SPOKEN_CHUNKS = 10
CHUNK_MS = 40
_vad_dir: list[str] = []


def _offline_vad_model() -> None:
    """Point the default multi-speaker filter at the tiny Silero-shaped model.

    ``FirstSpeakerWinsFilter()`` (the docs' agents take the default) loads
    ``silero_vad.onnx`` from ``/tmp/first_speaker_wins_model``, downloading it
    when absent; here it finds the offline model of ``vad_model.py`` in a
    folder of this process (never the machine's shared one).
    """
    if _vad_dir:
        return
    folder = tempfile.mkdtemp(prefix="standin-vad-")
    atexit.register(shutil.rmtree, folder, True)
    write_model(Path(folder))
    init: Any = FirstSpeakerWinsFilter.__init__
    *others, _model_dir = init.__defaults__
    init.__defaults__ = (*others, folder)
    _vad_dir.append(folder)


class LocalAudioTrack:
    """The agent's outgoing audio: how much it said."""

    def __init__(self) -> None:
        self.spoken_ms = 0.0
        self.spoke = asyncio.Event()
        self.stopped = False

    async def write(self, data: PcmData, final: bool = False) -> None:
        self.spoken_ms += data.duration_ms
        if data.duration_ms and not self.spoke.is_set():
            log.warning("getstream stand-in: the agent speaks")
            self.spoke.set()

    async def flush(self) -> None:
        return None

    def stop(self) -> None:
        self.stopped = True


class StreamEdge(LocalEdge):
    """``getstream.Edge()``: a call in memory whose other participants follow a script.

    Once the agent joined, alice and bob join and both speak at once (so the
    multi-speaker filter decides who is heard). Then, by the call id: ``leave-...``:
    both leave (the agent is alone on the call); ``hangup-...``: once the agent
    heard them (and said its answer, if its LLM was asked something), the call
    ends (``CallEndedEvent``, everyone hung up); any other id: they stay,
    silent, until the session ends.
    """

    def __init__(self) -> None:
        super().__init__()
        _offline_vad_model()
        self.track: LocalAudioTrack | None = None
        self._script: asyncio.Task[None] | None = None

    def create_audio_track(self) -> LocalAudioTrack:
        self.track = LocalAudioTrack()
        return self.track

    async def join(self, agent: Any, call: LocalCall, **kwargs: Any) -> LocalConnection:
        connection = await super().join(agent, call, **kwargs)
        self._script = asyncio.create_task(self._play(agent, call.id))
        return connection

    async def close(self) -> None:
        if self._script is not None:
            self._script.cancel()
            await asyncio.gather(self._script, return_exceptions=True)
        await super().close()

    async def _play(self, agent: Any, call_id: str) -> None:
        alice = self.join_participant("alice")
        bob = self.join_participant("bob")
        for _ in range(SPOKEN_CHUNKS):
            self.speak(alice, pcm(0.8, CHUNK_MS))
            self.speak(bob, pcm(0.8, CHUNK_MS))
            await asyncio.sleep(CHUNK_MS / 1000)  # callers talk in real time
        if call_id.startswith("leave-"):
            self.leave("alice")
            self.leave("bob")
        elif call_id.startswith("hangup-"):
            if isinstance(agent.stt, DeepgramSTT):
                await agent.stt.heard_someone.wait()
            if isinstance(agent.llm, GeminiLLM) and agent.llm.asked and self.track is not None:
                await self.track.spoke.wait()  # the agent was asked something: its answer
            self.end_call()


class GeminiLLM(LocalLLM):
    """``gemini.LLM(model)``: calls every registered function, answers with fixed figures.

    Its answer reports the figures of the docs' metrics example (245.5 ms,
    120.3 ms to the first token, 1500 tokens in, 800 out) to the collector.
    """

    provider_name = "gemini"

    def __init__(self, model: str = "gemini-2.5-flash") -> None:
        super().__init__()
        self.model = model
        self.asked = False

    async def on_warmup(self) -> str:
        resource = await super().on_warmup()
        log.warning("gemini stand-in: loaded %s (load %d)", self.model, LOADS["llm"])
        return resource

    async def simple_response(  # type: ignore[override]
        self, text: str, participant: Participant | None = None
    ) -> AsyncIterator[LLMResponseDelta | LLMResponseFinal]:
        self.asked = True
        results = []
        for name in list(self.function_registry.functions):
            call = {"id": name, "name": name, "arguments_json": {"location": "Boulder"}}
            _, result, error = await self._run_one_tool(call, timeout_s=5.0)
            if error is not None:
                log.error("gemini stand-in: %s(location='Boulder') raised %r", name, error)
            else:
                log.warning("gemini stand-in: %s(location='Boulder') -> %r", name, result)
            results.append(str(result))
        yield LLMResponseFinal(
            text=" ".join(results) or "Something interesting.",
            latency_ms=245.5,
            time_to_first_token_ms=120.3,
            input_tokens=1500,
            output_tokens=800,
            model=self.model,
        )


class ElevenLabsTTS(TTS, Warmable[str]):
    """``elevenlabs.TTS()``: 200 ms of quiet tone per utterance; warm-able."""

    def __init__(self) -> None:
        super().__init__(provider_name="elevenlabs")
        self.resource: str | None = None

    async def on_warmup(self) -> str:
        LOADS["tts"] += 1
        log.warning("elevenlabs stand-in: loaded a voice (load %d)", LOADS["tts"])
        return "voice"

    def on_warmed_up(self, resource: str) -> None:
        HANDED["tts"] += 1
        self.resource = resource

    async def stream_audio(self, text: str, *args: Any, **kwargs: Any) -> PcmData:
        return pcm(0.2, 200)

    async def stop_audio(self) -> None:
        return None


class DeepgramSTT(LocalSTT):
    """``deepgram.STT(...)``: logs, once per caller, who it heard and whether it was warmed up."""

    def __init__(self, eager_turn_detection: bool = False) -> None:
        super().__init__()
        self.eager_turn_detection = eager_turn_detection
        self.heard_someone = asyncio.Event()

    async def on_warmup(self) -> str:
        resource = await super().on_warmup()
        log.warning("deepgram stand-in: loaded a model (load %d)", LOADS["stt"])
        return resource

    async def process_audio(self, pcm_data: PcmData, participant: Participant) -> None:
        first = participant.user_id not in self.heard
        await super().process_audio(pcm_data, participant)
        if first:
            log.warning(
                "deepgram stand-in: heard %s (warmed up: %s)",
                participant.user_id,
                self.resource is not None,
            )
        self.heard_someone.set()


gemini = SimpleNamespace(LLM=GeminiLLM)
elevenlabs = SimpleNamespace(TTS=ElevenLabsTTS)
deepgram = SimpleNamespace(STT=DeepgramSTT)
getstream = SimpleNamespace(Edge=StreamEdge)
