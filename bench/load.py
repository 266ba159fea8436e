"""Closed-loop load: N concurrent clients, each looping one body, bounded in time and count."""

from __future__ import annotations

import asyncio
import gc
import math
import resource
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from .clients import Driver, Transport

T = TypeVar("T")
MAX_ERRORS_LOGGED = 3


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@dataclass
class Recorder:
    """What the clients did while the window was open."""

    recording: bool = False
    stop: bool = False
    ops: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    async def call(self, name: str, awaitable: Awaitable[T]) -> T:
        began = time.perf_counter()
        result = await awaitable
        if self.recording:
            self.latencies[name].append(time.perf_counter() - began)
        return result

    def done(self) -> None:
        if self.recording:
            self.ops += 1

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERRORS_LOGGED:
            self.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])


@dataclass
class Window:
    """One measurement: a warm-up, then at most ``seconds`` or ``max_ops``."""

    seconds: float
    warmup: float = 0.5
    max_ops: int = 1_000_000


class Measurable(Protocol):
    """What a measurement reads of the servers under test (``ServerProcess``, or a group)."""

    def cpu_parts(self) -> dict[str, float]: ...
    def foreign_seconds(self) -> float: ...


@dataclass
class Measured:
    ops: int
    seconds: float
    server_cpu: float
    client_cpu: float
    foreign_cpu: float
    errors: int
    error_samples: list[str]
    latencies: dict[str, list[float]]
    # Server CPU seconds by process (one entry for a single server).
    cpu_parts: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else math.nan

    @property
    def cpu_ms_per_op(self) -> float:
        return 1000.0 * self.server_cpu / self.ops if self.ops else math.nan

    @property
    def server_busy(self) -> float:
        return self.server_cpu / self.seconds

    @property
    def foreign_busy(self) -> float:
        """Other processes' share of the server's core (noise from outside the run)."""
        return self.foreign_cpu / self.seconds

    @property
    def client_busy(self) -> float:
        return self.client_cpu / self.seconds

    def ms(self, name: str, q: float) -> float:
        return 1000.0 * percentile(self.latencies.get(name, []), q)

    def all_latencies(self) -> list[float]:
        return [v for values in self.latencies.values() for v in values]


Body = Callable[[Driver, Recorder, int, int], Awaitable[None]]


async def closed_loop(
    server: Measurable,
    transport: Transport,
    concurrency: int,
    body: Body,
    window: Window,
) -> Measured:
    """Run ``body(driver, recorder, worker, iteration)`` in ``concurrency`` loops."""
    drivers = [await transport.driver() for _ in range(concurrency)]
    rec = Recorder()

    async def worker(index: int, driver: Driver) -> None:
        iteration = 0
        while not rec.stop:
            try:
                await body(driver, rec, index, iteration)
            except Exception as exc:
                rec.failed(exc)
                await asyncio.sleep(0.01)
            iteration += 1

    tasks = [asyncio.create_task(worker(i, d)) for i, d in enumerate(drivers)]
    # The load generator's own collections would show up as server latency
    # (a full pass over the harness's heap takes milliseconds): collect now,
    # then not until the window is over.
    gc.collect()
    gc.disable()
    try:
        await asyncio.sleep(window.warmup)
        errors_before = rec.errors
        foreign0 = server.foreign_seconds()
        parts0, client0, t0 = server.cpu_parts(), client_cpu_seconds(), time.perf_counter()
        rec.recording = True
        deadline = t0 + window.seconds
        # Polling a deadline and a count: no event to wait for.
        while time.perf_counter() < deadline and rec.ops < window.max_ops:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        rec.recording = False
        t1, parts1, client1 = time.perf_counter(), server.cpu_parts(), client_cpu_seconds()
        foreign = server.foreign_seconds() - foreign0
        errors = rec.errors - errors_before
    finally:
        gc.enable()
        rec.stop = True
        _, pending = await asyncio.wait(tasks, timeout=30)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return Measured(
        ops=rec.ops,
        seconds=t1 - t0,
        server_cpu=sum(parts1.values()) - sum(parts0.values()),
        client_cpu=client1 - client0,
        foreign_cpu=max(foreign, 0.0),
        errors=errors,
        error_samples=rec.error_samples,
        latencies=dict(rec.latencies),
        cpu_parts={name: parts1[name] - parts0[name] for name in parts1},
    )
