"""Scriptable agents, factories and helpers shared by the launcher tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from agentplane.core import (
    AgentLauncher,
    EventKind,
    SessionContext,
    SessionEvent,
    SessionRecord,
    SessionState,
    current_session,
)


class Agent:
    """An agent whose ``join_call`` waits until the test lets it go.

    ``release`` ends ``join_call`` normally (or with ``error`` when set);
    everything join_call saw is kept for the test to inspect.
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


class Factory:
    """A ``create_agent`` that records what it made.

    ``delay`` makes it slow, ``errors`` makes its next calls raise (one error
    per call, in order), ``agent_cls`` picks the agent class.
    """

    def __init__(
        self,
        agent_cls: type[Agent] = Agent,
        *,
        delay: float = 0.0,
        errors: list[BaseException] | None = None,
    ) -> None:
        self.agent_cls = agent_cls
        self.delay = delay
        self.errors = list(errors or [])
        self.agents: list[Agent] = []
        self.calls = 0
        self.cancelled = 0
        self.kwargs: list[dict[str, Any]] = []

    async def __call__(self, **metadata: Any) -> Agent:
        self.calls += 1
        self.kwargs.append(metadata)
        if self.delay:
            try:
                await asyncio.sleep(self.delay)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.errors:
            raise self.errors.pop(0)
        agent = self.agent_cls(**metadata)
        self.agents.append(agent)
        return agent

    @property
    def last(self) -> Agent:
        return self.agents[-1]


async def join_call(agent: Agent, call_type: str, call_id: str, *, session: SessionContext) -> None:
    """The default join_call: waits for ``agent.release``."""
    agent.session = session
    agent.current = current_session()
    agent.call = (call_type, call_id)
    agent.joined.set()
    try:
        await agent.release.wait()
    except asyncio.CancelledError:
        agent.cancelled = True
        raise
    if agent.error is not None:
        raise agent.error


async def settle(rounds: int = 10) -> None:
    """Let already-scheduled callbacks and tasks run a few loop iterations."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def wait_until(predicate: Callable[[], bool], within: float = 2.0) -> None:
    """Poll ``predicate`` until true; fail the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.005)


async def wait_ended(
    launcher: AgentLauncher, session_id: str, within: float = 2.0
) -> SessionRecord:
    """Wait until the session is ENDED and answer its record."""
    deadline = time.monotonic() + within
    while True:
        record = await launcher.get_session(session_id)
        if record.state is SessionState.ENDED:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"session {session_id} did not end within {within} s")
        await asyncio.sleep(0.005)


async def joined(agent: Agent, within: float = 2.0) -> SessionContext:
    """Wait until join_call of ``agent`` runs; answer its session context."""
    await asyncio.wait_for(agent.joined.wait(), within)
    assert agent.session is not None
    return agent.session


async def collect(
    stream: AsyncGenerator[SessionEvent, None],
    until: Callable[[SessionEvent], bool] | None = None,
    limit: int | None = None,
) -> list[SessionEvent]:
    """Read ``stream`` until it ends, ``until(event)`` holds, or ``limit`` events."""
    out: list[SessionEvent] = []
    async with contextlib.aclosing(stream):
        async for event in stream:
            out.append(event)
            if until is not None and until(event):
                break
            if limit is not None and len(out) >= limit:
                break
    return out


def ended_event_of(session_id: str) -> Callable[[SessionEvent], bool]:
    def check(event: SessionEvent) -> bool:
        return event.kind is EventKind.ENDED and event.session_id == session_id

    return check


def kinds(events: list[SessionEvent]) -> list[EventKind]:
    return [event.kind for event in events]
