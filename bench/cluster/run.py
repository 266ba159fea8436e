"""One cluster run: alternating rounds of 1 node alone, 1 node on Redis, 3 nodes on Redis."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import subprocess
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ..run import _config_dict, git_state, machine
from ..scenarios import Sample
from ..servers import Cores, ServerProcess, agentplane_server
from . import scenarios
from .redis_server import RedisServer
from .scenarios import PREFIX, ClusterConfig, Deployment

# The deployments of a round, in the order they run.
EMBEDDED, REDIS1, REDIS3 = "embedded", "redis1", "redis3"


def _log(message: str) -> None:
    print(message, flush=True)


async def deploy(
    cores: Cores, logs: Path, nodes: int, with_redis: bool, settle: float = 0.0
) -> Deployment:
    """A fresh redis-server (``with_redis``) and ``nodes`` nodes, every one ready and settled."""
    redis = RedisServer(cores) if with_redis else None
    if redis is not None:
        await redis.start()
    started: list[ServerProcess] = [
        agentplane_server(
            cores,
            logs,
            redis_url=None if redis is None else redis.url,
            redis_prefix=PREFIX,
            name=f"node{index}",
        )
        for index in range(nodes)
    ]
    try:
        await asyncio.gather(*(node.start() for node in started))
    except BaseException:
        await undeploy(Deployment(started, redis))
        raise
    await asyncio.sleep(settle)
    return Deployment(started, redis)


async def undeploy(dep: Deployment) -> None:
    await asyncio.gather(*(node.stop() for node in dep.nodes))
    if dep.redis is not None:
        await dep.redis.stop()


def _say(sample: Sample, key: str, text: str) -> None:
    if key in sample:
        _log(f"    {text}")


def _describe(sample: Sample) -> None:
    for key, value in sample.items():
        if key.endswith("/rate") and "/cpu_ms" not in key:
            prefix = key[: -len("/rate")]
            cpu = sample.get(f"{prefix}/cpu_ms", float("nan"))
            redis = sample.get(f"{prefix}/cpu_ms/redis")
            extra = f" (Redis {redis:.3f})" if redis is not None else ""
            _log(f"    {prefix}: {value:,.0f}/s, {cpu:.3f} ms server CPU each{extra}")
    for key, value in sample.items():
        if key.startswith("close/") and key.endswith("/p99"):
            p50 = sample[key[: -len("p99")] + "p50"]
            _log(f"    {key[: -len('/p99')]}: p50 {p50:.2f} ms, p99 {value:.2f} ms")
    for key, value in sample.items():
        if key.startswith("ops/") and key.count("/") == 2 and key.endswith("/node"):
            name = key.split("/")[1]
            lua = sample.get(f"ops/{name}/lua", 0.0)
            us = sample.get(f"ops/{name}/redis_us", float("nan"))
            _log(f"    Redis per {name}: {value:.2f} sent, {lua:.2f} in scripts, {us:.0f} us CPU")
    _say(
        sample,
        "memory/held/bytes_per_session",
        f"Redis memory per held session: {sample.get('memory/held/bytes_per_session', 0):,.0f} B",
    )


Step = tuple[str, Coroutine[Any, Any, Sample]]


async def _run_steps(dep: Deployment, steps: list[Step]) -> Sample:
    """Run the scenarios in order, then stop the deployment, whatever happened."""
    sample: Sample = {}
    try:
        for name, step in steps:
            began = time.monotonic()
            sample.update(await step)
            _log(f"    ({name}: {time.monotonic() - began:.1f} s)")
    finally:
        for _, step in steps:
            step.close()  # those a failure left unawaited
        await undeploy(dep)
    _describe(sample)
    return sample


async def embedded_round(cfg: ClusterConfig, cores: Cores, logs: Path) -> Sample:
    """One node with the embedded registry: the baseline."""
    dep = await deploy(cores, logs, 1, with_redis=False, settle=cfg.settle_seconds)
    return await _run_steps(
        dep,
        [
            ("Close", scenarios.close_latency(dep, cfg)),
            ("Get", scenarios.gets(dep, cfg, via=0)),
            ("Starts", scenarios.starts(dep, cfg)),
            ("lifecycles", scenarios.lifecycles(dep, cfg, per_call=True)),
        ],
    )


async def redis_round(cfg: ClusterConfig, cores: Cores, logs: Path, nodes: int) -> Sample:
    """``nodes`` nodes on a fresh Redis."""
    dep = await deploy(cores, logs, nodes, with_redis=True, settle=cfg.settle_seconds)
    several = nodes > 1
    # On an empty cluster first: commands per operation, then memory.
    steps: list[Step] = [
        ("Redis commands", scenarios.redis_commands(dep, cfg)),
        ("memory", scenarios.memory(dep, cfg)),
        ("Close", scenarios.close_latency(dep, cfg)),
        ("Get through the owner", scenarios.gets(dep, cfg, via=0)),
    ]
    if several:
        steps.append(("Get through another node", scenarios.gets(dep, cfg, via=1)))
    steps += [
        ("Starts", scenarios.starts(dep, cfg)),
        ("lifecycles", scenarios.lifecycles(dep, cfg, per_call=True)),
    ]
    if several:
        steps.append(("lifecycles, sticky", scenarios.lifecycles(dep, cfg, per_call=False)))
    return await _run_steps(dep, steps)


def redis_version() -> str | None:
    try:
        answer = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return answer.stdout.strip() or None


async def run(cfg: ClusterConfig, out_dir: Path) -> dict[str, Any]:
    """Run every round; answer the raw results (server logs go to ``out_dir/logs``)."""
    cores = Cores.pick()
    cores.pin_self()
    if not RedisServer.available():
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    stamp = datetime.datetime.now(datetime.UTC)
    logs = out_dir / "logs"
    result: dict[str, Any] = {
        "suite": "cluster",
        "started_at": stamp.isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": machine(),
        "cores": {"server": cores.server, "load": cores.load},
        "config": _config_dict(cfg),
        "redis_version": redis_version(),
        "samples": {EMBEDDED: [], REDIS1: [], REDIS3: []},
        "notes": [],
    }
    began = time.monotonic()
    for index in range(cfg.runs):
        head = f"[round {index + 1}/{cfg.runs}]"
        _log(f"{head} 1 node, embedded registry (no Redis)")
        result["samples"][EMBEDDED].append(await embedded_round(cfg, cores, logs))
        _log(f"{head} 1 node on Redis ({time.monotonic() - began:.0f} s)")
        result["samples"][REDIS1].append(await redis_round(cfg, cores, logs, 1))
        _log(f"{head} {cfg.nodes} nodes on Redis ({time.monotonic() - began:.0f} s)")
        result["samples"][REDIS3].append(await redis_round(cfg, cores, logs, cfg.nodes))
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["seconds"] = time.monotonic() - began
    return result


def run_sync(cfg: ClusterConfig, out_dir: Path) -> dict[str, Any]:
    """Run the cluster suite; write ``out_dir/raw.json`` and answer the raw results."""
    result = asyncio.run(run(cfg, out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "raw.json").write_text(json.dumps(result, indent=1, allow_nan=True))
    return result
