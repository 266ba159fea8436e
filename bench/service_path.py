"""CPU per call of the service and the launcher core alone: no transport, no socket.

``python -m bench.service_path [--rounds 5] [--sessions 2000]`` assembles what
``agentplane serve`` puts under its transports (the trivial agent's launcher
with the operator metrics hooked in, log records carrying their context, the
agents' loggers at WARNING as the bench runs them, ``SessionAPI`` with the
default auth policy) and calls ``SessionAPI`` directly, as the grpclib
servicer and the in-process HTTP backend do, with a ``RequestContext`` like
theirs. Each round starts ``--sessions`` sessions, then Gets each, reads the
metrics of each, and closes each, every phase from ``--clients`` concurrent
callers (16, as the bench's lifecycle clients), and reports the process CPU per call of
each phase; the figures are the best round (the least disturbed on a shared
machine). The part of issue 16 below the transports.

``--profile`` runs the rounds under cProfile and prints where the time went
(``--profile-out``: its stats file, for ``python -m pstats``); cProfile
doubles the cost of every call, so for shares rather run it under py-spy:
``py-spy record -r 997 -f raw -o service.folded -- python -m bench.service_path``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentplane.service.api import SessionAPI

PHASES = ("start", "get", "metrics", "close")


async def rounds(count: int, sessions: int, clients: int) -> list[dict[str, float]]:
    """``count`` rounds from ``clients`` concurrent callers; each a dict of phase -> CPU µs per call."""
    from agentplane.ops.metrics import OperatorMetrics
    from agentplane.server.commands import configure_logging
    from agentplane.server.options import ServeOptions
    from agentplane.service.api import SessionAPI

    from .trivial_agent import make_launcher

    configure_logging("WARNING", "WARNING")
    launcher = make_launcher()
    OperatorMetrics(launcher)  # hooks itself in, as the runner's does
    api = SessionAPI(launcher, ServeOptions().auth_policy())
    results: list[dict[str, float]] = []
    async with launcher:
        for r in range(count + 1):  # the first round warms up, unreported
            row = await one_round(api, f"bench-{r}", sessions, clients)
            if r:
                results.append(row)
                print("round: " + ", ".join(f"{k} {v:.1f} µs" for k, v in row.items()), flush=True)
    return results


async def one_round(api: SessionAPI, prefix: str, sessions: int, clients: int) -> dict[str, float]:
    """Start ``sessions`` sessions, Get each, read each's metrics, close each: µs per call."""
    from agentplane.clients.grpcio import session_service_pb2 as api_pb
    from agentplane.service.auth import RequestContext

    service = "/agentplane.v1.SessionService/"
    # What the transports hand over: a few forwarded headers, the peer.
    metadata = {"user-agent": "bench", "accept": "application/json"}
    ids = [""] * sessions

    def ctx(method: str) -> RequestContext:
        return RequestContext(method=service + method, metadata=dict(metadata), peer="127.0.0.1:1")

    async def start(i: int) -> None:
        request = api_pb.StartRequest(call_id=f"{prefix}-{i}", call_type="default")
        ids[i] = (await api.start(request, ctx("Start"))).session_id

    async def get(i: int) -> None:
        await api.get(api_pb.GetRequest(session_id=ids[i]), ctx("Get"))

    async def metrics(i: int) -> None:
        await api.metrics(api_pb.MetricsRequest(session_id=ids[i]), ctx("Metrics"))

    async def close(i: int) -> None:
        await api.close(api_pb.CloseRequest(session_id=ids[i]), ctx("Close"))

    async def phase(call: Callable[[int], Awaitable[None]]) -> float:
        async def client(first: int) -> None:
            for i in range(first, sessions, clients):
                await call(i)

        before = time.process_time()
        await asyncio.gather(*(client(n) for n in range(clients)))
        return (time.process_time() - before) / sessions * 1e6

    gc.collect()
    return {
        name: await phase(call)
        for name, call in zip(PHASES, (start, get, metrics, close), strict=True)
    }


def report(rows: list[dict[str, float]]) -> None:
    print(f"\nservice + core CPU per call, best of {len(rows)} rounds:")
    for name in PHASES:
        print(f"  {name:<8} {min(row[name] for row in rows):7.1f} µs")
    print(f"  {'all four':<8} {min(sum(row.values()) for row in rows):7.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16, help="concurrent callers")
    parser.add_argument("--profile", action="store_true", help="under cProfile")
    parser.add_argument("--profile-out", type=Path)
    args = parser.parse_args()
    work = rounds(args.rounds, args.sessions, args.clients)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        rows = asyncio.run(work)
        profiler.disable()
        if args.profile_out is not None:
            profiler.dump_stats(args.profile_out)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
    else:
        rows = asyncio.run(work)
    report(rows)


if __name__ == "__main__":
    main()
