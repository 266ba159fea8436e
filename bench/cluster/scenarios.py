"""The cluster scenarios, each measuring one deployment (1 node alone, 1 or 3 nodes on Redis).

Every scenario answers a flat ``{key: value}`` sample, as ``bench/scenarios.py``
does; keys read ``<scenario>/<variant>/<figure>`` (latencies in ms, CPU in ms
per operation, Redis commands per operation, memory in bytes).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentplane.cluster import ClusterKeys

from ..clients import Driver, Transport, open_transport
from ..load import Measured, Recorder, Window, closed_loop, percentile
from ..scenarios import Sample, load_figures
from ..servers import ServerProcess, core_busy_seconds
from .redis_server import CommandCounter, RedisServer, memory_usage, used_memory

PREFIX = "bench:"  # the cluster's Redis key prefix
GRPC = "grpcio"  # the gRPC client of every cluster scenario (grpc.aio, one channel per node)


@dataclass(frozen=True)
class ClusterConfig:
    """Sizes and durations of one cluster run (the defaults are the full run)."""

    runs: int = 5
    nodes: int = 3
    clients: int = 16
    throughput: Window = field(default_factory=lambda: Window(3.0, warmup=0.5, max_ops=20_000))
    read_clients: int = 50
    read: Window = field(default_factory=lambda: Window(3.0, warmup=0.5))
    serial: Window = field(default_factory=lambda: Window(2.0, warmup=0.2))
    close_count: int = 100  # Start then Close, one at a time, per variant
    ops_count: int = 200  # operations per Redis-commands phase
    idle_seconds: float = 5.0
    events: int = 50
    event_interval_ms: float = 20.0
    held: int = 1_000
    # A node's first second after it is ready costs it some CPU: measure after it.
    settle_seconds: float = 2.0


QUICK = ClusterConfig(
    runs=1,
    clients=8,
    throughput=Window(0.4, warmup=0.1, max_ops=5_000),
    read_clients=16,
    read=Window(0.4, warmup=0.1),
    serial=Window(0.3, warmup=0.1),
    close_count=5,
    ops_count=10,
    idle_seconds=0.5,
    events=10,
    held=50,
    settle_seconds=0.5,
)


class Deployment:
    """The processes under test: agentplane nodes, maybe a redis-server, on the servers' core.

    Measured as one: its CPU is every process's (by process in ``cpu_parts``:
    ``node0``, ``node1``, ..., ``redis``) and the CPU others took on that core
    is what no process of it used.
    """

    def __init__(self, nodes: list[ServerProcess], redis: RedisServer | None) -> None:
        self.nodes = nodes
        self.redis = redis
        self.core = nodes[0].core

    def cpu_parts(self) -> dict[str, float]:
        parts = {node.name: node.cpu_seconds() for node in self.nodes}
        if self.redis is not None:
            parts["redis"] = self.redis.cpu_seconds()
        return parts

    def precise_cpu_parts(self) -> dict[str, float]:
        """As ``cpu_parts``, to the nanosecond (the scheduler's run time of every thread)."""
        parts = {node.name: thread_cpu_seconds(node.pid) for node in self.nodes}
        if self.redis is not None:
            parts["redis"] = thread_cpu_seconds(self.redis.pid)
        return parts

    def foreign_seconds(self) -> float:
        if self.core is None:
            return 0.0
        return max(core_busy_seconds(self.core) - sum(self.cpu_parts().values()), 0.0)

    def transport(self, index: int, kind: str = GRPC) -> Transport:
        return open_transport(kind, self.nodes[index].endpoint)


def thread_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid``'s live threads, from /proc/<pid>/task/*/schedstat (nanoseconds).

    /proc's user and system times count in clock ticks (10 ms): too coarse for
    a phase of a few hundred operations of some tens of microseconds each.
    """
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return total / 1e9


class _Spread:
    """Clients of every node: each call goes to the next node of a shared counter
    (``per_call``, an L7 balancer), or each client keeps one node (a connection's
    balancer, as gRPC behind an L4 balancer)."""

    def __init__(self, dep: Deployment, per_call: bool, kind: str = GRPC) -> None:
        self._transports = [dep.transport(i, kind) for i in range(len(dep.nodes))]
        self._per_call = per_call
        self._clients = 0
        self.turn = 0

    async def driver(self) -> Driver:
        drivers = [await t.driver() for t in self._transports]
        if self._per_call:
            return _PerCall(drivers, self)
        self._clients += 1
        return drivers[(self._clients - 1) % len(drivers)]

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()


class _PerCall:
    def __init__(self, drivers: list[Driver], spread: _Spread) -> None:
        self._drivers = drivers
        self._spread = spread

    def _next(self) -> Driver:
        self._spread.turn += 1
        return self._drivers[self._spread.turn % len(self._drivers)]

    async def start(self, call_id: str, metadata: dict[str, Any] | None = None) -> str:
        return await self._next().start(call_id, metadata)

    async def get(self, session_id: str, call_id: str) -> None:
        await self._next().get(session_id, call_id)

    async def metrics(self, session_id: str, call_id: str) -> None:
        await self._next().metrics(session_id, call_id)

    async def close(self, session_id: str, call_id: str) -> None:
        await self._next().close(session_id, call_id)


def _call_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _figures(prefix: str, measured: Measured, calls: tuple[str, ...]) -> Sample:
    out = load_figures(prefix, measured, calls)
    for part, seconds in measured.cpu_parts.items():
        out[f"{prefix}/cpu_ms/{part}"] = 1000 * seconds / measured.ops if measured.ops else 0.0
    if measured.errors:
        print(f"    ! {prefix}: {measured.errors} errors, e.g. {measured.error_samples[:2]}")
    return out


def _latencies(prefix: str, values: list[float]) -> Sample:
    return {
        f"{prefix}/p50": 1000 * percentile(values, 0.50),
        f"{prefix}/p99": 1000 * percentile(values, 0.99),
        f"{prefix}/max": 1000 * percentile(values, 1.0),
    }


async def close_all(dep: Deployment, sessions: list[tuple[str, str]], clients: int = 32) -> None:
    """Close ``sessions`` (untimed), ``clients`` at a time, through any node."""
    spread = _Spread(dep, per_call=False)
    pending = list(sessions)
    try:
        drivers = [await spread.driver() for _ in range(clients)]

        async def worker(driver: Driver) -> None:
            while pending:
                session_id, call_id = pending.pop()
                await driver.close(session_id, call_id)

        await asyncio.gather(*(worker(d) for d in drivers))
    finally:
        await spread.aclose()


async def start_many(dep: Deployment, count: int, clients: int = 16) -> list[tuple[str, str]]:
    """Start ``count`` sessions spread over the nodes, ``clients`` at a time."""
    spread = _Spread(dep, per_call=True)
    started: list[tuple[str, str]] = []
    remaining = count
    try:
        drivers = [await spread.driver() for _ in range(clients)]

        async def worker(driver: Driver) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                call_id = _call_id("held")
                started.append((await driver.start(call_id), call_id))

        await asyncio.gather(*(worker(d) for d in drivers))
    finally:
        await spread.aclose()
    return started


# ------------------------------------------------------------ 1. Close latency


async def close_latency(dep: Deployment, cfg: ClusterConfig) -> Sample:
    """Start on node 0, then Close through node 0 (same) or node 1 (cross), one at a time.

    Variants alternate session by session (gRPC and the HTTP ``DELETE``), so
    drift hits them alike. The Start is timed too (one at a time, on node 0).
    """
    wheres = ("same", "cross") if len(dep.nodes) > 1 else ("same",)
    variants = [(where, via) for via in ("grpc", "http") for where in wheres]
    starter = dep.transport(0)
    closers = {
        (where, via): dep.transport(0 if where == "same" else 1, GRPC if via == "grpc" else "http")
        for where, via in variants
    }
    starts: list[float] = []
    closes: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    try:
        start_driver = await starter.driver()
        drivers = {v: await t.driver() for v, t in closers.items()}
        for _ in range(cfg.close_count):
            for variant in variants:
                call_id = _call_id("close")
                began = time.perf_counter()
                session_id = await start_driver.start(call_id)
                starts.append(time.perf_counter() - began)
                began = time.perf_counter()
                await drivers[variant].close(session_id, call_id)
                closes[variant].append(time.perf_counter() - began)
    finally:
        await starter.aclose()
        for transport in closers.values():
            await transport.aclose()
    out = _latencies("start/serial", starts)
    for (where, via), values in closes.items():
        out.update(_latencies(f"close/{where}/{via}", values))
    return out


# --------------------------------------------------------------- 2. throughput


async def starts(dep: Deployment, cfg: ClusterConfig) -> Sample:
    """``clients`` concurrent clients looping Start, spread call by call over the nodes."""
    started: list[tuple[str, str]] = []

    async def body(driver: Driver, rec: Recorder, worker: int, n: int) -> None:
        call_id = _call_id("start")
        started.append((await rec.call("start", driver.start(call_id)), call_id))
        rec.done()

    spread = _Spread(dep, per_call=True)
    try:
        measured = await closed_loop(dep, spread, cfg.clients, body, cfg.throughput)
    finally:
        await spread.aclose()
    await close_all(dep, started)
    return _figures("starts", measured, ("start",))


async def lifecycles(dep: Deployment, cfg: ClusterConfig, per_call: bool) -> Sample:
    """``clients`` concurrent clients looping Start -> Get -> Close over the nodes."""

    async def body(driver: Driver, rec: Recorder, worker: int, n: int) -> None:
        call_id = _call_id("life")
        session_id = await rec.call("start", driver.start(call_id))
        await rec.call("get", driver.get(session_id, call_id))
        await rec.call("close", driver.close(session_id, call_id))
        rec.done()

    name = "one" if len(dep.nodes) == 1 else ("rr" if per_call else "sticky")
    spread = _Spread(dep, per_call=per_call)
    try:
        measured = await closed_loop(dep, spread, cfg.clients, body, cfg.throughput)
    finally:
        await spread.aclose()
    return _figures(f"lifecycle/{name}", measured, ("start", "get", "close"))


# ---------------------------------------------------------------------- 3. Get


async def gets(dep: Deployment, cfg: ClusterConfig, via: int, owner: int = 0) -> Sample:
    """Get of a session running on node ``owner``, through node ``via``: one at a time, then
    ``read_clients`` concurrent."""
    name = "owner" if via == owner else "other"
    starter = dep.transport(owner)
    try:
        call_id = _call_id("get")
        session_id = await (await starter.driver()).start(call_id)
    finally:
        await starter.aclose()

    async def body(driver: Driver, rec: Recorder, worker: int, n: int) -> None:
        await rec.call("get", driver.get(session_id, call_id))
        rec.done()

    out: Sample = {}
    for label, clients, window in (
        ("serial", 1, cfg.serial),
        (f"c{cfg.read_clients}", cfg.read_clients, cfg.read),
    ):
        transport = dep.transport(via)
        try:
            measured = await closed_loop(dep, transport, clients, body, window)
        finally:
            await transport.aclose()
        prefix = f"get/{name}/{label}"
        out.update(_figures(prefix, measured, ()))
        values = measured.latencies.get("get", [])
        out.update(_latencies(prefix, values))
    await close_all(dep, [(session_id, call_id)])
    return out


# ----------------------------------------------------- 4. Redis commands, memory


@dataclass
class _Phase:
    """One bounded phase of operations: what it ran, and how long it took."""

    seconds: float = 0.0
    redis_cpu: float = 0.0
    nodes_cpu: float = 0.0
    counted: Counter[tuple[str, str]] = field(default_factory=Counter)


Op = Callable[[int], Awaitable[None]]


class RedisCommands:
    """Redis commands and CPU per operation, in bounded phases of one operation at a time.

    Each phase runs twice: once to read the CPU of Redis and the nodes (from
    /proc), once under ``MONITOR`` to count commands, by origin (sent by a
    node, or run inside a Lua script). The background (heartbeats, the event
    followers' blocking reads) is measured alone first; its rate times the
    phase's duration is taken off each phase, command by command.
    """

    def __init__(self, dep: Deployment, client: Any, counter: CommandCounter) -> None:
        assert dep.redis is not None
        self.dep = dep
        self.redis = dep.redis
        self.client = client
        self.counter = counter
        self.idle: _Phase | None = None
        # Per phase: commands per operation, Redis and nodes' CPU seconds per operation.
        self._per_op: dict[str, tuple[dict[tuple[str, str], float], float, float]] = {}

    def _cpu(self) -> tuple[float, float]:
        parts = self.dep.precise_cpu_parts()
        redis = parts.pop("redis")
        return redis, sum(parts.values())

    async def phase(self, count: int, op: Op, monitored: bool) -> _Phase:
        result = _Phase()
        redis0, nodes0 = self._cpu()
        began = time.perf_counter()
        if monitored:
            async with self.counter.count(self.client) as counted:
                for n in range(count):
                    await op(n)
            result.counted = counted
        else:
            for n in range(count):
                await op(n)
        result.seconds = time.perf_counter() - began
        redis1, nodes1 = self._cpu()
        result.redis_cpu, result.nodes_cpu = redis1 - redis0, nodes1 - nodes0
        return result

    async def measure_idle(self, seconds: float) -> Sample:
        async def wait(_: int) -> None:
            await asyncio.sleep(seconds)

        cpu = await self.phase(1, wait, monitored=False)
        counted = await self.phase(1, wait, monitored=True)
        cpu.counted = counted.counted
        cpu.seconds = (cpu.seconds + counted.seconds) / 2
        self.idle = cpu
        # Per node and second.
        per = len(self.dep.nodes) * cpu.seconds
        out = self._counts("ops/idle", cpu.counted, per)
        out["ops/idle/redis_us"] = 1e6 * cpu.redis_cpu / per
        out["ops/idle/nodes_us"] = 1e6 * cpu.nodes_cpu / per
        return out

    async def measure(
        self, name: str, count: int, op: Op, per: int | None = None, less: str | None = None
    ) -> Sample:
        """``op(n)`` ``count`` times, unmonitored then monitored; figures per ``per`` ops.

        ``less``: a phase measured before, one operation of which each ``op``
        also ran (the event phase's Start), taken off.
        """
        assert self.idle is not None
        idle = self.idle
        cpu = await self.phase(count, op, monitored=False)
        monitored = await self.phase(count, lambda n: op(count + n), monitored=True)
        background = {k: v * monitored.seconds / idle.seconds for k, v in idle.counted.items()}
        redis_cpu = cpu.redis_cpu - idle.redis_cpu * cpu.seconds / idle.seconds
        nodes_cpu = cpu.nodes_cpu - idle.nodes_cpu * cpu.seconds / idle.seconds
        if less is not None:
            counts, redis_s, nodes_s = self._per_op[less]
            for key, value in counts.items():
                background[key] = background.get(key, 0.0) + value * count
            redis_cpu -= redis_s * count
            nodes_cpu -= nodes_s * count
        self._per_op[name] = (
            {k: max(v - background.get(k, 0.0), 0.0) / count for k, v in monitored.counted.items()},
            redis_cpu / count,
            nodes_cpu / count,
        )
        per = per or count
        out = self._counts(f"ops/{name}", monitored.counted, per, background)
        out[f"ops/{name}/redis_us"] = 1e6 * max(redis_cpu, 0.0) / per
        out[f"ops/{name}/nodes_us"] = 1e6 * max(nodes_cpu, 0.0) / per
        return out

    @staticmethod
    def _counts(
        prefix: str,
        counted: Counter[tuple[str, str]],
        per: float,
        background: dict[tuple[str, str], float] | None = None,
    ) -> Sample:
        out: Sample = {f"{prefix}/node": 0.0, f"{prefix}/lua": 0.0}
        for key in set(counted) | set(background or {}):
            origin, command = key
            value = counted.get(key, 0) - (background or {}).get(key, 0.0)
            value = max(value, 0.0) / per
            if value < 0.005:
                continue
            out[f"{prefix}/{origin}/{command}"] = value
            out[f"{prefix}/{origin}"] += value
        return out


async def redis_commands(dep: Deployment, cfg: ClusterConfig) -> Sample:
    """Commands per Start, Get, Metrics, Close and event, and per node and second idle."""
    import redis.asyncio as aioredis

    assert dep.redis is not None
    client = aioredis.Redis.from_url(dep.redis.url)
    counter = CommandCounter(dep.redis.port)
    other = 1 if len(dep.nodes) > 1 else None
    transports = [dep.transport(i) for i in range(len(dep.nodes))]
    await counter.open()
    out: Sample = {}
    try:
        drivers = [await t.driver() for t in transports]
        phases = RedisCommands(dep, client, counter)
        out.update(await phases.measure_idle(cfg.idle_seconds))
        k = cfg.ops_count
        call_ids = [_call_id("ops") for _ in range(2 * k)]
        session_ids: list[str] = []

        async def start(n: int) -> None:
            session_ids.append(await drivers[0].start(call_ids[n]))

        out.update(await phases.measure("start", k, start))
        await asyncio.sleep(0.2)  # the last Start's event is appended and read
        target, target_call = session_ids[0], call_ids[0]

        def reader(index: int, metrics: bool = False) -> Op:
            async def op(n: int) -> None:
                if metrics:
                    await drivers[index].metrics(target, target_call)
                else:
                    await drivers[index].get(target, target_call)

            return op

        out.update(await phases.measure("get_owner", k, reader(0)))
        if other is not None:
            out.update(await phases.measure("get_other", k, reader(other)))
            out.update(await phases.measure("metrics_other", k, reader(other, metrics=True)))

        def closer(index: int, offset: int) -> Op:
            async def op(n: int) -> None:
                # Sessions offset .. offset + 2k - 1 of the ones started above.
                i = (offset + n) % len(session_ids)
                await drivers[index].close(session_ids[i], call_ids[i])

            return op

        half = k // 2 if other is not None else k
        out.update(await phases.measure("close_same", half, closer(0, 0)))
        if other is not None:
            out.update(await phases.measure("close_cross", half, closer(other, 2 * half)))
        await asyncio.sleep(0.2)
        emitters: list[tuple[str, str]] = []

        async def emit(n: int) -> None:
            # One session emits cfg.events events; the phase lasts until all are read.
            call_id = _call_id("events")
            metadata = {"emit_every_ms": cfg.event_interval_ms, "emit_count": cfg.events}
            emitters.append((await drivers[0].start(call_id, metadata), call_id))
            await asyncio.sleep(cfg.events * cfg.event_interval_ms / 1000 + 0.3)

        out.update(await phases.measure("event", 1, emit, per=cfg.events, less="start"))
        closed = 4 * half if other is not None else 2 * k
        await close_all(dep, emitters + list(zip(session_ids, call_ids, strict=True))[closed:])
    finally:
        for transport in transports:
            await transport.aclose()
        await counter.aclose()
        await client.aclose()
    return out


async def memory(dep: Deployment, cfg: ClusterConfig) -> Sample:
    """Redis memory per held session (``INFO memory`` growth over ``held`` sessions), what
    one session's keys take (``MEMORY USAGE``), and what stays per ended session."""
    import redis.asyncio as aioredis

    assert dep.redis is not None
    keys = ClusterKeys(PREFIX)
    client = aioredis.Redis.from_url(dep.redis.url)
    try:
        before = await used_memory(client)
        stream0 = await memory_usage(client, keys.events)
        sessions = await start_many(dep, cfg.held)
        await asyncio.sleep(0.3)  # the Start events are appended
        held = await used_memory(client)
        stream1 = await memory_usage(client, keys.events)
        session_id, call_id = sessions[0]
        record = await memory_usage(client, keys.record(session_id))
        call = await memory_usage(client, keys.call(call_id))
        await close_all(dep, sessions)
        await asyncio.sleep(0.3)
        ended = await used_memory(client)
        stream2 = await memory_usage(client, keys.events)
        ended_record = await memory_usage(client, keys.record(session_id))
        events = int(await client.xlen(keys.events))
    finally:
        await client.aclose()
    n = len(sessions)
    return {
        "memory/held/bytes_per_session": (held - before) / n,
        "memory/held/stream_bytes_per_session": (stream1 - stream0) / n,
        "memory/held/record_bytes": float(record),
        "memory/held/call_bytes": float(call),
        "memory/ended/bytes_per_session": (ended - before) / n,
        "memory/ended/stream_bytes_per_session": (stream2 - stream0) / n,
        "memory/ended/record_bytes": float(ended_record),
        "memory/sessions": float(n),
        "memory/stream/bytes_per_event": stream2 / events if events else math.nan,
        "memory/stream/events": float(events),
    }
