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
from .clients import open_transport
from .servers import REPO, Cores, ServerProcess, agentplane_server

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
        await (group.open_grpc() if via == "grpc" else group.open_http())
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
    parser.add_argument("--via", choices=("grpc", "http"), action="append")
    parser.add_argument("--profile", type=float, default=0.0)
    parser.add_argument("--profile-out", type=Path, default=Path("fanout.folded"))
    args = parser.parse_args()
    vias = args.via or ["grpc", "http"]
    if args.profile:
        asyncio.run(profile(args.profile, args.profile_out, args.watchers, vias[0]))
    else:
        asyncio.run(compare(args.rounds, args.watchers, args.base, vias))


if __name__ == "__main__":
    main()
