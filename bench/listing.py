"""ListSessions with many sessions held: page latency and server CPU per page.

One server (``agentplane serve`` with the trivial agent, no session limits)
holds K sessions, first 1,000 then 10,000 in the same process, so the ratio
of the two is measured within one run. Before the held ones it starts a few
sessions that fail at once (END_REASON_ERROR, retained for the retention
window: the oldest sessions) and, half-way, the sessions of one call. At each
K, one request at a time, over gRPC (grpclib with the protobuf classes, as a
backend would call it) and over the gateway's ``GET /sessions`` (the minimal
HTTP/1.1 client):

- ``first50`` / ``first1000``: the first page, newest first, of 50 and 1,000;
- ``middle50``: a page of 50 half-way through (its token read beforehand);
- ``call50``: the sessions of one call (``GET /calls/{call_id}/sessions``);
- ``error50``: ``end_reasons=END_REASON_ERROR``, the few oldest sessions: a
  page examines at most 5,000 sessions, so with 10,000 held the first page
  comes back empty with a token and the second holds them (the bounded scan).

Latencies p50/p99 over ``repeats`` requests, server CPU per page (the server
process's CPU time over the loop, from /proc, divided by the pages).

``python -m bench --list`` runs it; ``--quick`` a tiny smoke run.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import json
import math
import os
import statistics
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpclib.client import Channel

from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.clients.grpcio.session_service_grpc import SessionServiceStub

from .clients import open_transport
from .httpclient import HttpConnection
from .load import percentile
from .run import git_state, machine
from .scenarios import start_many
from .servers import Cores, ServerProcess, agentplane_server

Sample = dict[str, float]
LIST_CALL = "list-call"
VARIANTS = ("first50", "first1000", "middle50", "call50", "error50")
LABELS = {
    "first50": "first page, 50",
    "first1000": "first page, 1,000",
    "middle50": "middle page, 50 (by token)",
    "call50": "one call's sessions (call_id)",
    "error50": "end_reasons=ERROR, first page (bounded scan)",
}
VIAS = ("grpc", "http")


@dataclass(frozen=True)
class ListConfig:
    """Sizes of one run (the defaults are the full run)."""

    runs: int = 3
    held_steps: tuple[int, ...] = (1_000, 10_000)
    repeats: int = 300  # requests per variant and transport (page size 50)
    repeats_large: int = 100  # the same for pages of 1,000
    warmup: int = 10
    call_sessions: int = 20
    error_sessions: int = 5


QUICK = ListConfig(
    runs=1,
    held_steps=(30, 120),
    repeats=8,
    repeats_large=4,
    warmup=2,
    call_sessions=3,
    error_sessions=2,
)


def _log(message: str) -> None:
    print(message, flush=True)


def _request(variant: str, token: str) -> dict[str, Any]:
    """The ListSessionsRequest fields of a variant."""
    if variant == "first1000":
        return {"page_size": 1000}
    if variant == "middle50":
        return {"page_size": 50, "page_token": token}
    if variant == "call50":
        return {"page_size": 50, "call_id": LIST_CALL}
    if variant == "error50":
        return {"page_size": 50, "end_reasons": ["END_REASON_ERROR"]}
    return {"page_size": 50}


def _grpc_message(fields: dict[str, Any]) -> api_pb.ListSessionsRequest:
    return api_pb.ListSessionsRequest(**fields)


def _http_path(fields: dict[str, Any]) -> str:
    query = [(k, v) for k, v in fields.items() if k not in ("call_id", "end_reasons")]
    query += [("end_reasons", v) for v in fields.get("end_reasons", [])]
    base = f"/calls/{fields['call_id']}/sessions" if "call_id" in fields else "/sessions"
    return base + "?" + urllib.parse.urlencode(query)


class _Lister:
    """ListSessions over gRPC and HTTP against one server; answers (sessions, next token)."""

    def __init__(self, server: ServerProcess) -> None:
        assert server.endpoint.grpc_port is not None
        self.server = server
        self.channel = Channel(server.endpoint.host, server.endpoint.grpc_port)
        self.stub = SessionServiceStub(self.channel)
        self.http: HttpConnection | None = None

    async def open(self) -> None:
        self.http = await HttpConnection.open(
            self.server.endpoint.host, self.server.endpoint.http_port
        )

    async def grpc(self, fields: dict[str, Any]) -> tuple[int, str]:
        reply = await self.stub.ListSessions(_grpc_message(fields))
        assert reply is not None
        return len(reply.sessions), reply.next_page_token

    async def over_http(self, fields: dict[str, Any]) -> tuple[int, str]:
        assert self.http is not None
        try:
            _, body = await self.http.request("GET", _http_path(fields), expect=(200,))
        except ConnectionError:  # the server closed the idle keep-alive connection
            self.http.close()
            await self.open()
            _, body = await self.http.request("GET", _http_path(fields), expect=(200,))
        page = json.loads(body)
        return len(page.get("sessions", [])), page.get("next_page_token", "")

    def call(self, via: str) -> Callable[[dict[str, Any]], Awaitable[tuple[int, str]]]:
        return self.grpc if via == "grpc" else self.over_http

    def close(self) -> None:
        self.channel.close()
        if self.http is not None:
            self.http.close()


async def _middle_token(lister: _Lister, held: int) -> str:
    """The token of the page that starts about half-way through the sessions held."""
    token, walked = "", 0
    while walked < held // 2:
        size = min(1000, held // 2 - walked)
        count, token = await lister.grpc({"page_size": size, "page_token": token})
        walked += count
        if not token:
            break
    return token


async def _measure(
    lister: _Lister, via: str, fields: dict[str, Any], repeats: int, warmup: int
) -> tuple[list[float], float, float, int]:
    """``repeats`` requests one at a time: latencies (s), server CPU (s), the share of the
    server's core other processes took, and the sessions in the last page."""
    call = lister.call(via)
    for _ in range(warmup):
        await call(fields)
    gc.collect()
    gc.disable()  # the harness's own collections would show as server latency
    try:
        latencies: list[float] = []
        server = lister.server
        cpu0, foreign0, t0 = server.cpu_seconds(), server.foreign_seconds(), time.perf_counter()
        count = 0
        for _ in range(repeats):
            began = time.perf_counter()
            count, _ = await call(fields)
            latencies.append(time.perf_counter() - began)
        cpu = server.cpu_seconds() - cpu0
        foreign = (server.foreign_seconds() - foreign0) / (time.perf_counter() - t0)
    finally:
        gc.enable()
    return latencies, cpu, max(foreign, 0.0), count


async def _pages_to_exhaust(lister: _Lister, fields: dict[str, Any]) -> tuple[int, int]:
    """How many pages a client walks to the end of a filter, and the sessions found."""
    token, pages, found = "", 0, 0
    while True:
        count, token = await lister.grpc({**fields, "page_token": token})
        pages += 1
        found += count
        if not token or pages > 1000:
            return pages, found


async def _start_failing(server: ServerProcess, count: int) -> None:
    transport = open_transport("grpcio", server.endpoint)
    try:
        driver = await transport.driver()
        for n in range(count):
            await driver.start(f"fail-{n}", {"fail_after_ms": 20})
    finally:
        await transport.aclose()


async def _start_call(server: ServerProcess, count: int) -> None:
    transport = open_transport("grpcio", server.endpoint)
    try:
        driver = await transport.driver()
        for _ in range(count):
            await driver.start(LIST_CALL)
    finally:
        await transport.aclose()


async def list_round(cfg: ListConfig, server: ServerProcess) -> Sample:
    sample: Sample = {}
    await _start_failing(server, cfg.error_sessions)
    lister = _Lister(server)
    await lister.open()
    total = 0
    try:
        for k in cfg.held_steps:
            half = (k - total) // 2
            await start_many(server, "grpcio", half)
            if total == 0:
                await _start_call(server, cfg.call_sessions)
            await start_many(
                server, "grpcio", k - total - half - (cfg.call_sessions if total == 0 else 0)
            )
            total = k
            await asyncio.sleep(1.0)
            sample[f"list/{k}/rss_mib"] = server.rss() / 2**20
            token = await _middle_token(lister, k)
            pages, found = await _pages_to_exhaust(lister, _request("error50", ""))
            sample[f"list/{k}/error50/pages_to_end"] = float(pages)
            sample[f"list/{k}/error50/found"] = float(found)
            for variant in VARIANTS:
                fields = _request(variant, token)
                repeats = cfg.repeats_large if variant == "first1000" else cfg.repeats
                for via in VIAS:
                    latencies, cpu, foreign, count = await _measure(
                        lister, via, fields, repeats, cfg.warmup
                    )
                    key = f"list/{k}/{variant}/{via}"
                    sample[f"{key}/p50"] = 1000 * percentile(latencies, 0.50)
                    sample[f"{key}/p99"] = 1000 * percentile(latencies, 0.99)
                    sample[f"{key}/cpu_ms"] = 1000 * cpu / repeats
                    sample[f"{key}/sessions"] = float(count)
                    sample[f"{key}/foreign_pct"] = 100.0 * foreign
                _log(
                    f"    {k} held, {variant}: gRPC p50 "
                    f"{sample[f'list/{k}/{variant}/grpc/p50']:.2f} ms, HTTP p50 "
                    f"{sample[f'list/{k}/{variant}/http/p50']:.2f} ms, "
                    f"{sample[f'list/{k}/{variant}/grpc/sessions']:.0f} sessions, CPU/page "
                    f"{sample[f'list/{k}/{variant}/grpc/cpu_ms']:.2f} / "
                    f"{sample[f'list/{k}/{variant}/http/cpu_ms']:.2f} ms"
                )
    finally:
        lister.close()
    return sample


async def run(cfg: ListConfig, out_dir: Path) -> dict[str, Any]:
    import dataclasses

    cores = Cores.pick()
    cores.pin_self()
    logs = out_dir / "logs"
    result: dict[str, Any] = {
        "suite": "list",
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": machine(),
        "cores": {"server": cores.server, "load": cores.load},
        "config": json.loads(json.dumps(dataclasses.asdict(cfg))),
        "samples": {"agentplane": []},
    }
    began = time.monotonic()
    for index in range(cfg.runs):
        _log(f"[round {index + 1}/{cfg.runs}] agentplane, ListSessions")
        server = agentplane_server(cores, logs)
        await server.start()
        try:
            result["samples"]["agentplane"].append(await list_round(cfg, server))
        finally:
            await server.stop()
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["seconds"] = time.monotonic() - began
    return result


def run_sync(cfg: ListConfig, out_dir: Path) -> dict[str, Any]:
    result = asyncio.run(run(cfg, out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "raw.json").write_text(json.dumps(result, indent=1, allow_nan=True))
    return result


# ------------------------------------------------------------------ report


def _values(result: dict[str, Any], key: str) -> list[float]:
    found = [s.get(key) for s in result["samples"]["agentplane"]]
    return [float(v) for v in found if v is not None and math.isfinite(v)]


def _med(result: dict[str, Any], key: str) -> float:
    values = _values(result, key)
    return statistics.median(values) if values else math.nan


def _fmt(result: dict[str, Any], key: str, digits: int = 2) -> str:
    values = _values(result, key)
    if not values:
        return "\u2013"
    text = f"{statistics.median(values):.{digits}f}"
    if len(values) > 1:
        text += f" ({min(values):.{digits}f}\u2013{max(values):.{digits}f})"
    return text


def _ratio(result: dict[str, Any], small: int, large: int, tail: str) -> str:
    """Median over rounds of (figure at ``large`` / figure at ``small``), round by round."""
    ratios = []
    for sample in result["samples"]["agentplane"]:
        a, b = sample.get(f"list/{small}/{tail}"), sample.get(f"list/{large}/{tail}")
        if a and b and math.isfinite(a) and math.isfinite(b):
            ratios.append(b / a)
    return f"{statistics.median(ratios):.2f}\u00d7" if ratios else "\u2013"


def render(result: dict[str, Any], notes: str = "") -> str:
    steps = [int(k) for k in result["config"]["held_steps"]]
    small, large = steps[0], steps[-1]
    m = result["machine"]
    load0 = " / ".join(f"{v:.2f}" for v in m["loadavg_start"])
    load1 = " / ".join(f"{v:.2f}" for v in m.get("loadavg_end", []))
    runs = len(result["samples"]["agentplane"])
    lines = [
        f"# ListSessions with {large:,} sessions held ({result['started_at'][:10]})",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu_model'] or 'unknown CPU'}), a shared and noisy VM; "
        f"Python {m['python']}, Linux {m['kernel']}. Load average (1/5/15 min) {load0} at the "
        f"start, {load1} at the end. The server (`agentplane serve --agent "
        f"bench.trivial_agent:make_launcher`, no session limits) pinned to core "
        f"{result['cores']['server']}, the harness to core {result['cores']['load']}. "
        f"agentplane at {result['git']}. {runs} round(s), each a fresh server, "
        f"{result['seconds'] / 60:.1f} min in all.",
        "",
        f"Each round holds {small:,} sessions, then {large:,} in the same server (the trivial "
        f"agent waits until cancelled), plus {result['config']['error_sessions']} sessions that "
        f"failed at once (END_REASON_ERROR, the oldest) and {result['config']['call_sessions']} "
        f"sessions of one call. Requests go one at a time: gRPC is grpclib with the protobuf "
        f"classes, HTTP the gateway's `GET /sessions` (`/calls/{{call_id}}/sessions` for the call "
        f"filter) over a keep-alive HTTP/1.1 connection. {result['config']['repeats']} requests "
        f"per figure ({result['config']['repeats_large']} for pages of 1,000) after "
        f"{result['config']['warmup']} unmeasured. Every figure is the median over the rounds "
        "(min\u2013max); latencies in ms; CPU is the server process's CPU time per page (/proc). "
        f"The ratio is the {large:,} figure over the {small:,} one, round by round.",
        "",
        "| page | held | gRPC p50 | gRPC p99 | HTTP p50 | HTTP p99 | CPU/page gRPC | "
        "CPU/page HTTP | sessions in page |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        for k in steps:
            key = f"list/{k}/{variant}"
            lines.append(
                f"| {LABELS[variant]} | {k:,} | {_fmt(result, f'{key}/grpc/p50')} | "
                f"{_fmt(result, f'{key}/grpc/p99')} | {_fmt(result, f'{key}/http/p50')} | "
                f"{_fmt(result, f'{key}/http/p99')} | {_fmt(result, f'{key}/grpc/cpu_ms')} | "
                f"{_fmt(result, f'{key}/http/cpu_ms')} | "
                f"{_med(result, f'{key}/grpc/sessions'):.0f} |"
            )
    lines += [
        "",
        f"### Cost per page: {large:,} held over {small:,} held",
        "",
        "| page | gRPC p50 | HTTP p50 | CPU/page gRPC | CPU/page HTTP |",
        "|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        tails = [f"{variant}/grpc/p50", f"{variant}/http/p50"]
        tails += [f"{variant}/grpc/cpu_ms", f"{variant}/http/cpu_ms"]
        cells = " | ".join(_ratio(result, small, large, t) for t in tails)
        lines.append(f"| {LABELS[variant]} | {cells} |")
    lines += [
        "",
        "The selective filter, walked to its end (pages of 50):",
        "",
        "| held | pages to the last | ERROR sessions found |",
        "|---|---|---|",
    ]
    for k in steps:
        lines.append(
            f"| {k:,} | {_med(result, f'list/{k}/error50/pages_to_end'):.0f} | "
            f"{_med(result, f'list/{k}/error50/found'):.0f} |"
        )
    foreign = [
        v
        for s in result["samples"]["agentplane"]
        for key, v in s.items()
        if key.endswith("/foreign_pct") and math.isfinite(v)
    ]
    if foreign:
        lines += [
            "",
            f"Other processes took {statistics.median(foreign):.0f}% of the server's core in "
            f"the median measurement, {max(foreign):.0f}% at most (`foreign_pct` in the raw "
            "data): latencies include waiting for the core; CPU per page does not.",
        ]
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any], base: Path, notes: str = "") -> list[Path]:
    path = base.parent / f"{base.name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(result, notes))
    return [path]
