"""The markdown report of one cluster run.

Every figure is the median over the rounds with its min-max; every ratio is
computed round by round (a deployment's round r against another's round r,
which ran minutes apart at most) and then summarised the same way.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from ..report import Figures, load_text, table, verdict
from .run import EMBEDDED, REDIS1, REDIS3

DASH = "\u2013"
TIMES = "\u00d7"
NAMES = {EMBEDDED: "1 node, no Redis", REDIS1: "1 node + Redis", REDIS3: "3 nodes + Redis"}
OPS = (
    ("start", "Start"),
    ("get_owner", "Get through the owner"),
    ("get_other", "Get through another node"),
    ("metrics_other", "Metrics through another node"),
    ("close_same", "Close through the owner"),
    ("close_cross", "Close through another node"),
    ("event", "one agent event (of a running session)"),
)
CLOSE_TARGET_MS = 50.0


def _lat(f: Figures, dep: str, prefix: str, digits: int = 1) -> str:
    p50, p99 = f.stat(dep, f"{prefix}/p50"), f.stat(dep, f"{prefix}/p99")
    if not p50.ok:
        return DASH
    return f"{p50.median:.{digits}f} / {p99.fmt(digits)}"


def _ratio(f: Figures, a: tuple[str, str], b: tuple[str, str], digits: int = 2) -> str:
    stat = f.ratio(a, b)
    return stat.fmt(digits, TIMES) if stat.ok else DASH


def _nodes(result: dict[str, Any]) -> int:
    return int(result["config"].get("nodes", 3))


def _header(result: dict[str, Any], f: Figures) -> list[str]:
    m = result["machine"]
    cores = result.get("cores", {})
    cfg = result["config"]
    runs = len(f.samples.get(REDIS3, []))
    pinned = (
        f"Every server process (the nodes and redis-server) pinned to core {cores['server']}, "
        f"the load generator to core {cores['load']}. "
        if cores.get("server") is not None
        else "Not pinned (fewer than 2 cores). "
    )
    return [
        f"# agentplane as a cluster on Redis ({result['started_at'][:10]})",
        "",
        f"Machine: {m['nproc']} cores ({m.get('cpu_model') or 'unknown CPU'}), Python {m['python']}, "
        f"Linux {m['kernel']}, {result.get('redis_version') or 'redis-server'}. Load average "
        f"(1/5/15 min) {load_text(m.get('loadavg_start'))} at the start, "
        f"{load_text(m.get('loadavg_end'))} at the end. {pinned}agentplane at "
        f"{result.get('git', 'unknown')}. {runs} alternating rounds (1 node without Redis, "
        f"1 node on Redis, {_nodes(result)} nodes on Redis, then again), "
        f"{result.get('seconds', 0) / 60:.1f} min in all.",
        "",
        "Each round starts every deployment afresh: a new redis-server (no persistence) and new "
        "`agentplane serve --agent bench.trivial_agent:make_launcher` nodes "
        "(`--redis-url`, `--advertise-address`). The clients are grpcio (`grpc.aio`, one channel "
        f"per node) and, for the HTTP Close, the minimal HTTP/1.1 client. {cfg['clients']} "
        "concurrent clients drive the throughput scenarios. Every figure: median (min\u2013max) "
        "over the rounds; ratios are computed round by round. Latencies in ms; server CPU is the "
        "sum over every server process (nodes and Redis) from /proc, with Redis's share beside it; "
        '"load core busy" is the load generator\'s own CPU use.' + _foreign(f),
        "",
    ]


def _foreign(f: Figures) -> str:
    """Other processes' CPU on the servers' core during the timed windows."""
    values = [
        value
        for samples in f.samples.values()
        for sample in samples
        for key, value in sample.items()
        if key.endswith("/foreign_pct")
    ]
    if not values:
        return ""
    return (
        f" Other processes took {statistics.median(values):.1f}% of the servers' core in the "
        f"median timed window, {max(values):.1f}% at most (`foreign_pct` in the raw data)."
    )


def _limits(result: dict[str, Any], f: Figures) -> list[str]:
    """What this machine can and cannot show (the figures filled in)."""
    n = _nodes(result)
    start = f.stat(REDIS3, "starts/cpu_ms/redis")
    life = f.stat(REDIS3, "lifecycle/rr/cpu_ms/redis")
    get = f.stat(REDIS3, f"get/other/c{result['config']['read_clients']}/cpu_ms/redis")
    nodes_life = f.ratio(
        (REDIS3, "lifecycle/rr/cpu_ms"), (REDIS3, "lifecycle/rr/cpu_ms/redis"), lambda a, b: a - b
    )
    ceiling = ""
    # Redis's CPU is read from its tick counters: a window of cheap Gets can read 0.
    if start.ok and life.ok and get.ok and nodes_life.ok and min(start.median, life.median) > 0:
        gets = (
            f"{1000 / get.median:,.0f} Gets/s"
            if get.median > 0
            else "more Gets/s than a window of Gets shows (its CPU read 0)"
        )
        ceiling = (
            f" Under load on {n} nodes, Redis spent {start.median:.2f} ms of CPU per Start, "
            f"{life.median:.2f} ms per Start \u2192 Get \u2192 Close lifecycle and "
            f"{1000 * get.median:.0f} \u00b5s per Get (sections 2 and 3), while the nodes spent "
            f"{nodes_life.median:.1f} ms per lifecycle: one Redis core would carry about "
            f"{1000 / start.median:,.0f} Starts/s, {1000 / life.median:,.0f} lifecycles/s or "
            f"{gets} on this CPU, whatever the number of nodes. "
            f"The nodes' share is {nodes_life.median / life.median:.0f} times Redis's: Redis "
            f"becomes the limit once about {nodes_life.median / life.median:.0f} cores' worth "
            "of nodes run lifecycles (the nodes' own work, the agents and the RPCs, spreads "
            "over as many machines as there are nodes)."
        )
    return [
        "## What 3 nodes on 2 cores can and cannot show",
        "",
        f"All {n} nodes, Redis and (on the other core) the load generator share 2 cores, so "
        "this machine cannot show throughput growing with nodes: the server side has one core "
        "whatever the deployment, and the ratios below are the price of the cluster on a fixed "
        "CPU budget (Redis's round trips, the event stream every node follows, three Python "
        "processes time-sharing one core), not what a second or third machine would add. "
        "Latencies on 3 nodes are pessimistic for the same reason: a node's answer waits for "
        "the core while the other nodes and Redis use it. What this machine does show: that "
        "the cross-node paths are correct under load, their latency, the CPU each operation "
        "costs every process (so capacity per core follows), and exactly which Redis commands "
        "each operation sends, which is what bounds the design when nodes are added." + ceiling,
        "",
        _on_paper(f, n),
        "",
    ]


def _growth(f: Figures, op: str, n: int) -> tuple[float, float] | None:
    """Commands an operation sends on 1 node, and how many more each further node adds."""
    one, many = f.stat(REDIS1, f"ops/{op}/node"), f.stat(REDIS3, f"ops/{op}/node")
    if not one.ok or not many.ok or n < 2:
        return None
    per_node = (many.median - one.median) / (n - 1)
    return one.median, per_node


def _on_paper(f: Figures, n: int) -> str:
    text = (
        "On paper: a Get (one GET) and a Metrics through another node (a PUBLISH, a reply "
        "list, three reads of the record) cost the same Redis commands whatever the "
        "number of nodes. Events do not: each is appended once (one script call) and then "
        "read by every node's follower"
    )
    event, start, close = (_growth(f, op, n) for op in ("event", "start", "close_same"))
    if event is None or start is None or close is None:
        return text + "."
    base, per_node = event[0] - event[1], event[1]
    return text + (
        f", about {per_node:.1f} commands per node when events come one at a time (the "
        "follower's blocking `XREAD` returns the entry, which carries its epoch, and the "
        "follower blocks again; only a read that found nothing asks for the epoch). One at a "
        "time, an event costs about "
        f"{base:.1f} + {per_node:.1f}\u00b7N commands on N nodes ({base + 10 * per_node:.0f} on "
        f"10 nodes, {base + 50 * per_node:.0f} on 50); a Start carries one event and grows by "
        f"{start[1]:.1f} commands per node, a Close three (two state changes and its end) and grows "
        f"by {close[1]:.1f}. Under load a follower reads many events in one `XREAD`, so the "
        "growth per event is smaller (section 2), but it stays proportional to the number of "
        "nodes times the rate of event batches: that follower traffic, not admission, is "
        "what to watch as nodes are added. Redis is one process on one core: the cluster's "
        "ceiling is Redis's CPU per operation, unless the keys are spread over several Redis "
        "instances, which this design (one Redis, scripts over keys they compute) does not do."
    )


def _targets(f: Figures) -> list[str]:
    rows = []
    for via, name in (("grpc", "gRPC Close"), ("http", "HTTP DELETE")):
        p99 = f.stat(REDIS3, f"close/cross/{via}/p99")
        worst = f"; worst round {max(p99.values):.1f} ms" if p99.ok else ""
        rows.append(
            [
                f"cross-node {name} p99 < {CLOSE_TARGET_MS:.0f} ms",
                p99.fmt(1, " ms") + worst if p99.ok else DASH,
                verdict(p99, lambda v: v < CLOSE_TARGET_MS),
            ]
        )
    return [
        "## Targets",
        "",
        *table(["target", "measured (median, min\u2013max)", "verdict"], rows),
        "The reference (Vision Agents' Redis registry) closes a session running on another "
        "node on its next 5 s poll; agentplane's Close answers once the owner has ended it.",
        "",
    ]


def _close(f: Figures) -> list[str]:
    rows = []
    for dep in (EMBEDDED, REDIS1, REDIS3):
        for via, client in (("grpc", "gRPC Close"), ("http", "HTTP DELETE")):
            for where in ("same", "cross"):
                prefix = f"close/{where}/{via}"
                if not f.stat(dep, f"{prefix}/p50").ok:
                    continue
                ratio = (
                    _ratio(f, (dep, f"{prefix}/p50"), (dep, f"close/same/{via}/p50"))
                    if where == "cross"
                    else ""
                )
                rows.append(
                    [
                        NAMES[dep],
                        client,
                        "the owner" if where == "same" else "another node",
                        f.stat(dep, f"{prefix}/p50").fmt(2),
                        f.stat(dep, f"{prefix}/p99").fmt(2),
                        f.stat(dep, f"{prefix}/max").fmt(1),
                        ratio,
                    ]
                )
    starts = [
        [NAMES[dep], f.stat(dep, "start/serial/p50").fmt(2), f.stat(dep, "start/serial/p99").fmt(2)]
        for dep in (EMBEDDED, REDIS1, REDIS3)
        if f.stat(dep, "start/serial/p50").ok
    ]
    return [
        "## 1. Close: through the node running the session, and through another node",
        "",
        "One at a time: a Start on node 0, then its Close through node 0 or node 1; the four "
        "variants alternate session by session. The Close answers once the session has ended "
        "(its record says ENDED, CLOSED_BY_REQUEST).",
        "",
        *table(
            ["deployment", "client", "through", "p50 ms", "p99 ms", "max ms", "p50 \u00d7 owner's"],
            rows,
        ),
        "The Starts of the same loop, one at a time on node 0:",
        "",
        *table(["deployment", "Start p50 ms", "Start p99 ms"], starts),
    ]


def _throughput(f: Figures, cfg: dict[str, Any]) -> list[str]:
    rows = []
    for dep in (EMBEDDED, REDIS1, REDIS3):
        p = "starts"
        if not f.stat(dep, f"{p}/rate").ok:
            continue
        rows.append(
            [
                NAMES[dep],
                f.stat(dep, f"{p}/rate").fmt(0),
                _ratio(f, (dep, f"{p}/rate"), (EMBEDDED, f"{p}/rate")),
                f.stat(dep, f"{p}/cpu_ms").fmt(3),
                f.stat(dep, f"{p}/cpu_ms/redis").fmt(3) if dep != EMBEDDED else DASH,
                f"{f.stat(dep, f'{p}/p50/start').median:.1f} / "
                f"{f.stat(dep, f'{p}/p99/start').fmt(1)}",
                f.stat(dep, f"{p}/client_busy_pct").fmt(0, "%"),
                f.stat(dep, f"{p}/errors").fmt(0),
            ]
        )
    lines = [
        "## 2. Throughput: Starts/s and lifecycles/s, 1 node vs 3 nodes",
        "",
        f"{cfg['clients']} concurrent clients. Starts: each loops Start (the sessions are "
        "closed after the window, untimed), each call going to the next node in turn (a "
        "balancer spreading calls round-robin). Server CPU: every process's, per operation.",
        "",
        *table(
            [
                "deployment",
                "Starts/s",
                "\u00d7 1 node without Redis",
                "server CPU ms / Start",
                "of which Redis",
                "Start p50 / p99 ms",
                "load core busy",
                "errors",
            ],
            rows,
        ),
    ]
    rows = []
    variants = (
        (EMBEDDED, "one", "1 node, no Redis"),
        (REDIS1, "one", "1 node + Redis"),
        (REDIS3, "rr", "3 nodes + Redis, each call to the next node"),
        (REDIS3, "sticky", "3 nodes + Redis, each client on one node"),
    )
    for dep, variant, name in variants:
        p = f"lifecycle/{variant}"
        if not f.stat(dep, f"{p}/rate").ok:
            continue
        rows.append(
            [
                name,
                f.stat(dep, f"{p}/rate").fmt(0),
                _ratio(f, (dep, f"{p}/rate"), (EMBEDDED, "lifecycle/one/rate")),
                _ratio(f, (dep, f"{p}/rate"), (REDIS1, "lifecycle/one/rate"))
                if dep == REDIS3
                else "",
                f.stat(dep, f"{p}/cpu_ms").fmt(2),
                f.stat(dep, f"{p}/cpu_ms/redis").fmt(2) if dep != EMBEDDED else DASH,
                *(
                    f"{f.stat(dep, f'{p}/p50/{c}').median:.1f} / {f.stat(dep, f'{p}/p99/{c}').fmt(1)}"
                    for c in ("start", "get", "close")
                ),
                f.stat(dep, f"{p}/client_busy_pct").fmt(0, "%"),
                f.stat(dep, f"{p}/errors").fmt(0),
            ]
        )
    lines += [
        "Lifecycles: each client loops Start \u2192 Get \u2192 Close. With 3 nodes, either "
        "each call goes to the next node (so the Get and the Close mostly reach a node that "
        "does not run the session), or each client keeps one node (as gRPC through a "
        "connection-level balancer does: every call reaches the owner).",
        "",
        *table(
            [
                "deployment, balancing",
                "lifecycles/s",
                "\u00d7 1 node without Redis",
                "\u00d7 1 node + Redis",
                "server CPU ms / lifecycle",
                "of which Redis",
                "Start p50 / p99",
                "Get p50 / p99",
                "Close p50 / p99",
                "load core busy",
                "errors",
            ],
            rows,
        ),
    ]
    return lines


def _gets(f: Figures, cfg: dict[str, Any]) -> list[str]:
    c = f"c{cfg['read_clients']}"
    rows = []
    for dep in (EMBEDDED, REDIS1, REDIS3):
        for who, name in (("owner", "the owner (node 0)"), ("other", "another node (node 1)")):
            p = f"get/{who}"
            if not f.stat(dep, f"{p}/{c}/rate").ok:
                continue
            via = "node0" if who == "owner" else "node1"
            rows.append(
                [
                    NAMES[dep],
                    name,
                    _lat(f, dep, f"{p}/serial", 2),
                    f.stat(dep, f"{p}/serial/cpu_ms").fmt(3),
                    f.stat(dep, f"{p}/{c}/rate").fmt(0),
                    _lat(f, dep, f"{p}/{c}"),
                    f.stat(dep, f"{p}/{c}/cpu_ms").fmt(3),
                    f.stat(dep, f"{p}/{c}/cpu_ms/{via}").fmt(3),
                    f.stat(dep, f"{p}/{c}/cpu_ms/redis").fmt(3) if dep != EMBEDDED else DASH,
                    f.stat(dep, f"{p}/{c}/client_busy_pct").fmt(0, "%"),
                ]
            )
    return [
        "## 3. Get through the owner vs through another node",
        "",
        "One session runs on node 0; Get it through node 0 or node 1: one client one Get at a "
        f"time, then {cfg['read_clients']} concurrent. Server CPU per Get: every process, the "
        "node answering, and Redis.",
        "",
        *table(
            [
                "deployment",
                "through",
                "one at a time p50 / p99 ms",
                "server CPU ms / Get",
                f"@{cfg['read_clients']} Get/s",
                f"@{cfg['read_clients']} p50 / p99 ms",
                "server CPU ms / Get",
                "of which the node answering",
                "of which Redis",
                "load core busy",
            ],
            rows,
        ),
        "The owner answers a Get from its own record; another node reads the record from "
        "Redis (one GET, section 4 counts them).",
        "",
    ]


def _breakdown(f: Figures, dep: str, op: str, origin: str) -> str:
    names = sorted(
        {
            key.rsplit("/", 1)[1]
            for s in f.samples.get(dep, [])
            for key in s
            if key.startswith(f"ops/{op}/{origin}/")
        }
    )
    parts = []
    for name in names:
        stat = f.stat(dep, f"ops/{op}/{origin}/{name}")
        if stat.ok and stat.median >= 0.05:
            parts.append((stat.median, f"{name} {stat.median:.1f}"))
    return ", ".join(text for _, text in sorted(parts, reverse=True)) or DASH


def _commands(result: dict[str, Any], f: Figures) -> list[str]:
    n = _nodes(result)
    cfg = result["config"]
    rows = []
    for op, name in OPS:
        if not f.stat(REDIS3, f"ops/{op}/node").ok and not f.stat(REDIS1, f"ops/{op}/node").ok:
            continue
        one = f.stat(REDIS1, f"ops/{op}/node")
        rows.append(
            [
                name,
                one.fmt(1) if one.ok else DASH,
                f.stat(REDIS3, f"ops/{op}/node").fmt(1),
                f.stat(REDIS3, f"ops/{op}/lua").fmt(1),
                f.stat(REDIS3, f"ops/{op}/redis_us").fmt(0),
                f.stat(REDIS3, f"ops/{op}/nodes_us").fmt(0),
                _breakdown(f, REDIS3, op, "node"),
            ]
        )
    idle = [
        [
            NAMES[dep],
            f.stat(dep, "ops/idle/node").fmt(1),
            f.stat(dep, "ops/idle/lua").fmt(1),
            f.stat(dep, "ops/idle/redis_us").fmt(0),
            f.stat(dep, "ops/idle/nodes_us").fmt(0),
            _breakdown(f, dep, "idle", "node"),
        ]
        for dep in (REDIS1, REDIS3)
        if f.stat(dep, "ops/idle/node").ok
    ]
    return [
        "## 4. Redis: commands per operation, and memory",
        "",
        f"Each operation {cfg['ops_count']} times (Close {cfg['ops_count'] // 2} times each way), "
        "one at a time, on an empty cluster: first to read the CPU of Redis and of the nodes "
        "(their threads' run time in /proc, to the nanosecond), then again under `MONITOR` to "
        "count the commands Redis ran, sent by a node or run inside a Lua script (`EVALSHA`). "
        f"The background (heartbeats, the event followers' blocking reads; {cfg['idle_seconds']:g} s "
        "of nothing measured first) is taken off at its rate, command by command. An event: one "
        f"session emits {cfg['events']} agent events {cfg['event_interval_ms']:g} ms apart, less "
        "its Start. One at a time is the worst case: under load, a node appends the events of "
        "many sessions in one script call and its follower reads them in one `XREAD`.",
        "",
        *table(
            [
                "operation",
                "sent, 1 node",
                f"sent, {n} nodes",
                f"in scripts, {n} nodes",
                f"Redis CPU \u00b5s, {n} nodes",
                f"nodes' CPU \u00b5s, {n} nodes",
                f"sent by the nodes, {n} nodes (commands per operation)",
            ],
            rows,
        ),
        "Idle, per node and second (the heartbeat script, the sweep for lapsed nodes, the "
        "event follower's blocking read):",
        "",
        *table(
            [
                "deployment",
                "sent",
                "in scripts",
                "Redis CPU \u00b5s",
                "node CPU \u00b5s",
                "sent, by command",
            ],
            idle,
        ),
        *_memory(result, f),
    ]


def _memory(result: dict[str, Any], f: Figures) -> list[str]:
    rows = []
    for dep in (REDIS1, REDIS3):
        if not f.stat(dep, "memory/held/bytes_per_session").ok:
            continue
        rows.append(
            [
                NAMES[dep],
                f.stat(dep, "memory/held/bytes_per_session").fmt(0),
                f.stat(dep, "memory/held/record_bytes").fmt(0),
                f.stat(dep, "memory/held/call_bytes").fmt(0),
                f.stat(dep, "memory/held/stream_bytes_per_session").fmt(0),
                f.stat(dep, "memory/ended/bytes_per_session").fmt(0),
                f.stat(dep, "memory/ended/stream_bytes_per_session").fmt(0),
                f.stat(dep, "memory/stream/bytes_per_event").fmt(0),
            ]
        )
    held = int(result["config"]["held"])
    per_event = f.stat(REDIS3, "memory/stream/bytes_per_event")
    cap = (
        f" Capped at about 100,000 events, the stream holds at most about "
        f"{per_event.median * 100_000 / 2**20:,.0f} MiB."
        if per_event.ok
        else ""
    )
    return [
        f"Memory: Redis's `used_memory` (less its clients' buffers) with {held:,} sessions held "
        "(started over every node), less before, over the sessions; the keys of one session "
        "by `MEMORY USAGE` (its record, the hash of its call) and the event stream's share; "
        "then the same once every session was closed: ended records stay for the retention "
        "window (300 s), and the stream keeps every event until it is trimmed." + cap,
        "",
        *table(
            [
                "deployment",
                "bytes / held session",
                "record",
                "call hash",
                "event stream",
                "bytes / ended session",
                "event stream (ended)",
                "stream bytes / event",
            ],
            rows,
        ),
    ]


def render(result: dict[str, Any]) -> str:
    f = Figures(result)
    cfg = result["config"]
    lines = _header(result, f)
    for note in result.get("notes", []):
        lines += [f"> Note: {note}", ""]
    lines += _targets(f)
    lines += _limits(result, f)
    lines += _close(f)
    lines += _throughput(f, cfg)
    lines += _gets(f, cfg)
    lines += _commands(result, f)
    return "\n".join(lines)


def write_report(result: dict[str, Any], base: Path, notes: str = "") -> list[Path]:
    """Write ``<base>.md``; answer the paths written (``notes``, by hand, go at the end)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    md = base.with_suffix(".md")
    text = render(result)
    if notes:
        text += "\n## Notes\n\n" + notes.strip() + "\n"
    md.write_text(text + "\n")
    return [md]
