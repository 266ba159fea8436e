"""Event-loop lag is measured, and a task that blocks the loop is named (issue 12)."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest

from agentplane.ops.loop_monitor import LoopMonitor
from tests.support import FakeAgents, serving, wait_until


def _block(seconds: float) -> None:
    time.sleep(seconds)  # the behaviour under test: a synchronous hog, on purpose


async def test_a_blocking_task_is_named_with_its_session(caplog: pytest.LogCaptureFixture) -> None:
    lags: list[float] = []
    blocked: list[str] = []
    monitor = LoopMonitor(lags.append, interval=0.05, block_after=0.3,
                          on_blocked=lambda _s, who: blocked.append(who))  # fmt: skip

    async def hog() -> None:
        _block(0.8)

    with caplog.at_level(logging.WARNING, "agentplane.loop"):
        monitor.start()
        try:
            await wait_until(lambda: len(lags) >= 2)  # the timer runs
            await asyncio.get_running_loop().create_task(hog(), name="agentplane-session-s-42")
            await wait_until(lambda: any(lag >= 0.5 for lag in lags))
        finally:
            await monitor.aclose()
    (who,) = blocked
    assert "task agentplane-session-s-42 (session s-42)" in who
    assert "in _block" in who
    assert any("event loop blocked" in r.getMessage() and "s-42" in r.getMessage()
               for r in caplog.records)  # fmt: skip


async def test_lag_and_blocks_are_in_the_metrics() -> None:
    async with serving(FakeAgents().launcher(), http=False) as served:
        metrics = served.runner.operator_metrics
        await wait_until(lambda: b"agentplane_event_loop_lag_seconds_count" in metrics.exposition()
                         and _count(metrics.exposition()) >= 1)  # fmt: skip
        # The counter is exported from the start; its value is whatever this
        # host's load did to the loop (a busy CI host can block it for a second).
        assert re.search(
            rb"^agentplane_event_loop_blocked_total \d+\.0$", metrics.exposition(), re.M
        )


def _count(exposition: bytes) -> float:
    for line in exposition.decode().splitlines():
        if line.startswith("agentplane_event_loop_lag_seconds_count"):
            return float(line.split()[-1])
    return 0.0
