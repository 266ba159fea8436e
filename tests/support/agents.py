"""The fake agents of every test folder: one agent class, one factory, one join_call.

An agent stays in its call until the test lets it go (``agent.release``), so
no test depends on how long anything takes. Everything the launcher handed it
is kept for the test to read.

* launcher tests: ``FakeAgents`` is ``create_agent``, ``join_call`` the
  module function (per agent), ``make_launcher`` (conftest) builds launchers.
* server and gateway tests: ``FakeAgents.launcher(**options)`` builds a
  launcher with both, and ``context(session_id)`` hands the test a running
  session's SessionContext so it can emit on the agent's behalf.
* server processes (``agentplane serve --agent tests.support.agents:...``):
  ``drain_runner`` and ``slow_drain_runner`` below.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from agentplane.server import AgentLauncher, Runner, SessionContext, current_session


class FakeAgent:
    """An agent whose ``join_call`` waits until the test sets ``release``.

    join_call then returns (session COMPLETED), or raises ``error`` when set.
    With ``metadata["run_for"]`` (seconds) it also returns by itself after that
    long: only for agents in another process, which no test can release.
    """

    def __init__(self, **metadata: Any) -> None:
        self.metadata = metadata
        self.close_calls = 0
        self.joined = asyncio.Event()
        self.release = asyncio.Event()
        self.error: BaseException | None = None
        self.session: SessionContext | None = None
        self.current: SessionContext | None = None
        self.call: tuple[str, str] | None = None
        self.cancelled = False

    def close(self) -> None:
        self.close_calls += 1

    @property
    def closed(self) -> bool:
        return self.close_calls > 0


async def join_call(
    agent: FakeAgent, call_type: str, call_id: str, *, session: SessionContext, **_: Any
) -> None:
    """The fake agents' join_call: records what it was given, then waits for ``release``."""
    agent.session = session
    agent.current = current_session()
    agent.call = (call_type, call_id)
    agent.joined.set()
    run_for = agent.metadata.get("run_for")
    try:
        if isinstance(run_for, (int, float)):
            await asyncio.wait_for(agent.release.wait(), run_for)
        else:
            await agent.release.wait()
    except TimeoutError:
        pass  # ran for its time: done
    except asyncio.CancelledError:
        agent.cancelled = True
        raise
    if agent.error is not None:
        raise agent.error


class FakeAgents:
    """``create_agent`` (the instance is callable too), ``join_call`` and their launcher.

    ``agent_cls`` picks the agent class; ``errors`` makes the next calls of
    create_agent raise, one error per call, in order, and ``fail_with`` every
    call (a RuntimeError with that message). ``gate``, when set, holds every
    create_agent until the test sets it: a start stays "creating" exactly as
    long as the test wants. ``delay`` (or ``metadata["create_delay"]``, for
    Starts that come over the wire) makes create_agent take that long.

    ``observe`` and ``add`` are metrics each agent reports as it joins;
    ``options`` are the defaults of ``launcher()``. ``keep=False`` forgets
    agents and sessions as they end (for soak tests).
    """

    def __init__(
        self,
        agent_cls: type[FakeAgent] = FakeAgent,
        *,
        delay: float = 0.0,
        errors: list[BaseException] | None = None,
        gate: asyncio.Event | None = None,
        observe: Mapping[str, float] | None = None,
        add: Mapping[str, float] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.agent_cls = agent_cls
        self.delay = delay
        self.errors = list(errors or [])
        self.gate = gate
        self.fail_with: str | None = None
        self.observe = dict(observe or {})
        self.add = dict(add or {})
        self.options = dict(options or {})
        self.keep = True
        self.agents: list[FakeAgent] = []
        self.calls = 0
        self.cancelled = 0  # create_agent calls cancelled while they waited
        self.creating = 0  # create_agent calls under way
        self.kwargs: list[dict[str, Any]] = []
        self.contexts: dict[str, SessionContext] = {}
        self._joined: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def create_agent(self, **metadata: Any) -> FakeAgent:
        self.calls += 1
        self.creating += 1
        self.kwargs.append(metadata)
        try:
            delay = metadata.get("create_delay", self.delay)
            if isinstance(delay, (int, float)) and delay > 0:
                await asyncio.sleep(delay)
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.creating -= 1
        if self.errors:
            raise self.errors.pop(0)
        if self.fail_with is not None:
            raise RuntimeError(self.fail_with)
        agent = self.agent_cls(**metadata)
        if self.keep:
            self.agents.append(agent)
        return agent

    __call__ = create_agent

    async def join_call(
        self, agent: FakeAgent, call_type: str, call_id: str, *, session: SessionContext, **_: Any
    ) -> None:
        """``join_call`` above, after reporting this family's metrics."""
        sid = session.session_id
        self.contexts[sid] = session
        for name, value in self.observe.items():
            session.observe(name, value)
        for name, amount in self.add.items():
            session.add(name, amount)
        self._joined[sid].set()
        try:
            await join_call(agent, call_type, call_id, session=session)
        finally:
            if not self.keep:
                self.contexts.pop(sid, None)
                self._joined.pop(sid, None)

    def launcher(self, **options: Any) -> AgentLauncher:
        """An AgentLauncher of these agents: ``options`` over this family's defaults."""
        return AgentLauncher(self.create_agent, self.join_call, **{**self.options, **options})

    @property
    def last(self) -> FakeAgent:
        return self.agents[-1]

    async def context(self, session_id: str, within: float = 5.0) -> SessionContext:
        """The SessionContext of ``session_id``, once its agent joined the call."""
        await asyncio.wait_for(self._joined[session_id].wait(), within)
        return self.contexts[session_id]

    async def release(self, session_id: str) -> None:
        """Let the agent of ``session_id`` leave its call (the session COMPLETES)."""
        session = await self.context(session_id)
        for agent in self.agents:
            if agent.session is session:
                agent.release.set()
                return
        raise LookupError(f"no agent of session {session_id}")


async def joined(agent: FakeAgent, within: float = 5.0) -> SessionContext:
    """Wait until ``agent`` is in its call; answer its session context."""
    await asyncio.wait_for(agent.joined.wait(), within)
    assert agent.session is not None
    return agent.session


# The presets of each test folder.

#: tests/server: small timeouts; metrics events only when a test waits for them.
SERVER_OPTIONS: dict[str, Any] = {
    "agent_idle_timeout": None,
    "stop_timeout": 1.0,
    "create_agent_timeout": 3.0,
    "drain_timeout": 1.0,
    "metrics_event_interval": 30.0,  # keeps streams exact
}


class ServerAgents(FakeAgents):
    """The agents of the server tests: each reports one latency and one counter."""

    def __init__(self, agent_cls: type[FakeAgent] = FakeAgent, **kwargs: Any) -> None:
        kwargs.setdefault("observe", {"llm_latency_ms": 12.5})
        kwargs.setdefault("add", {"llm_output_tokens": 3})
        kwargs.setdefault("options", SERVER_OPTIONS)
        super().__init__(agent_cls, **kwargs)


class GatewayAgents(FakeAgents):
    """The agents of the gateway tests: the figures the HTTP examples show."""

    def __init__(self, agent_cls: type[FakeAgent] = FakeAgent, **kwargs: Any) -> None:
        kwargs.setdefault("observe", {"llm_latency_ms": 245.5})
        kwargs.setdefault("add", {"llm_input_tokens": 1500})
        kwargs.setdefault("options", {"drain_timeout": 2})
        super().__init__(agent_cls, **kwargs)


# Runners for server processes: ``agentplane serve --agent tests.support.agents:<name>``.


def _process_runner(drain_timeout: float) -> Runner:
    agents = FakeAgents()
    agents.keep = False  # a process serves until it is stopped
    return Runner(
        agents.launcher(drain_timeout=drain_timeout, agent_idle_timeout=None, stop_timeout=2.0)
    )


def drain_runner() -> Runner:
    """Sessions get 2 s to finish after the first SIGTERM."""
    return _process_runner(2.0)


def slow_drain_runner() -> Runner:
    """Sessions would get 30 s: only a second signal ends the process quickly."""
    return _process_runner(30.0)
