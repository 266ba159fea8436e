"""Event fan-out alone: 1,000 watchers of every session, A/B between two source trees.

``python -m bench.fanout [--rounds 4] [--watchers 1000] [--base PATH]`` runs
``./dev bench``'s fan-out scenario (``scenarios.fanout``: one session emits 20
events 200 ms apart, latency from the event's server-stamped time to its
arrival) over gRPC and over the gateway's NDJSON ``GET /events``, round by
round. With ``--base`` (a checkout of another commit, e.g. ``git archive main
| tar -x -C /tmp/base``), each round runs one server from that tree (A) and
one from this one (B), alternating which goes first, so both see the same
noise; the report gives each figure's median over the rounds and the B/A
ratio taken within each round. Minutes shorter than ``./dev bench``: a quick
loop for work on the fan-out path (issue 16).

``--interleave CHUNKS`` (with ``--base``) serves A and B at once on the server
core and lets their sessions take turns, a few events each: closer in time
than whole rounds, for a machine whose noise changes by the minute.

``--count EVENTS`` runs each server under callgrind and answers the
user-space instructions it runs per event per watcher: no timing at all, so
about the same on a busy machine as on an idle one (system calls are not
counted: the system CPU of ``--interleave`` shows those).

``--profile SECONDS`` instead records this tree's server with py-spy while
watchers of ``--via`` receive events (``--profile-out``: raw folded stacks).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from . import scenarios
from .clients import Driver, Transport, open_transport
from .load import percentile
from .servers import REPO, Cores, ServerProcess, agentplane_server

CHUNK_EVENTS = 5
FIGURES = ("p50", "p99", "max", "delivered_pct", "server_ms_per_event", "client_busy_pct")


def _server(cores: Cores, logs: Path, tree: Path | None, name: str) -> ServerProcess:
    """This tree's server, or ``tree``'s: its source roots ahead of the editable install."""
    server = agentplane_server(cores, logs, name=name)
    if tree is not None:
        roots = ":".join(str(tree / root) for root in ("server", "gateway", "clients/python"))
        # ServerProcess sets PYTHONPATH to this repo (for bench.trivial_agent);
        # env(1) puts the other tree's packages first and execs in place.
        argv = server._argv
        at = argv.index(sys.executable)
        server._argv = [*argv[:at], "env", f"PYTHONPATH={roots}:{REPO}", *argv[at:]]
    return server


async def _one(
    cores: Cores, logs: Path, tree: Path | None, name: str, cfg: scenarios.Config, vias: list[str]
) -> dict[str, float]:
    server = _server(cores, logs, tree, name)
    await server.start()
    sample: dict[str, float] = {}
    try:
        for via in vias:
            sample.update(await scenarios.fanout(server, cfg.fanout_watchers[0], via, cfg))
    finally:
        await server.stop()
    return sample


async def compare(rounds: int, watchers: int, base: Path | None, vias: list[str]) -> None:
    cores = Cores.pick()
    cores.pin_self()
    logs = Path(tempfile.mkdtemp(prefix="fanout-"))
    cfg = replace(scenarios.Config(), fanout_watchers=(watchers,))
    sides: list[tuple[str, Path | None]] = [("B", None)]
    if base is not None:
        sides.insert(0, ("A", base))
    samples: dict[str, list[dict[str, float]]] = {label: [] for label, _ in sides}
    for index in range(rounds):
        order = sides if index % 2 == 0 else sides[::-1]
        for label, tree in order:
            print(f"[round {index + 1}/{rounds}] {label} ({tree or 'this tree'})", flush=True)
            samples[label].append(await _one(cores, logs, tree, label.lower(), cfg, vias))
    print(f"\n{watchers} watchers, {rounds} rounds (median over rounds; B/A within each round)")
    for via in vias:
        for figure in FIGURES:
            key = f"fanout/{watchers}/{via}/{figure}"
            row = f"  {via:4} {figure:20}"
            for label, _ in sides:
                row += f" {label} {statistics.median(s[key] for s in samples[label]):7.1f}"
            if base is not None:
                ratios = [
                    b[key] / a[key]
                    for a, b in zip(samples["A"], samples["B"], strict=True)
                    if a[key]
                ]
                if ratios:
                    row += f"   B/A {statistics.median(ratios):.2f}"
                    row += f" ({min(ratios):.2f}-{max(ratios):.2f})"
            print(row)


async def interleaved(chunks: int, watchers: int, base: Path, via: str) -> None:
    """A and B served at once on the server core, their events taking turns.

    Each server has its own ``watchers``; a chunk is one session of each in
    turn emitting ``CHUNK_EVENTS`` events 200 ms apart (who goes first
    alternates), so both see the same seconds of a noisy machine. Per chunk:
    the server's CPU per event (and the system part of it: socket writes) and
    the latency percentiles of its events.
    """
    cores = Cores.pick()
    cores.pin_self()
    logs = Path(tempfile.mkdtemp(prefix="fanout-"))
    servers = {"A": _server(cores, logs, base, "a"), "B": _server(cores, logs, None, "b")}
    groups: dict[str, scenarios._Watchers] = {}
    drivers: dict[str, Driver] = {}
    transports: list[Transport] = []
    results: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    try:
        for label, server in servers.items():
            await server.start()
            group = groups[label] = scenarios._Watchers(server, watchers, f"il-{label}")
            await group.open(via)
            transport = open_transport("grpcio", server.endpoint)
            transports.append(transport)
            drivers[label] = await transport.driver()
        for chunk in range(chunks):
            for label in ("A", "B") if chunk % 2 == 0 else ("B", "A"):
                server, group = servers[label], groups[label]
                seen = len(group.delays)
                cpu0 = server.cpu_seconds()
                assert server.ps is not None
                sys0 = server.ps.cpu_times().system
                await drivers[label].start(
                    group.call_id, {"emit_every_ms": 200, "emit_count": CHUNK_EVENTS}
                )
                await asyncio.sleep(CHUNK_EVENTS * 0.2 + 0.6)
                cpu = server.cpu_seconds() - cpu0
                system = server.ps.cpu_times().system - sys0
                delays = group.delays[seen:]
                results[label].append(
                    {
                        "p50": 1000 * percentile(delays, 0.5),
                        "p99": 1000 * percentile(delays, 0.99),
                        "max": 1000 * percentile(delays, 1.0),
                        "delivered_pct": 100 * len(delays) / (watchers * CHUNK_EVENTS),
                        "server_ms_per_event": 1000 * cpu / CHUNK_EVENTS,
                        "system_ms_per_event": 1000 * system / CHUNK_EVENTS,
                    }
                )
                row = results[label][-1]
                print(
                    f"  chunk {chunk + 1} {label}: p50 {row['p50']:.1f} p99 {row['p99']:.1f} "
                    f"max {row['max']:.1f} ms, {row['delivered_pct']:.0f}% delivered, "
                    f"{row['server_ms_per_event']:.1f} ms CPU per event "
                    f"({row['system_ms_per_event']:.1f} system)",
                    flush=True,
                )
    finally:
        for transport in transports:
            await transport.aclose()
        for group in groups.values():
            group.delays.clear()
            for task in group._tasks:
                task.cancel()
            await group.aclose()
        for server in servers.values():
            await server.stop()
    print(f"\n{watchers} {via} watchers, {chunks} chunks of {CHUNK_EVENTS} events per side")
    for figure in results["A"][0]:
        a = [r[figure] for r in results["A"]]
        b = [r[figure] for r in results["B"]]
        ratios = [y / x for x, y in zip(a, b, strict=True) if x]
        line = f"  {figure:20} A {statistics.median(a):7.1f} B {statistics.median(b):7.1f}"
        if ratios:
            line += f"   B/A {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        print(line)


def _instructions(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"no totals in {dump}")


async def _callgrind(control: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        "callgrind_control", *control, stdout=asyncio.subprocess.DEVNULL
    )
    await proc.wait()


async def count(watchers: int, events: int, base: Path | None, via: str) -> None:
    """Instructions the server runs per event per watcher (callgrind): no noise, no timing.

    Each side's server runs under callgrind with instrumentation off; it is
    switched on for two windows: a session emitting one event, and one
    emitting ``1 + events`` (1 s apart: the server runs ~50x slower). The
    difference is what ``events`` events cost, start and timers aside. Slow,
    but about the same figure on a busy machine as on an idle one.
    """
    cores = Cores.pick()
    cores.pin_self()
    logs = Path(tempfile.mkdtemp(prefix="fanout-"))
    sides: list[tuple[str, Path | None]] = [("B", None)]
    if base is not None:
        sides.insert(0, ("A", base))
    figures: dict[str, float] = {}
    for label, tree in sides:
        server = _server(cores, logs, tree, label.lower())
        out = logs / f"callgrind-{label}.out"
        at = server._argv.index(sys.executable)
        server._argv[at:at] = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        ]  # fmt: skip
        await server.start()
        group = scenarios._Watchers(server, watchers, f"count-{label}")
        transport = open_transport("grpcio", server.endpoint)
        try:
            await group.open(via)
            driver = await transport.driver()
            # Two windows as long: a session emitting one event, then one
            # emitting 1 + ``events``; the difference is ``events`` events alone.
            window = events * 1.0 + 4.0
            pid = str(server.pid)
            await _callgrind(["-i", "on", pid])
            for emit in (1, 1 + events):
                await driver.start(group.call_id, {"emit_every_ms": 1000, "emit_count": emit})
                await asyncio.sleep(window)
                await _callgrind(["-d", pid])
            await _callgrind(["-i", "off", pid])
            delivered = len(group.delays)
        finally:
            await transport.aclose()
            await group.aclose()
            await server.stop()
        # Dumps are numbered in order: .1 the one-event window, .2 the other.
        idle, busy = (_instructions(Path(f"{out}.{part}")) for part in (1, 2))
        per = (busy - idle) / events / watchers
        figures[label] = per
        print(
            f"  {label} {via}: {per:,.0f} instructions per event per watcher "
            f"({delivered}/{watchers * (events + 2)} delivered)",
            flush=True,
        )
    if "A" in figures:
        print(f"  {via} B/A {figures['B'] / figures['A']:.3f}")


async def profile(seconds: float, out: Path, watchers: int, via: str) -> None:
    """py-spy on the server from when every watcher is subscribed until the last event."""
    cores = Cores.pick()
    cores.pin_self()
    logs = Path(tempfile.mkdtemp(prefix="fanout-"))
    server = agentplane_server(cores, logs)
    await server.start()
    events = max(1, int(seconds / 0.2))
    group = scenarios._Watchers(server, watchers, "profile")
    transport = open_transport("grpcio", server.endpoint)
    try:
        await group.open(via)
        driver = await transport.driver()
        py_spy = str(Path(sys.executable).parent / "py-spy")
        argv = [py_spy, "record", "-f", "raw", "--nolineno", "-r", "500", "-o", str(out)]
        spy = subprocess.Popen([*argv, "-p", str(server.pid)])  # noqa: ASYNC220
        session_id = await driver.start("profile", {"emit_every_ms": 200, "emit_count": events})
        await asyncio.sleep(events * 0.2 + 0.5)
        spy.send_signal(signal.SIGINT)
        await asyncio.to_thread(spy.wait, 30)
        await driver.close(session_id, "profile")
    finally:
        await group.aclose()
        await transport.aclose()
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--watchers", type=int, default=1_000)
    parser.add_argument("--base", type=Path, help="the A side: another checkout's root")
    parser.add_argument("--via", choices=scenarios.FANOUT_VIAS, action="append")
    parser.add_argument("--interleave", type=int, default=0, help="chunks, A and B at once")
    parser.add_argument("--count", type=int, default=0, help="events, under callgrind")
    parser.add_argument("--profile", type=float, default=0.0)
    parser.add_argument("--profile-out", type=Path, default=Path("fanout.folded"))
    args = parser.parse_args()
    vias = args.via or ["grpc", "http"]
    if args.count:
        for via in vias:
            asyncio.run(count(args.watchers, args.count, args.base, via))
    elif args.interleave:
        assert args.base is not None, "--interleave needs --base"
        for via in vias:
            asyncio.run(interleaved(args.interleave, args.watchers, args.base, via))
    elif args.profile:
        asyncio.run(profile(args.profile, args.profile_out, args.watchers, vias[0]))
    else:
        asyncio.run(compare(args.rounds, args.watchers, args.base, vias))


if __name__ == "__main__":
    main()
