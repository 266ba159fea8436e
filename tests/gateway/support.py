"""Real deployments of the gateway for the tests: embedded, or standalone over gRPC.

``deploy(kind, launcher)`` comes from tests/support (``embedded``: the Runner's
own HTTP port; ``standalone``: a separate gateway app proxying to its gRPC port).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from agentplane.server import AgentLauncher
from tests.support import KINDS as KINDS
from tests.support import Deployment as Deployment
from tests.support import FakeAgent, GatewayAgents
from tests.support import deploy as deploy

# The shared fakes and harness (tests/support), under the names this folder uses.
Agent = FakeAgent
Agents = GatewayAgents


class CountingWatches:
    """Counts the launcher's live event watchers (to see cancellation reach it)."""

    def __init__(self, launcher: AgentLauncher) -> None:
        self.active = 0
        original = launcher.events.watch

        async def counting(
            session_id: str | None, after: int | None, epoch: str = "", live: Any = None
        ) -> AsyncIterator[Any]:
            self.active += 1
            try:
                async for event in original(session_id, after, epoch, live):
                    yield event
            finally:
                self.active -= 1

        launcher.events.watch = counting  # type: ignore[method-assign]
