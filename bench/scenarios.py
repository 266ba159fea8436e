"""The six scenarios of the suite, each measuring one server process.

Every scenario answers a flat ``{key: value}`` sample; keys read
``<scenario>/<variant>/<figure>`` (latencies in ms, CPU in ms or % of one
core, memory in KiB). ``report.py`` pairs them across servers and rounds.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpclib.client import Channel

from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.clients.grpcio import session_service_pb2_grpc
from agentplane.clients.grpcio.session_service_grpc import SessionServiceStub

from .clients import Driver, open_transport
from .h2client import GrpcWatchers
from .httpclient import HttpConnection, HttpError, StreamWatcher
from .load import Measured, Recorder, Window, client_cpu_seconds, closed_loop, percentile
from .servers import EmptyProcess, ServerProcess

Sample = dict[str, float]
CALLS = ("start", "get", "metrics", "close")
WATCHERS_PER_CHANNEL = 25  # below h2's default of 100 concurrent streams


@dataclass(frozen=True)
class Config:
    """Sizes and durations of one suite run (the defaults are the full run)."""

    runs: int = 5
    lifecycle_clients: int = 16
    lifecycle: Window = field(default_factory=lambda: Window(3.0, warmup=0.5))
    read_clients: int = 50
    read: Window = field(default_factory=lambda: Window(3.0, warmup=0.5))
    held_steps: tuple[int, ...] = (100, 1_000, 10_000)
    idle_seconds: tuple[float, ...] = (5.0, 5.0, 10.0)
    stall_seconds: tuple[float, ...] = (3.0, 3.0, 10.0)
    held_read: Window = field(default_factory=lambda: Window(3.0, warmup=0.5))
    fanout_watchers: tuple[int, ...] = (100, 1_000)
    fanout_events: int = 20
    fanout_interval_ms: float = 200.0
    start_count: int = 200
    noop: Window = field(default_factory=lambda: Window(3.0, warmup=0.5))


QUICK = Config(
    runs=1,
    lifecycle_clients=8,
    lifecycle=Window(0.5, warmup=0.2),
    read_clients=16,
    read=Window(0.5, warmup=0.1),
    held_steps=(20, 100),
    idle_seconds=(0.3, 0.3),
    stall_seconds=(0.3, 0.3),
    held_read=Window(0.3, warmup=0.1),
    fanout_watchers=(10,),
    fanout_events=3,
    fanout_interval_ms=30.0,
    start_count=10,
    noop=Window(0.5, warmup=0.1),
)


def _call_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def load_figures(prefix: str, measured: Measured, unit_calls: tuple[str, ...]) -> Sample:
    out: Sample = {
        f"{prefix}/rate": measured.rate,
        f"{prefix}/cpu_ms": measured.cpu_ms_per_op,
        f"{prefix}/server_busy_pct": 100.0 * measured.server_busy,
        f"{prefix}/client_busy_pct": 100.0 * measured.client_busy,
        f"{prefix}/foreign_pct": 100.0 * measured.foreign_busy,
        f"{prefix}/errors": float(measured.errors),
    }
    for name in unit_calls:
        out[f"{prefix}/p50/{name}"] = measured.ms(name, 0.50)
        out[f"{prefix}/p99/{name}"] = measured.ms(name, 0.99)
    return out


def _report_errors(label: str, measured: Measured) -> None:
    if measured.errors:
        print(f"    ! {label}: {measured.errors} errors, e.g. {measured.error_samples[:2]}")


# ------------------------------------------------------------ 1. lifecycles


async def lifecycles(server: ServerProcess, kind: str, cfg: Config) -> Sample:
    """N clients each looping Start -> Get -> Metrics -> Close."""

    async def body(driver: Driver, rec: Recorder, worker: int, n: int) -> None:
        call_id = f"life-{worker}-{n}-{uuid.uuid4().hex[:6]}"
        session_id = await rec.call("start", driver.start(call_id))
        await rec.call("get", driver.get(session_id, call_id))
        await rec.call("metrics", driver.metrics(session_id, call_id))
        await rec.call("close", driver.close(session_id, call_id))
        rec.done()

    transport = open_transport(kind, server.endpoint)
    try:
        measured = await closed_loop(server, transport, cfg.lifecycle_clients, body, cfg.lifecycle)
    finally:
        await transport.aclose()
    _report_errors(f"lifecycles {kind}", measured)
    return load_figures(f"lifecycle/{kind}", measured, CALLS)


# ----------------------------------------------------------------- 2. reads


async def reads(
    server: ServerProcess,
    kind: str,
    clients: int,
    window: Window,
    target: tuple[str, str] | None = None,
    prefix: str | None = None,
) -> Sample:
    """``clients`` concurrent Gets of one session (started here unless given)."""
    transport = open_transport(kind, server.endpoint)
    try:
        if target is None:
            first = await transport.driver()
            call_id = _call_id("read")
            target = (await first.start(call_id), call_id)
        session_id, call_id = target

        async def body(driver: Driver, rec: Recorder, worker: int, n: int) -> None:
            await rec.call("get", driver.get(session_id, call_id))
            rec.done()

        measured = await closed_loop(server, transport, clients, body, window)
    finally:
        await transport.aclose()
    label = prefix or f"read/{kind}"
    _report_errors(label, measured)
    out = load_figures(label, measured, ())
    out[f"{label}/p50"] = measured.ms("get", 0.50)
    out[f"{label}/p99"] = measured.ms("get", 0.99)
    out[f"{label}/max"] = measured.ms("get", 1.0)
    return out


# ---------------------------------------------------------- 3. held sessions


async def start_many(
    server: ServerProcess, kind: str, count: int, clients: int = 16
) -> list[tuple[str, str]]:
    """Start ``count`` sessions with ``clients`` concurrent Starts; answer (id, call)."""
    transport = open_transport(kind, server.endpoint)
    started: list[tuple[str, str]] = []
    remaining = count

    async def worker(driver: Driver) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            call_id = _call_id("held")
            started.append((await driver.start(call_id), call_id))

    try:
        drivers = [await transport.driver() for _ in range(clients)]
        await asyncio.gather(*(worker(d) for d in drivers))
    finally:
        await transport.aclose()
    return started


async def held(server: ServerProcess, start_kind: str, read_kind: str, cfg: Config) -> Sample:
    """K idle sessions held: memory, idle CPU, Get latency, event-loop stalls."""
    out: Sample = {}
    await asyncio.sleep(1.0)
    baseline = server.rss()
    empty = EmptyProcess(server.core)
    try:
        await _held_steps(server, start_kind, read_kind, cfg, out, baseline, empty)
    finally:
        empty.close()
    return out


async def _held_steps(
    server: ServerProcess,
    start_kind: str,
    read_kind: str,
    cfg: Config,
    out: Sample,
    baseline: int,
    empty: EmptyProcess,
) -> None:
    target: tuple[str, str] | None = None
    total = 0
    for step, k in enumerate(cfg.held_steps):
        began = time.perf_counter()
        new = await start_many(server, start_kind, k - total)
        out[f"held/{k}/start_rate"] = len(new) / (time.perf_counter() - began)
        total = k
        target = target or new[0]
        await asyncio.sleep(1.0)
        out[f"held/{k}/rss_kib_per_session"] = (server.rss() - baseline) / 1024 / k
        out[f"held/{k}/rss_mib"] = server.rss() / 2**20
        idle = cfg.idle_seconds[step]
        foreign0 = server.foreign_seconds()
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        empty0 = empty.cpu_seconds()
        await asyncio.sleep(idle)
        elapsed = time.perf_counter() - t0
        out[f"held/{k}/idle_cpu_pct"] = 100.0 * (server.cpu_seconds() - cpu0) / elapsed
        out[f"held/{k}/empty_cpu_pct"] = 100.0 * (empty.cpu_seconds() - empty0) / elapsed
        out[f"held/{k}/idle_foreign_pct"] = 100.0 * (server.foreign_seconds() - foreign0) / elapsed
        stall = Window(cfg.stall_seconds[step], warmup=0.1)
        own_gc = server.name == "agentplane"  # its /metrics times every collection
        gc0 = await _prometheus(server) if own_gc else {}
        one = await reads(server, read_kind, 1, stall, target, prefix=f"held/{k}/serial")
        out.update(one)
        if own_gc:
            out.update(_full_gc(gc0, await _prometheus(server), f"held/{k}/serial"))
        many = await reads(
            server, read_kind, cfg.read_clients, cfg.held_read, target, prefix=f"held/{k}/get50"
        )
        out.update(many)
        print(
            f"    held {k}: {out[f'held/{k}/rss_kib_per_session']:.2f} KiB/session, "
            f"idle {out[f'held/{k}/idle_cpu_pct']:.2f}% CPU, "
            f"serial max {out[f'held/{k}/serial/max']:.1f} ms, "
            f"Get@{cfg.read_clients} p99 {out[f'held/{k}/get50/p99']:.1f} ms",
            flush=True,
        )


# ------------------------------------------------------------- 4. fan-out

_TIME = re.compile(rb'"time":"([^"]+)"')


# How fan-out watchers receive: grpclib, raw HTTP/2 (bench/h2client.py: a client that keeps up),
# grpcio (grpc.aio, its C core), the HTTP gateway's NDJSON.
FANOUT_VIAS = ("grpc", "grpc-h2", "grpcio", "http")
_STREAM_EVENTS = "/agentplane.v1.SessionService/StreamEvents"


class _Watchers:
    """``count`` watchers of every session, by one of ``FANOUT_VIAS``."""

    def __init__(self, server: ServerProcess, count: int, call_id: str) -> None:
        self.server = server
        self.count = count
        self.call_id = call_id
        self.delays: list[float] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._channels: list[Channel] = []
        self._aio_channels: list[grpc.aio.Channel] = []
        self._streams: list[StreamWatcher] = []
        self._raw: list[GrpcWatchers] = []

    async def open(self, via: str) -> None:
        """Subscribe every watcher ``via`` one of ``FANOUT_VIAS``; returns once all are."""
        if via == "grpc":
            await self.open_grpc()
        elif via == "grpc-h2":
            await self.open_grpc_h2()
        elif via == "grpcio":
            await self.open_grpcio()
        elif via == "http":
            await self.open_http()
        else:
            raise ValueError(f"unknown fan-out via {via!r}: one of {FANOUT_VIAS}")

    async def open_grpc(self) -> None:
        assert self.server.endpoint.grpc_port is not None
        host, port = self.server.endpoint.host, self.server.endpoint.grpc_port
        self._channels = [
            Channel(host, port) for _ in range(math.ceil(self.count / WATCHERS_PER_CHANNEL))
        ]
        subscribed: list[asyncio.Future[None]] = []
        for index in range(self.count):
            stub = SessionServiceStub(self._channels[index // WATCHERS_PER_CHANNEL])
            ready = asyncio.get_running_loop().create_future()
            subscribed.append(ready)
            self._tasks.append(asyncio.create_task(self._watch_grpc(stub, ready)))
        await asyncio.wait_for(asyncio.gather(*subscribed), 60)

    async def _watch_grpc(self, stub: SessionServiceStub, ready: asyncio.Future[None]) -> None:
        async with stub.StreamEvents.open() as stream:
            await stream.send_message(api_pb.StreamEventsRequest(), end=True)
            await stream.recv_initial_metadata()
            ready.set_result(None)
            async for event in stream:
                if self._received(event, time.time()):
                    return

    def _received(self, event: api_pb.StreamEventsResponse, now: float) -> bool:
        """Time one of our session's agent events; True at its end (the stream is done)."""
        if event.call_id != self.call_id:
            return False
        if event.HasField("agent_event"):
            self.delays.append(now - event.time.seconds - event.time.nanos * 1e-9)
        return event.HasField("ended")

    async def open_grpc_h2(self) -> None:
        """As ``open_grpc``, with the raw HTTP/2 watchers of ``h2client``: timed on arrival."""
        assert self.server.endpoint.grpc_port is not None
        host, port = self.server.endpoint.host, self.server.endpoint.grpc_port
        request = api_pb.StreamEventsRequest().SerializeToString()

        def on_message(index: int, data: bytes, arrived: float) -> None:
            self._received(api_pb.StreamEventsResponse.FromString(data), arrived)

        for first in range(0, self.count, WATCHERS_PER_CHANNEL):
            streams = min(WATCHERS_PER_CHANNEL, self.count - first)
            self._raw.append(
                await GrpcWatchers.open(host, port, _STREAM_EVENTS, request, streams, on_message)
            )
        await asyncio.wait_for(asyncio.gather(*(raw.subscribed for raw in self._raw)), 60)

    async def open_grpcio(self) -> None:
        """As ``open_grpc``, with grpc.aio: the C core receives, Python sees decoded messages."""
        target = f"{self.server.endpoint.host}:{self.server.endpoint.grpc_port}"
        # A pool of its own per channel: grpc shares one connection among equal
        # channels, and 1,000 streams on it would wait for the server's stream limit.
        options = [("grpc.use_local_subchannel_pool", 1)]
        self._aio_channels = [
            grpc.aio.insecure_channel(target, options=options)
            for _ in range(math.ceil(self.count / WATCHERS_PER_CHANNEL))
        ]
        subscribed: list[asyncio.Future[None]] = []
        for index in range(self.count):
            channel = self._aio_channels[index // WATCHERS_PER_CHANNEL]
            stub = session_service_pb2_grpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
            ready = asyncio.get_running_loop().create_future()
            subscribed.append(ready)
            self._tasks.append(asyncio.create_task(self._watch_grpcio(stub, ready)))
        await asyncio.wait_for(asyncio.gather(*subscribed), 60)

    async def _watch_grpcio(self, stub: Any, ready: asyncio.Future[None]) -> None:
        call = stub.StreamEvents(api_pb.StreamEventsRequest())
        try:
            await call.initial_metadata()
            ready.set_result(None)
            async for event in call:
                if self._received(event, time.time()):
                    return
        finally:
            call.cancel()

    async def open_http(self) -> None:
        host, port = self.server.endpoint.host, self.server.endpoint.http_port
        wanted = f'"call_id":"{self.call_id}"'.encode()

        def on_line(line: bytes, arrived: float) -> None:
            if wanted in line and b'"agent_event"' in line:
                match = _TIME.search(line)
                if match is not None:
                    created = datetime.datetime.fromisoformat(match.group(1).decode())
                    self.delays.append(arrived - created.timestamp())

        for _ in range(self.count):
            self._streams.append(await StreamWatcher.open(host, port, "/events", on_line))
        await asyncio.wait_for(asyncio.gather(*(s.headers_seen for s in self._streams)), 60)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for channel in self._channels:
            channel.close()
        for aio_channel in self._aio_channels:
            await aio_channel.close()
        for stream in self._streams:
            stream.close()
        for raw in self._raw:
            raw.close()


async def fanout(server: ServerProcess, watchers: int, via: str, cfg: Config) -> Sample:
    """``watchers`` StreamEvents watchers of every session; one session emits ticks.

    Delivery latency: the event's creation time (its ``time`` field, stamped by
    the server when it was published) to its arrival at each watcher, both
    read from this machine's clock. ``via`` is ``grpc`` (grpclib with the
    protobuf classes, 25 watchers per connection), ``grpc-h2`` (the same
    calls from ``h2client``'s raw HTTP/2 watchers, timed when the bytes
    arrive), ``grpcio`` (the same over
    grpc.aio, whose C core receives off the event loop) or ``http`` (the
    gateway's NDJSON ``GET /events``, one connection each, timed when the
    bytes arrive).
    """
    call_id = _call_id("fanout")
    group = _Watchers(server, watchers, call_id)
    transport = open_transport("grpcio", server.endpoint)
    try:
        await group.open(via)
        driver = await transport.driver()
        cpu0, t0, client0 = server.cpu_seconds(), time.perf_counter(), client_cpu_seconds()
        session_id = await driver.start(
            call_id, {"emit_every_ms": cfg.fanout_interval_ms, "emit_count": cfg.fanout_events}
        )
        await asyncio.sleep(cfg.fanout_events * cfg.fanout_interval_ms / 1000 + 1.0)
        elapsed = time.perf_counter() - t0
        server_cpu = server.cpu_seconds() - cpu0
        client_busy = (client_cpu_seconds() - client0) / elapsed
        await driver.close(session_id, call_id)
    finally:
        await group.aclose()
        await transport.aclose()
    delays = group.delays
    expected = watchers * cfg.fanout_events
    key = f"fanout/{watchers}/{via}"
    out: Sample = {
        f"{key}/p50": 1000 * percentile(delays, 0.50),
        f"{key}/p99": 1000 * percentile(delays, 0.99),
        f"{key}/max": 1000 * percentile(delays, 1.0),
        f"{key}/delivered_pct": 100.0 * len(delays) / expected,
        f"{key}/server_busy_pct": 100.0 * server_cpu / elapsed,
        # Server CPU per event for all its watchers: how long the server takes
        # to hand one event to every watcher, whatever the clients manage.
        f"{key}/server_ms_per_event": 1000.0 * server_cpu / cfg.fanout_events,
        f"{key}/client_busy_pct": 100.0 * client_busy,
    }
    print(
        f"    fan-out {watchers} ({via}): p50 {out[f'{key}/p50']:.1f} ms, "
        f"p99 {out[f'{key}/p99']:.1f} ms, delivered {out[f'{key}/delivered_pct']:.1f}%, "
        f"server {out[f'{key}/server_ms_per_event']:.1f} ms CPU per event",
        flush=True,
    )
    return out


# ------------------------------------------------------- 5. start latency


async def _prometheus(server: ServerProcess) -> dict[str, float]:
    conn = await HttpConnection.open(server.endpoint.host, server.endpoint.http_port)
    try:
        _, body = await conn.request("GET", "/metrics", expect=(200,))
    finally:
        conn.close()
    values: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                continue
    return values


def _full_gc(before: dict[str, float], after: dict[str, float], prefix: str) -> Sample:
    """Full (generation 2) collections between two /metrics reads: count, mean ms."""
    name = 'agentplane_gc_pause_seconds_{}{{generation="2"}}'
    count = after.get(name.format("count"), 0.0) - before.get(name.format("count"), 0.0)
    total = after.get(name.format("sum"), 0.0) - before.get(name.format("sum"), 0.0)
    return {
        f"{prefix}/gc2_count": count,
        f"{prefix}/gc2_mean": 1000 * total / count if count else 0.0,
    }


async def start_latency(server: ServerProcess, kind: str, cfg: Config, internal: bool) -> Sample:
    """Starts one at a time: the latency a caller sees, and the server's own figure."""
    transport = open_transport(kind, server.endpoint)
    latencies: list[float] = []
    sessions: list[tuple[str, str]] = []
    try:
        driver = await transport.driver()
        before = await _prometheus(server) if internal else {}
        cpu0 = server.cpu_seconds()
        for _ in range(cfg.start_count):
            call_id = _call_id("start")
            began = time.perf_counter()
            sessions.append((await driver.start(call_id), call_id))
            latencies.append(time.perf_counter() - began)
        cpu = server.cpu_seconds() - cpu0
        after = await _prometheus(server) if internal else {}
        for session_id, call_id in sessions:
            await driver.close(session_id, call_id)
    finally:
        await transport.aclose()
    out: Sample = {
        "start/p50": 1000 * percentile(latencies, 0.50),
        "start/p99": 1000 * percentile(latencies, 0.99),
        "start/cpu_ms": 1000 * cpu / len(latencies),
    }
    if internal:
        count = after.get("agentplane_session_start_seconds_count", 0.0) - before.get(
            "agentplane_session_start_seconds_count", 0.0
        )
        total = after.get("agentplane_session_start_seconds_sum", 0.0) - before.get(
            "agentplane_session_start_seconds_sum", 0.0
        )
        out["start/internal_mean"] = 1000 * total / count if count else math.nan
    return out


async def gateway_serves_sessions(server: ServerProcess) -> bool:
    """Whether agentplane's HTTP port serves the JSON session routes (yet)."""
    transport = open_transport("http", server.endpoint)
    try:
        driver = await transport.driver()
        call_id = _call_id("probe")
        session_id = await driver.start(call_id)
        await driver.close(session_id, call_id)
    except (HttpError, ValueError, KeyError):
        return False
    finally:
        await transport.aclose()
    return True


def describe(sample: dict[str, Any], prefix: str) -> str:
    rate = sample.get(f"{prefix}/rate", math.nan)
    cpu = sample.get(f"{prefix}/cpu_ms", math.nan)
    client = sample.get(f"{prefix}/client_busy_pct", math.nan)
    return f"{rate:,.0f}/s, {cpu:.2f} ms server CPU each, load core {client:.0f}% busy"
