"""Pieces of the CLI tests: agents, a CLI runner off the event loop, a relay that drops connections, certificates."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from click.testing import CliRunner, Result

from agentplane.server.cli import main

HOST = "127.0.0.1"


# ------------------------------------------------------------------ agents


async def create_agent(**metadata: Any) -> dict[str, Any]:
    return dict(metadata)


async def join_call(agent: dict[str, Any], call_type: str, call_id: str, *, session: Any) -> None:
    if agent.get("fail"):
        raise RuntimeError("the agent failed")
    session.add("frames", 3)
    await asyncio.Event().wait()  # in the call until the session ends


# ------------------------------------------------------------------ the CLI


@dataclass
class Ran:
    """One ``agentplane ...`` run: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines()]


async def cli(*args: str, env: dict[str, str] | None = None) -> Ran:
    """Run ``agentplane *args`` with click's CliRunner, in a thread (it runs its own loop)."""
    base = {"AGENTPLANE_SERVER": None, "AGENTPLANE_API_TOKEN": None}
    runner = CliRunner()

    def invoke() -> Result:
        return runner.invoke(main, list(args), env={**base, **(env or {})}, catch_exceptions=False)

    result = await asyncio.to_thread(invoke)
    return Ran(result.exit_code, result.stdout, result.stderr)


def on(port: int) -> list[str]:
    return ["--server", f"{HOST}:{port}"]


# ------------------------------------------------------------------ relay


class Relay:
    """A TCP relay to a server's port that a test can cut: every connection drops at once.

    While closed (``cut(refuse=True)``) each new connection is accepted and
    closed at once, as a server that is down; ``reopen()`` relays again,
    to the same port or another (a restarted server).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepting = True
        self.connections = 0  # relayed ones
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def cut(self, refuse: bool = True) -> None:
        """Drop every relayed connection (and refuse new ones while ``refuse``)."""
        self.accepting = not refuse
        self._drop()

    def reopen(self, target_port: int | None = None) -> None:
        if target_port is not None:
            self.target_port = target_port
        self.accepting = True

    def _drop(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.transport.abort()
        self._writers.discard(sink)
