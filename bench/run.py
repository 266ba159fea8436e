"""One suite run: alternating rounds of agentplane, the peer and the no-op stack."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from . import scenarios
from .scenarios import Config, Sample
from .servers import (
    Cores,
    ServerProcess,
    agentplane_server,
    noop_server,
    peer_python,
    peer_server,
)

GRPC_KINDS = ("betterproto", "grpcio")


def git_state() -> str:
    """The commit measured, and whether the working tree differed from it."""
    import subprocess

    from .servers import REPO

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit} (with uncommitted changes)" if dirty else commit


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_start": list(os.getloadavg()),
    }


def _log(message: str) -> None:
    print(message, flush=True)


async def _serve(server: ServerProcess) -> ServerProcess:
    await server.start()
    return server


async def agentplane_round(cfg: Config, cores: Cores, logs: Path, notes: set[str]) -> Sample:
    sample: Sample = {}
    server = await _serve(agentplane_server(cores, logs))
    try:
        http = await scenarios.gateway_serves_sessions(server)
        if not http:
            notes.add(
                "agentplane's HTTP port did not serve the JSON session routes in this run: "
                "its HTTP figures are missing and its held-session reads went over gRPC "
                "(betterproto)."
            )
        kinds = (("http",) if http else ()) + GRPC_KINDS
        start_kind = "http" if http else "betterproto"
        sample.update(await scenarios.start_latency(server, start_kind, cfg, internal=True))
        _log(f"    start one at a time ({start_kind}): p50 {sample['start/p50']:.2f} ms")
        for kind in kinds:
            sample.update(await scenarios.lifecycles(server, kind, cfg))
            _log(f"    lifecycles {kind}: {scenarios.describe(sample, f'lifecycle/{kind}')}")
        for kind in kinds:
            sample.update(await scenarios.reads(server, kind, cfg.read_clients, cfg.read))
            _log(f"    Get@{cfg.read_clients} {kind}: {scenarios.describe(sample, f'read/{kind}')}")
        for watchers in cfg.fanout_watchers:
            for via in scenarios.FANOUT_VIAS if http else ("grpc", "grpc-h2", "grpcio"):
                sample.update(await scenarios.fanout(server, watchers, via, cfg))
    finally:
        await server.stop()
    server = await _serve(agentplane_server(cores, logs))
    try:
        sample.update(await scenarios.held(server, "grpcio", start_kind, cfg))
    finally:
        await server.stop()
    return sample


async def peer_round(cfg: Config, cores: Cores, logs: Path) -> Sample:
    sample: Sample = {}
    server = await _serve(peer_server(cores, logs))
    try:
        sample.update(await scenarios.start_latency(server, "peer", cfg, internal=False))
        _log(f"    start one at a time: p50 {sample['start/p50']:.2f} ms")
        sample.update(await scenarios.lifecycles(server, "peer", cfg))
        _log(f"    lifecycles: {scenarios.describe(sample, 'lifecycle/peer')}")
        sample.update(await scenarios.reads(server, "peer", cfg.read_clients, cfg.read))
        _log(f"    Get@{cfg.read_clients}: {scenarios.describe(sample, 'read/peer')}")
    finally:
        await server.stop()
    server = await _serve(peer_server(cores, logs))
    try:
        sample.update(await scenarios.held(server, "peer", "peer", cfg))
    finally:
        await server.stop()
    return sample


async def noop_round(cfg: Config, cores: Cores, logs: Path) -> Sample:
    sample: Sample = {}
    server = await _serve(noop_server(cores, logs))
    try:
        from .noop import SESSION_ID

        for kind in ("http", *GRPC_KINDS):
            sample.update(
                await scenarios.reads(
                    server, kind, cfg.read_clients, cfg.noop, (SESSION_ID, "bench-call"),
                    prefix=f"noop/{kind}",
                )
            )  # fmt: skip
            _log(f"    no-op {kind}: {scenarios.describe(sample, f'noop/{kind}')}")
    finally:
        await server.stop()
    return sample


async def run(cfg: Config, with_peer: bool, out_dir: Path) -> dict[str, Any]:
    """Run every round; answer the raw results (server logs go to ``out_dir/logs``)."""
    cores = Cores.pick()
    cores.pin_self()
    if with_peer and not peer_python().exists():
        raise SystemExit(
            f"the peer's environment is missing: {peer_python()} (see bench/README.md)"
        )
    stamp = datetime.datetime.now(datetime.UTC)
    logs = out_dir / "logs"
    result: dict[str, Any] = {
        "started_at": stamp.isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": machine(),
        "cores": {"server": cores.server, "load": cores.load},
        "config": _config_dict(cfg),
        "samples": {"agentplane": [], "peer": [], "noop": []},
        "notes": [],
    }
    notes: set[str] = set()
    began = time.monotonic()
    for index in range(cfg.runs):
        _log(f"[round {index + 1}/{cfg.runs}] agentplane")
        result["samples"]["agentplane"].append(await agentplane_round(cfg, cores, logs, notes))
        if with_peer:
            _log(f"[round {index + 1}/{cfg.runs}] peer (Vision Agents)")
            result["samples"]["peer"].append(await peer_round(cfg, cores, logs))
        _log(f"[round {index + 1}/{cfg.runs}] no-op stack")
        result["samples"]["noop"].append(await noop_round(cfg, cores, logs))
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["seconds"] = time.monotonic() - began
    result["peer_version"] = _peer_version() if with_peer else None
    result["notes"] = sorted(notes)
    return result


def _config_dict(cfg: Any) -> dict[str, Any]:
    """A run's sizes (a dataclass) as plain JSON."""
    import dataclasses

    plain: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(cfg)))
    return plain


def _peer_version() -> str | None:
    import subprocess

    try:
        answer = subprocess.run(
            [str(peer_python()), "-c", "import importlib.metadata as m; print(m.version('vision-agents'))"],
            capture_output=True, text=True, timeout=60, check=True, cwd="/",
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return answer.stdout.strip() or None


def run_sync(cfg: Config, with_peer: bool, out_dir: Path) -> dict[str, Any]:
    """Run the suite; write ``out_dir/raw.json`` and answer the raw results."""
    result = asyncio.run(run(cfg, with_peer, out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "raw.json").write_text(json.dumps(result, indent=1, allow_nan=True))
    return result
