"""Code written for Vision Agents runs unchanged (issue 13, items 4 and 5).

* ``join_call(agent, call_type, call_id, **kwargs)`` that forwards its kwargs
  gets no ``session=`` (only a named ``session`` parameter does); the session
  is reachable with ``current_session()``, inside ``create_agent`` too.
* Start's metadata reaches ``create_agent`` only as keywords it takes; other
  keys are INVALID_ARGUMENT naming them, before any agent is created.
* ``AgentLauncher`` takes Vision Agents' arguments in Vision Agents' order;
  the maintenance interval is accepted and does nothing; a registry agentplane
  cannot use is refused at construction.
* ``video_track_override_path`` reaches the agent before ``join_call``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from agentplane.core import (
    AgentLauncher,
    AgentStartFailed,
    EndReason,
    InMemorySessionRegistry,
    InvalidArgument,
    SessionContext,
    current_session,
)
from tests.support import FakeAgent, FakeAgents, join_call, settle, wait_ended

from .conftest import MakeLauncher


class CallAgent(FakeAgent):
    """A Vision Agents-style agent: ``join(call)`` takes no keyword arguments."""

    def __init__(self, **metadata: Any) -> None:
        super().__init__(**metadata)
        self.joined_call: str | None = None
        self.override: str | None = None

    async def join(self, call: str) -> None:
        self.joined_call = call

    def set_video_track_override_path(self, path: str) -> None:
        self.override = path


# ----------------------------------------------------------- join_call's kwargs


async def test_join_call_forwarding_its_kwargs_completes(make_launcher: MakeLauncher) -> None:
    seen: dict[str, Any] = {}

    async def join(agent: CallAgent, call_type: str, call_id: str, **kwargs: Any) -> None:
        seen["kwargs"] = dict(kwargs)
        seen["current"] = current_session()
        await agent.join(call_id, **kwargs)  # TypeError if kwargs held session=

    launcher = await make_launcher(create_agent=CallAgent, join=join)
    record = await launcher.start_session("call-1")
    ended = await wait_ended(launcher, record.session_id)
    assert ended.end_reason is EndReason.COMPLETED, ended.error_message
    assert seen["kwargs"] == {}
    assert isinstance(seen["current"], SessionContext)
    assert seen["current"].session_id == record.session_id


@pytest.mark.parametrize("keyword_only", [True, False])
async def test_a_named_session_parameter_gets_the_context(
    make_launcher: MakeLauncher, keyword_only: bool
) -> None:
    seen: list[Any] = []

    async def join_kw(agent: Any, call_type: str, call_id: str, *, session: Any) -> None:
        seen.append(session)

    async def join_pos(agent: Any, call_type: str, call_id: str, session: Any = None) -> None:
        seen.append(session)

    join = join_kw if keyword_only else join_pos
    launcher = await make_launcher(create_agent=CallAgent, join=join)
    record = await launcher.start_session("call-1")
    await wait_ended(launcher, record.session_id)
    (session,) = seen
    assert isinstance(session, SessionContext)
    assert session.session_id == record.session_id


# ------------------------------------------------ current_session in create_agent


@pytest.mark.parametrize("is_async", [True, False])
async def test_current_session_inside_create_agent(
    make_launcher: MakeLauncher, is_async: bool
) -> None:
    made: list[tuple[SessionContext, bool]] = []

    def make(**metadata: Any) -> FakeAgent:
        session = current_session()
        session.observe("ignored_before_join", 1.0)  # reports count from join_call on
        session.emit("ignored", {})
        made.append((session, session.active))
        return FakeAgent(**metadata)

    async def make_async(**metadata: Any) -> FakeAgent:
        await asyncio.sleep(0)
        return make(**metadata)

    launcher = await make_launcher(create_agent=make_async if is_async else make)
    cursor = launcher.events.last_cursor
    record = await launcher.start_session("call-9", metadata={"voice": "alloy"})
    ((session, active),) = made
    assert session.session_id == record.session_id
    assert session.call_id == "call-9"
    assert session.metadata == {"voice": "alloy"}
    assert not active
    agent = launcher.agent_of(record.session_id)
    assert isinstance(agent, FakeAgent)
    await asyncio.wait_for(agent.joined.wait(), 5)
    assert agent.session is session  # the same context join_call gets
    assert session.active
    _, metrics = await launcher.get_metrics(record.session_id)
    assert "ignored_before_join__count" not in metrics
    kinds = [e.kind.name for e in launcher.events._ring if e is not None and e.cursor > cursor]
    assert "AGENT" not in kinds


async def test_current_session_outside_a_session_raises() -> None:
    with pytest.raises(LookupError):
        current_session()


# ---------------------------------------------------- metadata -> create_agent


async def test_metadata_for_a_create_agent_taking_none_is_invalid_argument(
    make_launcher: MakeLauncher,
) -> None:
    calls = 0

    async def create_agent() -> FakeAgent:  # as Vision Agents documents it
        nonlocal calls
        calls += 1
        return FakeAgent()

    launcher = await make_launcher(create_agent)
    with pytest.raises(InvalidArgument) as refused:
        await launcher.start_session("call", metadata={"voice": "x", "model": "y"})
    fields = [v.field for v in refused.value.violations]
    assert fields == ["metadata.voice", "metadata.model"]
    assert "create_agent takes no keyword argument 'voice'" in refused.value.message
    assert "it takes no keyword arguments" in refused.value.message
    assert calls == 0  # refused before any agent was created
    assert launcher.stats().in_flight == 0
    assert len(launcher._registry) == 0
    # Without metadata the same launcher starts sessions.
    record = await launcher.start_session("call")
    assert calls == 1
    assert record.metadata == {}


async def test_metadata_keys_must_be_named_parameters(make_launcher: MakeLauncher) -> None:
    got: list[dict[str, Any]] = []

    def create_agent(voice: str = "alloy", *, temperature: float = 0.5) -> FakeAgent:
        got.append({"voice": voice, "temperature": temperature})
        return FakeAgent()

    launcher = await make_launcher(create_agent)
    with pytest.raises(InvalidArgument) as refused:
        await launcher.start_session("call", metadata={"voice": "x", "colour": "red"})
    assert [v.field for v in refused.value.violations] == ["metadata.colour"]
    assert "it takes temperature, voice" in refused.value.message
    assert got == []
    await launcher.start_session("call", metadata={"voice": "echo", "temperature": 0.1})
    assert got == [{"voice": "echo", "temperature": 0.1}]


async def test_a_required_create_agent_keyword_must_be_given(
    make_launcher: MakeLauncher,
) -> None:
    class Agent(FakeAgent):  # a class is a create_agent too: its __init__ decides
        def __init__(self, api_key: str, **rest: Any) -> None:
            super().__init__(api_key=api_key, **rest)

    launcher = await make_launcher(Agent)
    with pytest.raises(InvalidArgument) as refused:
        await launcher.start_session("call", metadata={"other": 1})
    assert [v.field for v in refused.value.violations] == ["metadata.api_key"]
    record = await launcher.start_session("call", metadata={"api_key": "k", "other": 1})
    agent = launcher.agent_of(record.session_id)
    assert agent.metadata == {"api_key": "k", "other": 1}


async def test_kwargs_take_any_metadata(make_launcher: MakeLauncher, factory: FakeAgents) -> None:
    launcher = await make_launcher()
    await launcher.start_session("call", metadata={"anything": [1, 2], "at_all": {"a": 1}})
    assert factory.kwargs == [{"anything": [1, 2], "at_all": {"a": 1}}]


# ------------------------------------------------ AgentLauncher's arguments


def _create() -> FakeAgent:
    return FakeAgent()


def test_vision_agents_positional_order() -> None:
    # create_agent, join_call, agent_idle_timeout, max_concurrent_sessions,
    # max_sessions_per_call, max_session_duration_seconds, maintenance_interval, registry
    registry = InMemorySessionRegistry()
    launcher = AgentLauncher(_create, join_call, 120.0, 10, 2, 3600.0, 5.0, registry)
    assert launcher.idle_timeout == 120.0
    assert launcher.limits.max_concurrent_sessions == 10
    assert launcher.limits.max_sessions_per_call == 2
    assert launcher.max_session_duration == 3600.0
    assert launcher._registry is registry  # an empty registry is still the one given


def test_agentplane_keywords_still_work() -> None:
    launcher = AgentLauncher(
        create_agent=_create,
        join_call=join_call,
        max_concurrent_sessions=3,
        agent_idle_timeout=0,
        permits_per_minute=7,
        drain_timeout=1.0,
        registry=InMemorySessionRegistry(),
    )
    assert launcher.idle_timeout is None
    assert launcher.limits.max_concurrent_sessions == 3
    assert launcher.limits.permits_per_minute == 7
    assert launcher.drain_timeout == 1.0


@pytest.mark.parametrize("name", ["maintenance_interval", "cleanup_interval"])
def test_maintenance_intervals_are_accepted_and_do_nothing(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, "agentplane.launcher"):
        launcher = AgentLauncher(_create, join_call, **{name: 2.5})
    assert f"{name}=2.5 ignored" in caplog.text
    assert "no maintenance loop" in caplog.text
    assert launcher.idle_timeout == 60.0  # nothing else changed


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-1.0, ValueError), ("5", TypeError)]
)
def test_a_bad_maintenance_interval_is_refused_as_vision_agents_does(
    value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="maintenance_interval"):
        AgentLauncher(_create, join_call, maintenance_interval=value)


class VisionAgentsRegistry:
    """Stands in for ``vision_agents.core.SessionRegistry`` (its methods, its module)."""

    async def register(self, call_id: str, session_id: str) -> None: ...
    async def get(self, call_id: str, session_id: str) -> None: ...
    async def get_for_call(self, call_id: str) -> list[Any]:
        return []


VisionAgentsRegistry.__module__ = "vision_agents.core.agents.session_registry.registry"


@pytest.mark.parametrize("positional", [True, False])
def test_a_vision_agents_registry_is_refused_at_construction(positional: bool) -> None:
    registry = VisionAgentsRegistry()
    with pytest.raises(TypeError) as refused:
        if positional:
            AgentLauncher(_create, join_call, 60.0, None, None, None, 5.0, registry)
        else:
            AgentLauncher(_create, join_call, registry=registry)
    message = str(refused.value)
    assert "is not an agentplane SessionRegistry" in message
    assert "admit, update, release, forget" in message
    assert "Vision Agents' SessionRegistry" in message
    assert "InMemorySessionRegistry" in message


def test_any_other_unusable_registry_is_refused() -> None:
    with pytest.raises(TypeError, match=r"builtins\.dict is not an agentplane SessionRegistry"):
        AgentLauncher(_create, join_call, registry={})  # type: ignore[arg-type]


# ------------------------------------------------------ video track override


async def test_the_video_track_override_reaches_the_agent_before_join_call(
    make_launcher: MakeLauncher,
) -> None:
    seen: list[str | None] = []

    async def join(agent: CallAgent, call_type: str, call_id: str) -> None:
        seen.append(agent.override)

    launcher = await make_launcher(create_agent=CallAgent, join=join)
    record = await launcher.start_session("c", video_track_override_path="/tmp/clip.mp4")
    await wait_ended(launcher, record.session_id)
    assert seen == ["/tmp/clip.mp4"]


async def test_a_video_track_override_for_an_agent_without_the_method_fails_the_start(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher(max_concurrent_sessions=1)
    with pytest.raises(AgentStartFailed, match="no set_video_track_override_path"):
        await launcher.start_session("c", video_track_override_path="/tmp/clip.mp4")
    await settle()
    assert factory.last.closed  # the agent made for it was closed
    assert launcher.stats().in_flight == 0
    await launcher.start_session("c")  # the slot is free again
