"""The markdown report and the PNG chart of one suite run.

Every figure is the median over the rounds with its min-max; every ratio is
computed round by round (agentplane's round r against the peer's round r,
which ran right after it) and then summarised the same way.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Samples = dict[str, list[dict[str, float]]]
AP, PEER, NOOP = "agentplane", "peer", "noop"
CLIENT_NAMES = {
    "http": "HTTP/JSON gateway",
    "betterproto": "gRPC, betterproto2 + grpclib",
    "grpcio": "gRPC, grpcio (grpc.aio)",
    "peer": "HTTP (its routes)",
}


@dataclass(frozen=True)
class Stat:
    values: tuple[float, ...]

    @property
    def ok(self) -> bool:
        return bool(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    def fmt(self, digits: int = 0, unit: str = "") -> str:
        if not self.values:
            return "\u2013"
        lo, hi = min(self.values), max(self.values)
        text = f"{_num(self.median, digits)}{unit}"
        if len(self.values) > 1:
            text += f" ({_num(lo, digits)}\u2013{_num(hi, digits)})"
        return text


def _num(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def finite(values: list[float | None]) -> tuple[float, ...]:
    return tuple(v for v in values if v is not None and math.isfinite(v))


class Figures:
    def __init__(self, result: dict[str, Any]) -> None:
        self.samples: Samples = result["samples"]

    def stat(self, server: str, key: str) -> Stat:
        return Stat(finite([s.get(key) for s in self.samples.get(server, [])]))

    def ratio(
        self,
        a: tuple[str, str],
        b: tuple[str, str],
        combine: Callable[[float, float], float] | None = None,
    ) -> Stat:
        """Round-by-round ``a / b`` (or ``combine(a, b)``)."""
        left = self.samples.get(a[0], [])
        right = self.samples.get(b[0], [])
        values: list[float | None] = []
        for x, y in zip(left, right, strict=False):
            va, vb = x.get(a[1]), y.get(b[1])
            if va is None or vb is None or not vb:
                continue
            values.append(combine(va, vb) if combine else va / vb)
        return Stat(finite(values))


def _full_gcs(f: Figures, server: str, prefix: str) -> str:
    """Each round's full collections in a window, e.g. "0, 0, 1x18.2 ms"."""
    rounds = [s for s in f.samples.get(server, []) if f"{prefix}/gc2_count" in s]
    if not rounds:
        return "\u2013"
    parts = []
    for s in rounds:
        count = int(s[f"{prefix}/gc2_count"])
        parts.append(f"{count}\u00d7{s[f'{prefix}/gc2_mean']:.1f} ms" if count else "0")
    return ", ".join(parts)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def verdict(stat: Stat, ok: Callable[[float], bool]) -> str:
    if not stat.ok:
        return "not measured"
    return "**met**" if ok(stat.median) else "**missed**"


def _targets(f: Figures, has_peer: bool) -> list[list[str]]:
    rows: list[list[str]] = []

    def add(name: str, stat: Stat, text: str, ok: Callable[[float], bool]) -> None:
        rows.append([name, text if stat.ok else "\u2013", verdict(stat, ok)])

    if has_peer:
        http = f.ratio((AP, "lifecycle/http/rate"), (PEER, "lifecycle/peer/rate"))
        # Issue 16's target (3x before it).
        add("HTTP lifecycles/s ≥ 5\u00d7 the peer", http, http.fmt(2, "\u00d7"), lambda v: v >= 5)
        for kind in ("betterproto", "grpcio"):
            grpc = f.ratio((AP, f"lifecycle/{kind}/rate"), (PEER, "lifecycle/peer/rate"))
            add(
                f"gRPC ({kind}) lifecycles/s ≥ 5\u00d7 the peer",
                grpc,
                grpc.fmt(2, "\u00d7"),
                lambda v: v >= 5,
            )
        get = f.ratio((AP, "read/http/rate"), (PEER, "read/peer/rate"))
        add(
            "HTTP Get/s at 50 concurrent ≥ 3\u00d7 the peer",
            get,
            get.fmt(2, "\u00d7"),
            lambda v: v >= 3,
        )
        p99 = f.ratio((AP, "read/http/p99"), (PEER, "read/peer/p99"))
        add(
            "HTTP Get p99 at 50 concurrent ≤ 1/3 of the peer's",
            p99,
            p99.fmt(2, "\u00d7 the peer's"),
            lambda v: v <= 1 / 3,
        )
    steps = sorted(
        {int(k.split("/")[1]) for s in f.samples.get(AP, []) for k in s if k.startswith("held/")}
    )
    if len(steps) >= 2:
        lo, hi = steps[0], steps[-1]
        flat = f.ratio((AP, f"held/{hi}/get50/p99"), (AP, f"held/{lo}/get50/p99"))
        add(
            f"Get p99 with {hi:,} held ≤ 1.2\u00d7 with {lo:,} held",
            flat,
            flat.fmt(2, "\u00d7"),
            lambda v: v <= 1.2,
        )
        idle = f.stat(AP, f"held/{hi}/idle_cpu_pct")
        add(f"idle CPU with {hi:,} held < 2% of a core", idle, idle.fmt(2, "%"), lambda v: v < 2)
        # A stall is a stall: judged on the worst round, not the median.
        stall = f.stat(AP, f"held/{hi}/serial/max")
        rows.append(
            [
                f"slowest one-at-a-time Get with {hi:,} held < 10 ms (worst round)",
                f"worst {max(stall.values):.1f} ms; {stall.fmt(1, ' ms')}"
                if stall.ok
                else "\u2013",
                "**met**"
                if stall.ok and max(stall.values) < 10
                else verdict(stall, lambda v: False),
            ]
        )
        memory = f.stat(AP, f"held/{hi}/rss_kib_per_session")
        add(
            f"memory ≤ 4 KiB per held session ({hi:,} held)",
            memory,
            memory.fmt(2, " KiB"),
            lambda v: v <= 4,
        )
    fan = _fanout_keys(f)
    if fan:
        top = max(w for w, _ in fan)
        for w, via in fan:
            if w == top:
                p99 = f.stat(AP, f"fanout/{w}/{via}/p99")
                add(
                    f"{top:,} watchers ({_VIA_NAMES.get(via, via)}): delivery p99 ≤ 50 ms",
                    p99,
                    p99.fmt(1, " ms"),
                    lambda v: v <= 50,
                )
    # Issue 16: the gateway's own cost per Get, against a no-op ASGI route on the same stack.
    http_cpu = f.ratio((AP, "read/http/cpu_ms"), (NOOP, "noop/http/cpu_ms"))
    add(
        "HTTP Get server CPU ≤ 2\u00d7 the no-op route's",
        http_cpu,
        http_cpu.fmt(2, "\u00d7"),
        lambda v: v <= 2,
    )
    noop = f.ratio((AP, "read/betterproto/rate"), (NOOP, "noop/betterproto/rate"))
    add(
        "gRPC Get ≥ 70% of the no-op grpclib RPC's rate",
        noop,
        noop.fmt(2, "\u00d7"),
        lambda v: v >= 0.7,
    )
    # The same, by server CPU: immune to a load generator that sets the pace.
    by_cpu = f.ratio((NOOP, "noop/betterproto/cpu_ms"), (AP, "read/betterproto/cpu_ms"))
    add(
        "... and by server CPU per request (CPU-bound capacity)",
        by_cpu,
        by_cpu.fmt(2, "\u00d7"),
        lambda v: v >= 0.7,
    )
    return rows


def _lat(f: Figures, server: str, prefix: str, call: str) -> str:
    p50 = f.stat(server, f"{prefix}/p50/{call}")
    p99 = f.stat(server, f"{prefix}/p99/{call}")
    if not p50.ok:
        return "\u2013"
    return f"{p50.median:.1f} / {p99.median:.1f}"


def render(result: dict[str, Any], chart_name: str | None) -> str:
    f = Figures(result)
    has_peer = bool(f.samples.get(PEER))
    m = result["machine"]
    cfg = result["config"]
    cores = result.get("cores", {})
    runs = len(f.samples.get(AP, []))
    lines = [
        f"# agentplane vs the Vision Agents agent server ({result['started_at'][:10]})",
        "",
        f"Machine: {m['nproc']} cores ({m.get('cpu_model') or 'unknown CPU'}), Python {m['python']}, "
        f"Linux {m['kernel']}. Load average (1/5/15 min) {load_text(m.get('loadavg_start'))} at the start, "
        f"{load_text(m.get('loadavg_end'))} at the end. "
        + (
            f"Servers pinned to core {cores['server']}, load generator to core {cores['load']}. "
            if cores.get("server") is not None
            else "Not pinned (fewer than 2 cores). "
        )
        + f"agentplane at {result.get('git', 'unknown')}; "
        + f"peer: vision-agents {result.get('peer_version') or 'not measured'}. "
        f"{runs} alternating rounds (agentplane, peer, no-op stack, agentplane, ...), "
        f"{result.get('seconds', 0) / 60:.1f} min in all.",
        "",
        "Every figure: median (min\u2013max) over the rounds. Ratios are computed round by round "
        "(agentplane's round against the peer's round that ran right after it), then summarised "
        "the same way. Latencies in ms; server CPU from /proc of the server process; "
        '"load core busy" is the load generator\'s own CPU use (near 100% means the '
        "client, not the server, set the pace).",
        "",
    ]
    for note in result.get("notes", []):
        lines += [f"> Note: {note}", ""]
    if chart_name:
        lines += [f"![chart]({chart_name})", ""]
    lines += ["## Targets", ""]
    lines += table(["target", "measured (median, min\u2013max)", "verdict"], _targets(f, has_peer))

    # 1. lifecycles
    lines += [
        f"## 1. Lifecycles: {cfg['lifecycle_clients']} concurrent clients looping Start → Get → Metrics → Close",
        "",
    ]
    rows = []
    for server, kind in _rows(f, "lifecycle"):
        prefix = f"lifecycle/{kind}"
        ratio = (
            f.ratio((AP, f"{prefix}/rate"), (PEER, "lifecycle/peer/rate")).fmt(2, "\u00d7")
            if server == AP and has_peer
            else ""
        )
        rows.append(
            [
                f"{server}, {CLIENT_NAMES[kind]}",
                f.stat(server, f"{prefix}/rate").fmt(0),
                ratio,
                f.stat(server, f"{prefix}/cpu_ms").fmt(2),
                *(_lat(f, server, prefix, call) for call in ("start", "get", "metrics", "close")),
                f.stat(server, f"{prefix}/client_busy_pct").fmt(0, "%"),
                f.stat(server, f"{prefix}/errors").fmt(0),
            ]
        )
    lines += table(
        ["server, client", "lifecycles/s", "\u00d7 peer", "server CPU ms / lifecycle",
         "Start p50 / p99", "Get p50 / p99", "Metrics p50 / p99", "Close p50 / p99",
         "load core busy", "errors"],
        rows,
    )  # fmt: skip
    if has_peer:
        lines += [
            "The peer answers Close with 202 and closes the session on its next 5 s maintenance "
            "pass, so its lifecycles leave sessions running for up to 5 s; agentplane answers "
            "Close once the session has ended.",
            "",
        ]

    # 2. reads (+ 6. ceiling)
    lines += [f"## 2. Reads: Get of one session, {cfg['read_clients']} concurrent", ""]
    rows = []
    for server, kind in _rows(f, "read"):
        prefix = f"read/{kind}"
        rate_ratio = p99_ratio = ""
        if server == AP and has_peer:
            rate_ratio = f.ratio((AP, f"{prefix}/rate"), (PEER, "read/peer/rate")).fmt(2, "\u00d7")
            p99_ratio = f.ratio((AP, f"{prefix}/p99"), (PEER, "read/peer/p99")).fmt(2, "\u00d7")
        rows.append(
            _read_row(f, server, prefix, f"{server}, {CLIENT_NAMES[kind]}", rate_ratio, p99_ratio)
        )
    lines += table(_READ_HEADER, rows)

    # 3. held
    steps = sorted(
        {int(k.split("/")[1]) for s in f.samples.get(AP, []) for k in s if k.startswith("held/")}
    )
    if steps:
        lines += [
            "## 3. Held sessions: K idle sessions, then reads",
            "",
            "RSS per session: the server's RSS growth from before the first session, divided by K "
            "(the trivial agent objects are a few dozen bytes each). Idle CPU: with nothing asked, next to "
            "what a Python process that only sleeps, on the same core, read over the same seconds "
            "(the machine's floor: a VM's accounting can charge any process a few percent). "
            f"Get at {cfg['read_clients']} concurrent over HTTP (gRPC where the gateway did not answer); "
            '"one at a time": a single client looping Get, whose slowest answer shows event-loop stalls.',
            "",
        ]
        rows = []
        for k in steps:
            for server in (AP, PEER):
                if not f.stat(server, f"held/{k}/idle_cpu_pct").ok:
                    continue
                p = f"held/{k}"
                rows.append(
                    [
                        f"{k:,}",
                        server,
                        f.stat(server, f"{p}/rss_kib_per_session").fmt(2),
                        f.stat(server, f"{p}/idle_cpu_pct").fmt(2, "%"),
                        f.stat(server, f"{p}/empty_cpu_pct").fmt(2, "%"),
                        f"{f.stat(server, f'{p}/get50/p50').median:.1f} / {f.stat(server, f'{p}/get50/p99').fmt(1)}",
                        f.stat(server, f"{p}/get50/rate").fmt(0),
                        f"{f.stat(server, f'{p}/serial/p99').median:.2f} / {f.stat(server, f'{p}/serial/max').fmt(1)}",
                        _full_gcs(f, server, f"{p}/serial"),
                        f.stat(server, f"{p}/start_rate").fmt(0),
                    ]
                )
        lines += table(
            ["K held", "server", "RSS KiB / session", "idle CPU (% of a core)",
             "an empty process meanwhile (same core)",
             f"Get@{cfg['read_clients']} p50 / p99", f"Get@{cfg['read_clients']}/s",
             "one at a time: p99 / slowest", "full GC passes meanwhile (per round: passes \u00d7 mean ms)",
             "Starts/s while filling"],
            rows,
        )  # fmt: skip

    # 4. fan-out
    fan = _fanout_keys(f)
    if fan:
        lines += [
            "## 4. Event fan-out: StreamEvents watchers of every session (agentplane only)",
            "",
            f"One session emits {cfg['fanout_events']} agent events, one every "
            f"{cfg['fanout_interval_ms']:g} ms; latency from the event's creation (its "
            "server-stamped `time`) to its arrival at each watcher. gRPC watchers: grpclib with "
            "the protobuf classes, 25 per connection, timed when the message reaches the watcher; "
            "grpcio watchers: the same over grpc.aio, whose C core receives off the watchers' "
            "event loop; HTTP watchers: the gateway's NDJSON `GET /events`, one connection each, "
            "timed when the bytes arrive. The peer has no event stream.",
            "",
        ]
        rows = []
        for w, via in fan:
            key = f"fanout/{w}/{via}"
            rows.append(
                [
                    f"{w:,}",
                    _VIA_NAMES.get(via, via),
                    f.stat(AP, f"{key}/p50").fmt(1),
                    f.stat(AP, f"{key}/p99").fmt(1),
                    f.stat(AP, f"{key}/max").fmt(1),
                    f.stat(AP, f"{key}/delivered_pct").fmt(1, "%"),
                    f.stat(AP, f"{key}/server_ms_per_event").fmt(1),
                    f.stat(AP, f"{key}/client_busy_pct").fmt(0, "%"),
                ]
            )
        lines += table(
            ["watchers", "via", "p50 ms", "p99 ms", "max ms", "delivered",
             "server CPU ms per event (all watchers)", "load core busy"],
            rows,
        )  # fmt: skip
        lines += [
            "The server CPU per event is how long the server's core works to hand one event to "
            "every watcher; where the load core is near saturation, the rest of the latency is "
            "the watchers' own receive path (one core runs every watcher).",
            "",
        ]

    # 5. start latency
    lines += [
        "## 5. Start latency, trivial agent, one Start at a time",
        "",
        "Seen by the caller (loopback, HTTP where served); server CPU per Start from /proc; "
        "agentplane's own figure is its `agentplane_session_start_seconds` histogram (admission to "
        "agent running).",
        "",
    ]
    rows = []
    for server in (AP, PEER):
        if not f.stat(server, "start/p50").ok:
            continue
        rows.append(
            [
                server,
                f.stat(server, "start/p50").fmt(2),
                f.stat(server, "start/p99").fmt(2),
                f.stat(server, "start/cpu_ms").fmt(2),
                f.stat(server, "start/internal_mean").fmt(3) if server == AP else "\u2013",
            ]
        )
    lines += table(
        ["server", "p50 ms", "p99 ms", "server CPU ms / Start", "server-side mean ms"], rows
    )

    # 6. ceiling
    lines += [
        "## 6. The stack's own limit",
        "",
        "The same Get, at the same concurrency, against a no-op server on the same stack "
        "(grpclib answering a prebuilt response; uvicorn answering a prebuilt JSON body from a bare "
        'ASGI callable). "CPU-bound capacity" is 1000 / server CPU ms per request: what one core '
        "would serve whatever the load generator manages.",
        "",
    ]
    rows = []
    for kind in ("http", "betterproto", "grpcio"):
        if not f.stat(NOOP, f"noop/{kind}/rate").ok:
            continue
        ap_rate = f.stat(AP, f"read/{kind}/rate")
        rows.append(
            [
                CLIENT_NAMES[kind],
                f.stat(NOOP, f"noop/{kind}/rate").fmt(0),
                ap_rate.fmt(0),
                f.ratio((AP, f"read/{kind}/rate"), (NOOP, f"noop/{kind}/rate")).fmt(2, "\u00d7"),
                f.stat(NOOP, f"noop/{kind}/cpu_ms").fmt(3),
                f.stat(AP, f"read/{kind}/cpu_ms").fmt(3),
                f.ratio((NOOP, f"noop/{kind}/cpu_ms"), (AP, f"read/{kind}/cpu_ms")).fmt(
                    2, "\u00d7"
                ),
                f.stat(NOOP, f"noop/{kind}/client_busy_pct").fmt(0, "%"),
            ]
        )
    lines += table(
        ["client", "no-op Get/s", "agentplane Get/s", "fraction of the ceiling",
         "no-op server CPU ms", "agentplane server CPU ms", "fraction (CPU-bound capacity)",
         "load core busy (no-op)"],
        rows,
    )  # fmt: skip
    return "\n".join(lines)


_READ_HEADER = [
    "server, client", "Get/s", "\u00d7 peer", "p50 ms", "p99 ms", "p99 \u00d7 peer's", "max ms",
    "server CPU ms / Get", "CPU-bound capacity /s", "load core busy",
]  # fmt: skip


def _read_row(
    f: Figures, server: str, prefix: str, name: str, ratio: str, p99_ratio: str
) -> list[str]:
    cpu = f.stat(server, f"{prefix}/cpu_ms")
    return [
        name,
        f.stat(server, f"{prefix}/rate").fmt(0),
        ratio,
        f.stat(server, f"{prefix}/p50").fmt(1),
        f.stat(server, f"{prefix}/p99").fmt(1),
        p99_ratio,
        f.stat(server, f"{prefix}/max").fmt(1),
        cpu.fmt(3),
        Stat(tuple(1000 / v for v in cpu.values if v > 0)).fmt(0),
        f.stat(server, f"{prefix}/client_busy_pct").fmt(0, "%"),
    ]


def _rows(f: Figures, scenario: str) -> list[tuple[str, str]]:
    rows = [
        (AP, kind)
        for kind in ("http", "betterproto", "grpcio")
        if f.stat(AP, f"{scenario}/{kind}/rate").ok
    ]
    if f.stat(PEER, f"{scenario}/peer/rate").ok:
        rows.append((PEER, "peer"))
    return rows


def _fanout_keys(f: Figures) -> list[tuple[int, str]]:
    keys = {
        (int(parts[1]), parts[2])
        for s in f.samples.get(AP, [])
        for k in s
        if k.startswith("fanout/") and len(parts := k.split("/")) == 4
    }
    order = {via: index for index, via in enumerate(_VIA_NAMES)}
    return sorted(keys, key=lambda item: (item[0], order.get(item[1], len(order)), item[1]))


# How fan-out watchers received (scenarios.FANOUT_VIAS), in the order the report shows them.
_VIA_NAMES = {
    "grpc": "gRPC",
    "grpc-h2": "gRPC, raw HTTP/2 watchers",
    "grpcio": "gRPC, grpcio watchers",
    "http": "HTTP NDJSON",
}


def load_text(values: list[float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "unknown"


def chart(result: dict[str, Any], path: Path) -> bool:
    """Write the PNG chart; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    f = Figures(result)
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    colours = {AP: "#1f6feb", PEER: "#d97706", NOOP: "#9ca3af"}

    def bars(ax: Any, items: list[tuple[str, str, str]], title: str, ylabel: str) -> None:
        labels, medians, lows, highs, cols = [], [], [], [], []
        for label, server, key in items:
            stat = f.stat(server, key)
            if not stat.ok:
                continue
            labels.append(label)
            medians.append(stat.median)
            lows.append(stat.median - min(stat.values))
            highs.append(max(stat.values) - stat.median)
            cols.append(colours[server])
        ax.bar(labels, medians, yerr=[lows, highs], color=cols, capsize=4)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelrotation=20)

    short = {"http": "ap HTTP", "betterproto": "ap betterproto", "grpcio": "ap grpcio"}
    bars(
        axes[0][0],
        [(short[k], AP, f"lifecycle/{k}/rate") for k in short]
        + [("peer HTTP", PEER, "lifecycle/peer/rate")],
        "Lifecycles/s (Start→Get→Metrics→Close)",
        "lifecycles / s",
    )
    bars(
        axes[0][1],
        [(short[k], AP, f"read/{k}/rate") for k in short]
        + [("peer HTTP", PEER, "read/peer/rate")]
        + [(f"no-op {k}", NOOP, f"noop/{k}/rate") for k in short],
        "Get of one session at 50 concurrent",
        "requests / s",
    )
    bars(
        axes[0][2],
        [(short[k], AP, f"read/{k}/p99") for k in short] + [("peer HTTP", PEER, "read/peer/p99")],
        "Get p99 at 50 concurrent",
        "ms",
    )
    steps = sorted(
        {int(k.split("/")[1]) for s in f.samples.get(AP, []) for k in s if k.startswith("held/")}
    )
    for ax, key, title, ylabel in (
        (axes[1][0], "get50/p99", "Get p99 at 50 concurrent vs sessions held", "ms"),
        (axes[1][1], "rss_kib_per_session", "RSS per held session", "KiB"),
        (axes[1][2], "idle_cpu_pct", "Idle CPU vs sessions held", "% of a core"),
    ):
        for server in (AP, PEER):
            points = [(k, f.stat(server, f"held/{k}/{key}")) for k in steps]
            points = [(k, s) for k, s in points if s.ok]
            if not points:
                continue
            xs = [k for k, _ in points]
            ax.errorbar(
                xs,
                [s.median for _, s in points],
                yerr=[
                    [s.median - min(s.values) for _, s in points],
                    [max(s.values) - s.median for _, s in points],
                ],
                marker="o",
                capsize=4,
                color=colours[server],
                label=server,
            )
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("sessions held")
        ax.legend()
    fig.suptitle(f"agentplane vs Vision Agents agent server — {result['started_at'][:10]}, "
                 f"{result['machine']['nproc']} cores; median and min\u2013max over the rounds")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_report(result: dict[str, Any], base: Path, notes: str = "") -> list[Path]:
    """Write ``<base>.md`` and ``<base>.png``; answer the paths written.

    ``notes`` (markdown, written by hand after reading the figures) goes at the end.
    """
    base.parent.mkdir(parents=True, exist_ok=True)
    png = base.with_suffix(".png")
    written = []
    has_chart = chart(result, png)
    if has_chart:
        written.append(png)
    md = base.with_suffix(".md")
    text = render(result, png.name if has_chart else None)
    if notes:
        text += "\n## Notes\n\n" + notes.strip() + "\n"
    md.write_text(text + "\n")
    written.insert(0, md)
    return written
