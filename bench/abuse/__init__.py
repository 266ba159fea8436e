"""Bounded abuse scenarios: what a hostile client can do to one node.

Each ``bench/abuse/*_cases.py`` module exposes ``SCENARIOS``, a list of
:data:`Scenario` callables. A scenario starts its own server subprocess on
127.0.0.1 (:func:`served`), attacks it within fixed bounds of count and time
(never more than :data:`SCENARIO_TIMEOUT` seconds, traffic only to
127.0.0.1), measures (peak RSS of the server, other clients' latency
meanwhile) and returns an :class:`Outcome`. ``python -m bench.abuse``
(``./dev abuse``) runs every scenario of every such module and prints one line
per outcome.

A scenario::

    async def oversized_message() -> Outcome:
        async with served() as server:
            rss = RssPeak(server)
            ...  # attack, bounded
            return Outcome("grpc: oversized message", passed, {"peak_rss_mib": rss.peak_mib()})

    SCENARIOS: list[Scenario] = [oversized_message]
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bench.servers import Cores, ServerProcess, agentplane_server

HOST = "127.0.0.1"
# No scenario runs longer than this, however the server behaves.
SCENARIO_TIMEOUT = 60.0


@dataclass(frozen=True)
class Outcome:
    """What one scenario found: pass/fail, figures (name -> number), a note."""

    scenario: str
    passed: bool
    figures: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def line(self) -> str:
        shown = ", ".join(f"{name}={value:.4g}" for name, value in self.figures.items())
        verdict = "PASS" if self.passed else "FAIL"
        return f"{verdict} {self.scenario}: {shown}" + (f" ({self.note})" if self.note else "")


Scenario = Callable[[], Awaitable[Outcome]]


@contextlib.asynccontextmanager
async def served(
    log_dir: Path | None = None, nofile: int | None = None
) -> AsyncIterator[ServerProcess]:
    """``agentplane serve`` (the trivial bench agent) on 127.0.0.1, stopped at the end.

    ``server.endpoint`` has ``host``, ``http_port`` and ``grpc_port``;
    ``server.rss()`` and ``server.pid`` measure it. ``nofile``: the server's
    descriptor limit (``prlimit``), e.g. 1024 as on a default Linux account.
    """
    with contextlib.ExitStack() as stack:
        if log_dir is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="abuse-")))
        server = agentplane_server(Cores(None, None), log_dir)
        if nofile is not None:
            endpoint = server.endpoint
            argv = [
                "prlimit", f"--nofile={nofile}:{nofile}", "--",
                sys.executable, "-c", "from agentplane.server.cli import main; main()",
                "serve", "--agent", "bench.trivial_agent:make_launcher",
                "--host", HOST, "--port", str(endpoint.http_port),
                "--grpc-port", str(endpoint.grpc_port),
                "--agents-log-level", "WARNING", "--http-log-level", "WARNING",
            ]  # fmt: skip
            server = ServerProcess("agentplane", argv, endpoint, Cores(None, None), log_dir)
        await server.start()
        try:
            yield server
        finally:
            await server.stop()


class RssPeak:
    """Samples a server's RSS every ``interval`` seconds until closed; keeps the peak."""

    def __init__(self, server: ServerProcess, interval: float = 0.02) -> None:
        self._server = server
        self.start = server.rss()
        self.peak = self.start
        self._task = asyncio.get_running_loop().create_task(self._sample(interval))

    async def _sample(self, interval: float) -> None:
        while True:
            with contextlib.suppress(Exception):  # the process may be gone
                self.peak = max(self.peak, self._server.rss())
            await asyncio.sleep(interval)

    def start_mib(self) -> float:
        return self.start / 2**20

    def peak_mib(self) -> float:
        return self.peak / 2**20

    def growth_mib(self) -> float:
        return (self.peak - self.start) / 2**20

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


Good = TypeVar("Good")


@contextlib.asynccontextmanager
async def attacked(
    good_client: Callable[[ServerProcess], AbstractAsyncContextManager[Good]],
    log_dir: Path | None = None,
    nofile: int | None = None,
) -> AsyncIterator[tuple[ServerProcess, RssPeak, Good]]:
    """A served server, its RSS sampled, and a well-behaved client of it running meanwhile."""
    async with served(log_dir, nofile) as server:
        rss = RssPeak(server)
        try:
            async with good_client(server) as good:
                yield server, rss, good
        finally:
            await rss.aclose()


def read_logs(log_dir: Path) -> str:
    """Everything the server processes of a scenario logged."""
    return "".join(p.read_text(errors="replace") for p in log_dir.glob("*.log"))


def p99(samples: Sequence[float]) -> float:
    """The 99th percentile (nearest rank) of ``samples``; NaN when empty."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
