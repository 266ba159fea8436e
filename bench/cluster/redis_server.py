"""A real ``redis-server`` for the cluster benchmark, and what the harness reads of it.

Debian's redis-server on a free loopback port, without persistence, in a
temporary folder (as ``tests/cluster/conftest.py`` starts it), pinned to the
servers' core. Its CPU comes from /proc (psutil), like every server's. The
harness reads ``INFO memory`` and ``MEMORY USAGE`` with redis-py, and counts
the commands the nodes send with ``MONITOR`` (``CommandCounter``), which tells
a command a node sent from one a Lua script ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]

from ..servers import HOST, Cores, forget_child, free_port, track_child

START_TIMEOUT = 10.0
# Commands only the harness sends (its markers and reads): never counted.
HARNESS_COMMANDS = frozenset(
    {"echo", "info", "memory", "config", "client", "ping", "dbsize", "hello", "xlen"}
)
_MONITOR_LINE = re.compile(r'^\+\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]*)"')


class RedisServer:
    """A redis-server subprocess: start (it answers PING), measure, stop."""

    def __init__(self, cores: Cores) -> None:
        self.port = free_port()
        self.core = cores.server
        self._dir = tempfile.TemporaryDirectory(prefix="agentplane-bench-redis-")
        self._proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit(
                "redis-server is not installed (apt-get install redis-server; .ci/run does)"
            )
        argv = [
            binary, "--port", str(self.port), "--bind", HOST, "--save", "",
            "--appendonly", "no", "--dir", self._dir.name,
        ]  # fmt: skip
        if self.core is not None:
            argv = ["taskset", "-c", str(self.core), *argv]
        # Popen returns at once; readiness is awaited below.
        self._proc = subprocess.Popen(  # noqa: ASYNC220
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        track_child(self._proc)
        deadline = time.monotonic() + START_TIMEOUT
        while not await self._pong():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError("redis-server did not start")
            await asyncio.sleep(0.02)
        # taskset execs redis-server: the pid is redis-server's own.
        self.ps = psutil.Process(self._proc.pid)

    async def _pong(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection(HOST, self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            return (await reader.read(16)).startswith(b"+PONG")
        except OSError:
            return False
        finally:
            writer.close()

    @property
    def pid(self) -> int:
        assert self.ps is not None
        return int(self.ps.pid)

    def cpu_seconds(self) -> float:
        assert self.ps is not None
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    async def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            deadline = time.monotonic() + 10
            while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            forget_child(proc)
        self._dir.cleanup()


async def used_memory(client: Any) -> int:
    """Memory Redis uses for data: ``used_memory`` less its clients' buffers.

    A node's connection pool grows with the concurrency it sees, and every
    connection has buffers of its own: they are not the sessions' memory.
    """
    info = await client.info("memory")
    return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))


async def memory_usage(client: Any, key: str) -> int:
    """``MEMORY USAGE`` of one key, every element counted (0: no such key)."""
    value = await client.memory_usage(key, samples=0)
    return int(value or 0)


class CommandCounter:
    """Counts the commands Redis runs, by origin (a node, or a Lua script) and name.

    One ``MONITOR`` connection reads every command Redis runs. ``count``
    brackets a phase with two ``ECHO`` markers sent by the harness, so the
    commands between them are exactly the phase's (MONITOR lists commands in
    the order Redis ran them). MONITOR costs Redis CPU: CPU is never measured
    while it is on.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._lines: list[tuple[str, str]] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._marks: dict[str, asyncio.Future[int]] = {}

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(HOST, self.port)
        self._writer.write(b"MONITOR\r\n")
        assert (await self._reader.readline()).startswith(b"+OK")
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self._reader is not None
        while line := await self._reader.readline():
            match = _MONITOR_LINE.match(line.decode(errors="replace"))
            if match is None:
                continue
            origin, name = match.group(1), match.group(2).lower()
            if name == "echo":
                marker = line.decode(errors="replace").rsplit('"', 2)[-2]
                future = self._marks.get(marker)
                if future is not None and not future.done():
                    future.set_result(len(self._lines))
                continue
            if name in HARNESS_COMMANDS:
                continue
            self._lines.append(("lua" if origin == "lua" else "node", name))

    async def _mark(self, client: Any) -> int:
        marker = f"bench-mark-{secrets.token_hex(6)}"
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._marks[marker] = future
        await client.echo(marker)
        try:
            return await asyncio.wait_for(future, 10)
        finally:
            del self._marks[marker]

    @contextlib.asynccontextmanager
    async def count(self, client: Any) -> Any:
        """``async with counter.count(client) as counted:``; ``counted`` is filled on exit."""
        counted: Counter[tuple[str, str]] = Counter()
        first = await self._mark(client)
        yield counted
        last = await self._mark(client)
        counted.update(self._lines[first:last])

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._task
