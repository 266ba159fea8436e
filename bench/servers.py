"""The servers under test, as pinned subprocesses on loopback.

Each server runs alone on its core (``taskset``); the harness and its load
run on the other. CPU and RSS are read from /proc (psutil) of the server
process itself.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]

from .clients import Endpoint
from .httpclient import HttpConnection

REPO = Path(__file__).resolve().parent.parent
PEER_VENV = REPO / "bench" / ".venv-peer"
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


_RUNNING: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    """An interrupted run leaves no server behind (each is ours, by its pid)."""
    for proc in list(_RUNNING):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def track_child(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` at exit if it still runs (a server the harness started)."""
    _RUNNING.add(proc)


def forget_child(proc: subprocess.Popen[bytes]) -> None:
    _RUNNING.discard(proc)


def core_busy_seconds(core: int | None) -> float:
    """CPU time the whole machine spent on ``core`` (every process), from /proc/stat."""
    if core is None:
        return 0.0
    prefix = f"cpu{core} "
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(prefix):
                fields = [int(v) for v in line.split()[1:]]
                # user nice system idle iowait irq softirq steal ...
                busy = sum(fields[:3]) + sum(fields[5:8])
                return busy / os.sysconf("SC_CLK_TCK")
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Cores:
    """Which core serves and which one loads (None: not pinned, one core)."""

    server: int | None
    load: int | None

    @staticmethod
    def pick() -> Cores:
        available = sorted(os.sched_getaffinity(0))
        if len(available) < 2 or shutil.which("taskset") is None:
            return Cores(None, None)
        return Cores(available[0], available[1])

    def pin_self(self) -> None:
        # Before any thread exists (grpc.aio starts some): threads inherit it.
        if self.load is not None:
            os.sched_setaffinity(0, {self.load})


class EmptyProcess:
    """An empty Python process on a server's core: the idle-CPU floor, read as servers are.

    What an idle server's CPU reads next to what a process that only sleeps
    reads over the same seconds: on a VM the accounting alone can show a few
    percent for any process, and that floor is not the server's.
    """

    def __init__(self, core: int | None) -> None:
        argv = [sys.executable, "-c", "import time; time.sleep(86400)"]
        if core is not None:
            argv = ["taskset", "-c", str(core), *argv]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        track_child(self._proc)
        self.ps = psutil.Process(self._proc.pid)

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait(10)
        forget_child(self._proc)


class ServerProcess:
    """A server subprocess: start, wait until ready, measure, stop."""

    def __init__(
        self, name: str, argv: list[str], endpoint: Endpoint, cores: Cores, log_dir: Path
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.core = cores.server
        if cores.server is not None:
            argv = ["taskset", "-c", str(cores.server), *argv]
        self._argv = argv
        self._log_path = log_dir / f"{name}-{endpoint.http_port}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        env.pop("AGENTPLANE_API_TOKEN", None)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("wb") as log:
            # Popen returns at once; readiness is awaited below.
            self._proc = subprocess.Popen(  # noqa: ASYNC220
                self._argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        _RUNNING.add(self._proc)
        self.ps = psutil.Process(self._proc.pid)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self._log_path}")
            if await self._ready():
                return
            if time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"{self.name} not ready in {START_TIMEOUT:.0f} s")
            await asyncio.sleep(0.1)

    async def _ready(self) -> bool:
        try:
            conn = await HttpConnection.open(self.endpoint.host, self.endpoint.http_port)
        except OSError:
            return False
        try:
            status, _ = await conn.request("GET", "/ready")
        except ConnectionError:
            return False
        finally:
            conn.close()
        if status != 200:
            return False
        if self.endpoint.grpc_port is None:
            return True
        try:
            _, writer = await asyncio.open_connection(self.endpoint.host, self.endpoint.grpc_port)
        except OSError:
            return False
        writer.close()
        return True

    def cpu_seconds(self) -> float:
        assert self.ps is not None
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def cpu_parts(self) -> dict[str, float]:
        """CPU seconds by process: one here (a group of servers has several)."""
        return {self.name: self.cpu_seconds()}

    def foreign_seconds(self) -> float:
        """CPU time other processes took on this server's core (0 when not pinned)."""
        if self.core is None:
            return 0.0
        return max(core_busy_seconds(self.core) - self.cpu_seconds(), 0.0)

    def rss(self) -> int:
        assert self.ps is not None
        return int(self.ps.memory_info().rss)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        # The first SIGTERM drains (agentplane waits up to drain_timeout for
        # sessions that never end by themselves); the second ends them at once.
        proc.terminate()
        await asyncio.sleep(0.2)
        if proc.poll() is None:
            proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _RUNNING.discard(proc)


def agentplane_server(
    cores: Cores,
    log_dir: Path,
    *,
    redis_url: str | None = None,
    redis_prefix: str = "agentplane:",
    name: str = "agentplane",
) -> ServerProcess:
    """``agentplane serve`` with the trivial agent; with ``redis_url``, a node of that cluster."""
    endpoint = Endpoint(HOST, free_port(), free_port())
    argv = [
        sys.executable, "-c", "from agentplane.server.cli import main; main()",
        "serve", "--agent", "bench.trivial_agent:make_launcher",
        "--host", HOST, "--port", str(endpoint.http_port),
        "--grpc-port", str(endpoint.grpc_port),
        "--agents-log-level", "WARNING", "--http-log-level", "WARNING",
    ]  # fmt: skip
    if redis_url is not None:
        argv += [
            "--redis-url", redis_url, "--redis-prefix", redis_prefix,
            "--advertise-address", f"{HOST}:{endpoint.grpc_port}",
        ]  # fmt: skip
    return ServerProcess(name, argv, endpoint, cores, log_dir)


def peer_python() -> Path:
    return PEER_VENV / "bin" / "python"


def peer_server(cores: Cores, log_dir: Path) -> ServerProcess:
    endpoint = Endpoint(HOST, free_port())
    argv = [
        str(peer_python()), "-P", str(REPO / "bench" / "peer_agent.py"),
        "serve", "--host", HOST, "--port", str(endpoint.http_port), "--no-splash",
        "--agents-log-level", "WARNING", "--http-log-level", "WARNING",
    ]  # fmt: skip
    return ServerProcess("peer", argv, endpoint, cores, log_dir)


def noop_server(cores: Cores, log_dir: Path) -> ServerProcess:
    endpoint = Endpoint(HOST, free_port(), free_port())
    argv = [
        sys.executable, "-m", "bench.noop",
        "--host", HOST, "--port", str(endpoint.http_port),
        "--grpc-port", str(endpoint.grpc_port),
    ]  # fmt: skip
    return ServerProcess("noop", argv, endpoint, cores, log_dir)
