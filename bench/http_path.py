"""Server CPU per HTTP request on the gateway's session routes, against the no-op route.

``python -m bench.http_path [--rounds 4] [--requests 3000]`` starts ``agentplane
serve`` (the trivial agent) and the no-op stack (``bench/noop.py``), each pinned
to one core as ``./dev bench`` does, and measures, round by round and
alternating the two servers, the server process's CPU (``/proc``, user +
system) per request: Get of one session, a lifecycle (Start -> Get -> Metrics
-> Close) and each of its calls, and the no-op ``GET /sessions/{id}``. Each
figure is the median over the rounds; the ratio to the no-op route is taken
within each round. A quick loop for work on the HTTP path (issue 16), minutes
shorter than ``./dev bench``.

``--in-process`` instead drives the HTTP port's ASGI app (``AccessLog`` over
the gateway over ``InProcessBackend``, as ``agentplane serve`` assembles it)
from this process, no socket, no uvicorn: process CPU per request of
agentplane's own path alone, far steadier on a noisy machine.

``--suite`` instead runs ``./dev bench``'s own scenarios, nothing else: HTTP
Gets of one session at 50 concurrent against agentplane and the no-op stack
(the issue's "Get server CPU / no-op" ratio, section 6 of the report) and HTTP
lifecycles (section 1), alternating the servers round by round.

``--interleave PAIRS`` instead keeps agentplane, the no-op stack and the
reference server up at once and alternates their windows pair by pair: the
same two ratios (Get / no-op CPU, lifecycles / peer), each from measurements
seconds apart rather than a server restart apart.

``--profile SECONDS`` instead records the server under a Get load with py-spy
(``--profile-out``: its raw folded stacks) for a profile of the HTTP path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from .httpclient import HttpConnection
from .servers import Cores, ServerProcess, agentplane_server, noop_server

# As ./dev bench: Gets from 50 connections, lifecycles from 16.
GET_CLIENTS = 50
LIFECYCLE_CLIENTS = 16
Op = Callable[[HttpConnection, int], Awaitable[None]]


async def _loop(server: ServerProcess, count: int, op: Op, clients: int) -> float:
    """Server CPU µs per ``op`` over ``count`` ops from ``clients`` connections."""
    endpoint = server.endpoint
    conns = [await HttpConnection.open(endpoint.host, endpoint.http_port) for _ in range(clients)]
    per_client = count // clients
    try:
        await asyncio.gather(*(op(conn, -1 - n) for n, conn in enumerate(conns)))  # warm
        before = server.cpu_seconds()

        async def run(conn: HttpConnection, client: int) -> None:
            for i in range(per_client):
                await op(conn, client * per_client + i)

        await asyncio.gather(*(run(conn, n) for n, conn in enumerate(conns)))
        return (server.cpu_seconds() - before) / (per_client * clients) * 1e6
    finally:
        for conn in conns:
            conn.close()


async def _start(conn: HttpConnection, n: int) -> str:
    body = json.dumps({"call_id": f"bench-{n}-{time.monotonic_ns()}", "call_type": "default"})
    _, answer = await conn.request("POST", "/sessions", body.encode(), expect=(201,))
    return str(json.loads(answer)["session_id"])


async def measure_agentplane(
    server: ServerProcess, count: int, *, lifecycles: bool = True
) -> dict[str, float]:
    conn = await HttpConnection.open(server.endpoint.host, server.endpoint.http_port)
    session_id = await _start(conn, 0)
    conn.close()
    path = f"/sessions/{session_id}"

    async def get(conn: HttpConnection, n: int) -> None:
        await conn.request("GET", path, expect=(200,))

    async def lifecycle(conn: HttpConnection, n: int) -> None:
        sid = await _start(conn, n)
        await conn.request("GET", f"/sessions/{sid}", expect=(200,))
        await conn.request("GET", f"/sessions/{sid}/metrics", expect=(200,))
        await conn.request("DELETE", f"/sessions/{sid}", expect=(200, 202, 204))

    figures = {"get": await _loop(server, count, get, GET_CLIENTS)}
    if lifecycles:
        figures["lifecycle"] = await _loop(server, count // 4, lifecycle, LIFECYCLE_CLIENTS)
    return figures


async def measure_noop(server: ServerProcess, count: int) -> dict[str, float]:
    async def get(conn: HttpConnection, n: int) -> None:
        await conn.request("GET", "/sessions/5b0a9c1e-6a57-4b86-9d0e-2f1d3c4b5a69", expect=(200,))

    return {"noop_get": await _loop(server, count, get, GET_CLIENTS)}


async def run(rounds: int, count: int) -> None:
    cores = Cores.pick()
    cores.pin_self()
    logs = Path(tempfile.mkdtemp(prefix="http-path-"))
    agent, noop = agentplane_server(cores, logs), noop_server(cores, logs)
    await agent.start()
    await noop.start()
    rows: list[dict[str, float]] = []
    try:
        for _ in range(rounds):
            # no-op, agentplane, no-op: the no-op figure is the mean of the two around.
            first = await measure_noop(noop, count)
            row = await measure_agentplane(agent, count)
            second = await measure_noop(noop, count)
            row["noop_get"] = (first["noop_get"] + second["noop_get"]) / 2
            rows.append(row)
            print(
                "round: " + ", ".join(f"{k} {v:.1f} µs" for k, v in row.items()),
                f"(Get / no-op {row['get'] / row['noop_get']:.2f}x)",
                flush=True,
            )
    finally:
        await agent.stop()
        await noop.stop()

    def med(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    ratios = [row["get"] / row["noop_get"] for row in rows]
    print(f"\nserver CPU per request, median of {rounds} rounds:")
    print(f"  no-op GET          {med('noop_get'):7.1f} µs")
    print(
        f"  Get                {med('get'):7.1f} µs  "
        f"({statistics.median(ratios):.2f}x no-op, {min(ratios):.2f}-{max(ratios):.2f})"
    )
    lifecycle = med("lifecycle")
    print(f"  lifecycle (4 calls){lifecycle:7.1f} µs  ({lifecycle / med('noop_get'):.2f}x no-op)")


async def profile(seconds: float, out: Path, *, lifecycles: bool) -> None:
    cores = Cores.pick()
    cores.pin_self()
    logs = Path(tempfile.mkdtemp(prefix="http-path-"))
    agent = agentplane_server(cores, logs)
    await agent.start()
    try:
        spy = subprocess.Popen(  # noqa: ASYNC220
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "-f",
                "raw",
                "--nolineno",
                "-r",
                "500",
                "-d",
                str(int(seconds)),
                "-o",
                str(out),
                "-p",
                str(agent.ps.pid if agent.ps else agent.pid),
            ]
        )
        deadline = time.monotonic() + seconds + 2
        while spy.poll() is None and time.monotonic() < deadline + 10:
            await measure_agentplane(agent, 4000, lifecycles=lifecycles)
        spy.wait()
    finally:
        await agent.stop()


async def in_process(rounds: int, count: int) -> None:
    from agentplane.gateway import CorsOptions
    from agentplane.http.access import AccessLog
    from agentplane.http.app import gateway_app
    from agentplane.http.embedded import InProcessBackend
    from agentplane.server.options import ServeOptions
    from agentplane.service.api import SessionAPI

    from .trivial_agent import make_launcher

    launcher = make_launcher()
    async with launcher:
        backend = InProcessBackend(SessionAPI(launcher, ServeOptions().auth_policy()), launcher)
        app = AccessLog(gateway_app(backend, cors=CorsOptions()))

        async def call(method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
            headers = [(b"host", b"127.0.0.1:8000")]
            if body:
                headers += [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]  # fmt: skip
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                "query_string": b"", "root_path": "", "headers": headers,
                "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
            }  # fmt: skip
            sent: list[MutableMapping[str, Any]] = []
            messages: list[MutableMapping[str, Any]] = [
                {"type": "http.request", "body": body, "more_body": False}
            ]

            async def receive() -> MutableMapping[str, Any]:
                if messages:
                    return messages.pop()
                await asyncio.Event().wait()  # never: the client stays
                return {"type": "http.disconnect"}

            async def send(message: MutableMapping[str, Any]) -> None:
                sent.append(message)

            await app(scope, receive, send)
            return int(sent[0]["status"]), bytes(sent[1]["body"])

        async def start(n: int) -> str:
            body = json.dumps({"call_id": f"bench-{n}", "call_type": "default"}).encode()
            status, answer = await call("POST", "/sessions", body)
            assert status == 201, answer
            return str(json.loads(answer)["session_id"])

        session_id = await start(-1)

        async def timed(op: Callable[[int], Awaitable[None]], n: int) -> float:
            for i in range(50):
                await op(-2 - i)
            before = time.process_time()
            for i in range(n):
                await op(i)
            return (time.process_time() - before) / n * 1e6

        async def get(n: int) -> None:
            status, _ = await call("GET", f"/sessions/{session_id}")
            assert status == 200

        async def lifecycle(n: int) -> None:
            sid = await start(n)
            for path in (f"/sessions/{sid}", f"/sessions/{sid}/metrics"):
                assert (await call("GET", path))[0] == 200
            assert (await call("DELETE", f"/sessions/{sid}"))[0] in (200, 202, 204)

        gets, cycles = [], []
        for _ in range(rounds):
            gets.append(await timed(get, count))
            cycles.append(await timed(lifecycle, count // 8))
            print(f"round: get {gets[-1]:.1f} µs, lifecycle {cycles[-1]:.1f} µs", flush=True)
        print(f"\nin-process CPU per request, best of {rounds} rounds:")
        print(f"  Get        {min(gets):7.1f} µs")
        print(f"  lifecycle  {min(cycles):7.1f} µs")


async def suite(rounds: int) -> None:
    """The full bench's HTTP read and lifecycle scenarios, alternating the servers."""
    from . import scenarios
    from .noop import SESSION_ID

    cfg = scenarios.Config()
    cores = Cores.pick()
    cores.pin_self()
    logs = Path(tempfile.mkdtemp(prefix="http-suite-"))
    ratios: list[float] = []
    for index in range(rounds):
        server = agentplane_server(cores, logs)
        await server.start()
        try:
            ours = await scenarios.reads(server, "http", cfg.read_clients, cfg.read)
            life = await scenarios.lifecycles(server, "http", cfg)
        finally:
            await server.stop()
        server = noop_server(cores, logs)
        await server.start()
        try:
            target = (SESSION_ID, "bench-call")
            noop = await scenarios.reads(server, "http", cfg.read_clients, cfg.noop, target, "noop")
        finally:
            await server.stop()
        ratio = ours["read/http/cpu_ms"] / noop["noop/cpu_ms"]
        ratios.append(ratio)
        print(
            f"round {index + 1}: Get {1000 * ours['read/http/cpu_ms']:.1f} µs "
            f"({ours['read/http/rate']:,.0f}/s), no-op {1000 * noop['noop/cpu_ms']:.1f} µs "
            f"({noop['noop/rate']:,.0f}/s): {ratio:.2f}x; lifecycle "
            f"{life['lifecycle/http/cpu_ms']:.3f} ms ({life['lifecycle/http/rate']:,.0f}/s)",
            flush=True,
        )
    print(f"Get / no-op server CPU, median of {rounds}: {statistics.median(ratios):.2f}x")


async def interleaved(pairs: int) -> None:
    """The suite's two ratios from servers that stay up, their windows alternating.

    agentplane, the no-op stack and (when its venv is there) the reference
    server run at once, each pinned to the server core; each pair measures
    ours and then the other, one window each (3 s, as the suite's), so both
    sides of a ratio are seconds apart instead of a server restart apart.
    """
    from . import scenarios
    from .noop import SESSION_ID
    from .servers import peer_python, peer_server

    cfg = scenarios.Config()
    cores = Cores.pick()
    cores.pin_self()
    logs = Path(tempfile.mkdtemp(prefix="http-interleaved-"))
    servers = [agentplane_server(cores, logs), noop_server(cores, logs)]
    with_peer = peer_python().exists()
    if with_peer:
        servers.append(peer_server(cores, logs))
    for server in servers:
        await server.start()
    ours, noop = servers[0], servers[1]
    gets: list[float] = []
    lives: list[float] = []
    try:
        target = (SESSION_ID, "bench-call")
        for index in range(pairs):
            mine = await scenarios.reads(ours, "http", cfg.read_clients, cfg.read)
            floor = await scenarios.reads(noop, "http", cfg.read_clients, cfg.noop, target, "noop")
            gets.append(mine["read/http/cpu_ms"] / floor["noop/cpu_ms"])
            line = (
                f"pair {index + 1}: Get {1000 * mine['read/http/cpu_ms']:.1f} µs, no-op "
                f"{1000 * floor['noop/cpu_ms']:.1f} µs: {gets[-1]:.2f}x"
            )
            if with_peer:
                life = await scenarios.lifecycles(ours, "http", cfg)
                theirs = await scenarios.lifecycles(servers[2], "peer", cfg)
                lives.append(life["lifecycle/http/rate"] / theirs["lifecycle/peer/rate"])
                line += (
                    f"; lifecycles {life['lifecycle/http/rate']:,.0f}/s, peer "
                    f"{theirs['lifecycle/peer/rate']:,.0f}/s: {lives[-1]:.2f}x"
                )
            print(line, flush=True)
    finally:
        for server in servers:
            await server.stop()
    print(
        f"Get / no-op server CPU, median of {pairs}: {statistics.median(gets):.2f}x "
        f"({min(gets):.2f}-{max(gets):.2f})"
    )
    if lives:
        print(
            f"lifecycles / peer, median of {pairs}: {statistics.median(lives):.2f}x "
            f"({min(lives):.2f}-{max(lives):.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--in-process", action="store_true", help="no socket: the ASGI app")
    parser.add_argument("--suite", action="store_true", help="./dev bench's HTTP scenarios only")
    parser.add_argument(
        "--interleave", type=int, default=0, help="PAIRS: the suite's ratios, servers kept up"
    )
    parser.add_argument("--profile", type=float, default=0.0)
    parser.add_argument("--profile-out", type=Path, default=Path("http-path.folded"))
    parser.add_argument("--profile-lifecycles", action="store_true", help="profile lifecycles too")
    args = parser.parse_args()
    if args.in_process:
        asyncio.run(in_process(args.rounds, args.requests))
    elif args.interleave:
        asyncio.run(interleaved(args.interleave))
    elif args.suite:
        asyncio.run(suite(args.rounds))
    elif args.profile:
        asyncio.run(profile(args.profile, args.profile_out, lifecycles=args.profile_lifecycles))
    else:
        asyncio.run(run(args.rounds, args.requests))


if __name__ == "__main__":
    main()
