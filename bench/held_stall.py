"""Event-loop stalls with 10,000 sessions held: each slow Get next to its cause.

``python -m bench.held_stall [--rounds 4] [--held 10000] [--seconds 10]``

Each round starts a fresh ``agentplane serve`` with the trivial agent (pinned,
as ``bench.run`` does) under ``bench.stall_probe``, fills it with ``--held``
sessions, waits as the held scenario does (1 s, then ``--idle`` s), then
loops Get one at a time over HTTP for ``--seconds`` and keeps each answer's
start and duration. Every answer slower than ``--stall-ms`` is printed with
what the server did meanwhile: collections (generation, ms), slow loop
iterations (the slowest callback), or nothing (the process was not run: the
machine). Alternating with it, the same loop runs against the no-op server
(``bench.noop``) on the same core: the machine's own floor for that loop.
Other processes' CPU on the server's core is printed per round too.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .clients import Endpoint
from .httpclient import HttpConnection
from .load import percentile
from .scenarios import start_many
from .servers import HOST, Cores, ServerProcess, free_port, noop_server


def probed_server(cores: Cores, log_dir: Path, probe_out: Path) -> ServerProcess:
    endpoint = Endpoint(HOST, free_port(), free_port())
    argv = [
        sys.executable, "-m", "bench.stall_probe", str(probe_out),
        "serve", "--agent", "bench.trivial_agent:make_launcher",
        "--host", HOST, "--port", str(endpoint.http_port),
        "--grpc-port", str(endpoint.grpc_port),
        "--agents-log-level", "WARNING", "--http-log-level", "WARNING",
    ]  # fmt: skip
    return ServerProcess("agentplane", argv, endpoint, cores, log_dir)


async def one_at_a_time(
    server: ServerProcess, path: str, seconds: float
) -> list[tuple[float, float]]:
    """(start, seconds) of every Get of ``path`` in ``seconds``, one at a time."""
    conn = await HttpConnection.open(server.endpoint.host, server.endpoint.http_port)
    answers: list[tuple[float, float]] = []
    try:
        for _ in range(50):  # warm-up
            await conn.request("GET", path, expect=(200,))
        gc.collect()
        gc.disable()  # the client's own collections are not the server's stalls
        end = time.monotonic() + seconds
        while (began := time.monotonic()) < end:
            await conn.request("GET", path, expect=(200,))
            answers.append((began, time.monotonic() - began))
    finally:
        gc.enable()
        conn.close()
    return answers


async def read_probe(server: ServerProcess, out: Path) -> dict[str, Any]:
    """Ask the probe for its records (SIGUSR2) and read them."""
    return await asyncio.to_thread(_dump, server.pid, out)


def _dump(pid: int, out: Path) -> dict[str, Any]:
    out.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 10
    while not out.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the probe did not answer")
        time.sleep(0.02)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def summarize(answers: list[tuple[float, float]]) -> dict[str, float]:
    durations = [d for _, d in answers]
    return {
        "n": len(durations),
        "p50": 1000 * percentile(durations, 0.5),
        "p99": 1000 * percentile(durations, 0.99),
        "max": 1000 * max(durations),
    }


def causes(began: float, took: float, probe: dict[str, Any]) -> str:
    """What the server did during [began, began + took]."""
    end = began + took
    found = []
    for at, dur, gen, collected, cpu in probe["gcs"]:
        if at < end and at + dur > began and dur > 0.0005:
            found.append(
                f"gc gen{gen} {1000 * dur:.1f} ms (CPU {1000 * cpu:.1f}, {collected} freed)"
            )
    for it in probe["slow"]:
        if it["at"] < end and it["at"] + it["busy"] > began:
            found.append(
                f"busy {1000 * it['busy']:.1f} ms (CPU {1000 * it['cpu']:.1f}), "
                f"{it['handles']} callbacks, gc "
                f"{1000 * it['gc']:.1f} ms, slowest {1000 * it['worst']:.1f} ms "
                f"{it['worst_repr'][:120]}"
            )
    return "; ".join(found) or "nothing on the server (not scheduled?)"


def gc_totals(probe: dict[str, Any], began: float, end: float) -> str:
    by_gen: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for at, _, gen, _, cpu in probe["gcs"]:
        if began <= at <= end:
            by_gen[gen].append(cpu)
    return "CPU " + ", ".join(
        f"gen{g} {len(v)}x mean {1000 * sum(v) / len(v):.2f} max {1000 * max(v):.2f} ms"
        for g, v in by_gen.items()
        if v
    )


async def agentplane_round(args: argparse.Namespace, cores: Cores, logs: Path) -> dict[str, Any]:
    probe_out = logs / "probe.json"
    server = probed_server(cores, logs, probe_out)
    await server.start()
    try:
        await asyncio.sleep(1.0)
        baseline = server.rss()
        began = time.perf_counter()
        sessions = await start_many(server, "grpcio", args.held)
        fill_rate = len(sessions) / (time.perf_counter() - began)
        await asyncio.sleep(1.0)
        rss = (server.rss() - baseline) / 1024 / args.held
        foreign0, cpu0, t0 = server.foreign_seconds(), server.cpu_seconds(), time.perf_counter()
        await asyncio.sleep(args.idle)
        idle = time.perf_counter() - t0
        idle_cpu = 100 * (server.cpu_seconds() - cpu0) / idle
        idle_foreign = 100 * (server.foreign_seconds() - foreign0) / idle
        await read_probe(server, probe_out)  # drop what filling recorded
        foreign0, t0 = server.foreign_seconds(), time.perf_counter()
        perf = None
        if args.perf:  # a native profile of the window (perf record)
            perf = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
                ["perf", "record", "-q", "-F", "4000", "-p", str(server.pid), "-o", args.perf]
            )
        answers = await one_at_a_time(server, f"/sessions/{sessions[0][0]}", args.seconds)
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(30)
        foreign = 100 * (server.foreign_seconds() - foreign0) / (time.perf_counter() - t0)
        probe = await read_probe(server, probe_out)
    finally:
        await server.stop()
    out: dict[str, Any] = dict(summarize(answers))
    for c in probe["census"]:
        print(
            f"  census gen{c['generation']}: {c['objects']} objects, {c['referents']} refs, "
            f"{c['types']}, widest {c['widest']}",
            flush=True,
        )
    print(f"  frozen: {probe['freeze']}", flush=True)
    out.update(
        fill_rate=fill_rate,
        rss_kib=rss,
        idle_cpu=idle_cpu,
        idle_foreign=idle_foreign,
        foreign=foreign,
        gc=gc_totals(probe, answers[0][0], answers[-1][0] + answers[-1][1]),
        cpu_stalls=[
            f"{1000 * it['cpu']:.1f} ms CPU (gc {1000 * it['gc']:.1f}) at "
            f"{it['at'] - answers[0][0]:+.2f} s, {it['handles']} callbacks, {it['scheduled']} "
            f"timers, slowest {1000 * it['worst']:.1f} ms: {it['worst_repr'][:100]}"
            for it in sorted(probe["slow"], key=lambda it: -it["cpu"])
            if 1000 * it["cpu"] > args.stall_ms / 2
        ][: args.show],
        stalls=[
            (round(1000 * d, 1), causes(b, d, probe))
            for b, d in sorted(answers, key=lambda a: -a[1])
            if 1000 * d > args.stall_ms
        ][: args.show],
    )
    return out


async def noop_round(args: argparse.Namespace, cores: Cores, logs: Path) -> dict[str, Any]:
    server = noop_server(cores, logs)
    await server.start()
    try:
        foreign0, t0 = server.foreign_seconds(), time.perf_counter()
        answers = await one_at_a_time(server, "/sessions/x", args.seconds)
        foreign = 100 * (server.foreign_seconds() - foreign0) / (time.perf_counter() - t0)
    finally:
        await server.stop()
    out: dict[str, Any] = summarize(answers)
    out["foreign"] = foreign
    out["stalls"] = [round(1000 * d, 1) for _, d in sorted(answers, key=lambda a: -a[1])][:5]
    return out


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    cores = Cores.pick()
    cores.pin_self()
    logs = Path(tempfile.mkdtemp(prefix="held-stall-"))
    results: list[dict[str, Any]] = []
    kinds = [f"agentplane:{p}" for p in args.policies.split(",")]
    if not args.no_noop:
        kinds.append("noop")
    for n in range(args.rounds):
        for kind in kinds if n % 2 == 0 else kinds[::-1]:
            run = noop_round
            if kind.startswith("agentplane"):
                # STALL_PROBE_POLICY=old: the server's GC policy as before this driver.
                os.environ["STALL_PROBE_POLICY"] = kind.partition(":")[2]
                run = agentplane_round
            out = await run(args, cores, logs)
            out.update(round=n, kind=kind)
            results.append(out)
            print(
                f"round {n} {kind}: {out['n']} Gets, p50 {out['p50']:.2f} p99 {out['p99']:.2f} "
                f"max {out['max']:.1f} ms; foreign CPU on the core {out['foreign']:.1f}%",
                flush=True,
            )
            if kind.startswith("agentplane"):
                print(
                    f"  {out['rss_kib']:.2f} KiB/session, idle CPU {out['idle_cpu']:.2f}% "
                    f"(foreign {out['idle_foreign']:.1f}%), fill {out['fill_rate']:.0f}/s; "
                    f"GC in window: {out['gc']}",
                    flush=True,
                )
                for line in out["cpu_stalls"]:
                    print(f"  iteration {line}", flush=True)
                for ms, why in out["stalls"]:
                    print(f"  {ms:6.1f} ms: {why}", flush=True)
            else:
                print(f"  slowest: {out['stalls']}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--held", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--stall-ms", type=float, default=5.0)
    parser.add_argument("--show", type=int, default=8)
    parser.add_argument("--no-noop", action="store_true")
    parser.add_argument(
        "--policies", default="new", help="old,new: alternate the GC policy before this driver"
    )
    parser.add_argument("--json", default="")
    parser.add_argument("--perf", default="", help="write a perf profile of each window here")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
