"""Fixtures of the launcher tests: launchers with small timeouts, shut down after each test.

A test that asks for ``clock`` runs on a virtual-clock event loop
(tests/support/clock.py): its timers fire when it advances the clock, in no
real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

from agentplane.core import AgentLauncher
from tests.support import FakeAgents, VirtualClockLoop, join_call

MakeLauncher = Callable[..., Awaitable[AgentLauncher]]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]

# Small enough to keep the suite fast, large enough not to flake on a busy host.
DEFAULTS: dict[str, Any] = {
    "agent_idle_timeout": None,
    "stop_timeout": 0.3,
    "create_agent_timeout": 2.0,
    "drain_timeout": 0.5,
    "metrics_event_interval": 0.05,
}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory]:
    """The event loop of each test here: a virtual clock for tests that ask for ``clock``."""
    if "clock" in getattr(item, "fixturenames", ()):
        return {"virtual_clock": VirtualClockLoop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture
async def clock() -> VirtualClockLoop:
    """The test's own event loop, whose clock moves only by ``await clock.advance(s)``."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualClockLoop)
    return loop


@pytest.fixture
def factory() -> FakeAgents:
    return FakeAgents()


@pytest.fixture
async def make_launcher(factory: FakeAgents) -> AsyncIterator[MakeLauncher]:
    """Build (and by default start) launchers; every one is shut down afterwards.

    ``await make_launcher(create_agent=..., join_call=..., start=False, **options)``;
    create_agent defaults to the ``factory`` fixture, join_call to
    ``tests.support.join_call``.
    """
    made: list[AgentLauncher] = []

    async def make(
        create_agent: Callable[..., Any] | None = None,
        join: Callable[..., Awaitable[None]] | None = None,
        *,
        start: bool = True,
        **options: Any,
    ) -> AgentLauncher:
        launcher = AgentLauncher(
            create_agent if create_agent is not None else factory,
            join if join is not None else join_call,
            **{**DEFAULTS, **options},
        )
        made.append(launcher)
        if start:
            await launcher.start()
        return launcher

    yield make
    for launcher in made:
        await asyncio.wait_for(launcher.shutdown(), 5)
