"""Shared pieces of the server integration tests.

A steerable toy agent, a real grpclib server on a loopback port, client
helpers for the three Python client stacks, and a wrapper for server
subprocesses (``agentplane serve`` / ``python my_agent.py serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from grpclib.health.v1 import health_pb2

from agentplane.rpc.server import GrpcServer
from agentplane.server import AgentLauncher, ServeOptions, SessionContext
from agentplane.service.api import SessionAPI

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE = "agentplane.v1.SessionService"
LISTENING = re.compile(r"agentplane gRPC listening on 127\.0\.0\.1:(\d+)")


# ------------------------------------------------------------------ agents


class ToyAgent:
    """What ``Toy.create_agent`` returns: its metadata, and whether it was closed."""

    def __init__(self, metadata: dict[str, Any]) -> None:
        self.metadata = metadata
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class Toy:
    """A create_agent / join_call pair the test steers.

    create_agent takes ``metadata["create_delay"]`` seconds; ``fail_with``
    makes it raise. join_call records one latency and one counter, then runs
    for ``metadata["run_for"]`` seconds (forever without it). ``context(session_id)`` hands the test the running
    session's SessionContext so it can ``emit`` on the agent's behalf.
    Everything is kept for the test to inspect unless ``keep`` is False.
    """

    def __init__(self) -> None:
        self.fail_with: str | None = None
        self.creating = 0  # create_agent calls under way
        # False: forget each session once it ends (for soak tests).
        self.keep = True
        self.contexts: dict[str, SessionContext] = {}
        self.agents: list[ToyAgent] = []
        self._joined: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def create_agent(self, **metadata: Any) -> ToyAgent:
        self.creating += 1
        try:
            delay = metadata.get("create_delay")
            if isinstance(delay, (int, float)):
                await asyncio.sleep(delay)
        finally:
            self.creating -= 1
        if self.fail_with is not None:
            raise RuntimeError(self.fail_with)
        agent = ToyAgent(metadata)
        if self.keep:
            self.agents.append(agent)
        return agent

    async def join_call(
        self, agent: ToyAgent, call_type: str, call_id: str, *, session: SessionContext, **_: Any
    ) -> None:
        sid = session.session_id
        self.contexts[sid] = session
        session.observe("llm_latency_ms", 12.5)
        session.add("llm_output_tokens", 3)
        self._joined[sid].set()
        try:
            run_for = agent.metadata.get("run_for")
            if isinstance(run_for, (int, float)):
                await asyncio.sleep(run_for)
                return
            await asyncio.Event().wait()
        finally:
            if not self.keep:
                del self.contexts[sid], self._joined[sid]

    async def context(self, session_id: str) -> SessionContext:
        await asyncio.wait_for(self._joined[session_id].wait(), 3.0)
        return self.contexts[session_id]

    def launcher(self, **options: Any) -> AgentLauncher:
        options.setdefault("agent_idle_timeout", None)
        options.setdefault("stop_timeout", 1.0)
        options.setdefault("create_agent_timeout", 3.0)
        options.setdefault("drain_timeout", 1.0)
        # Metrics events only when a test waits for them: keeps streams exact.
        options.setdefault("metrics_event_interval", 30.0)
        return AgentLauncher(self.create_agent, self.join_call, **options)


def open_options(**options: Any) -> ServeOptions:
    """ServeOptions that ignore AGENTPLANE_API_TOKEN from the environment."""
    options.setdefault("api_token", None)
    return ServeOptions(**options)


# ------------------------------------------------------------------ server


@dataclass
class Served:
    launcher: AgentLauncher
    grpc: GrpcServer
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Servers:
    """Starts real grpclib servers on 127.0.0.1:0; stops them all at the end."""

    started: list[Served] = field(default_factory=list)

    async def __call__(
        self, launcher: AgentLauncher, options: ServeOptions | None = None, *, start: bool = True
    ) -> Served:
        if start:
            await launcher.start()
        server = GrpcServer(
            launcher, SessionAPI(launcher, (options or open_options()).auth_policy())
        )
        await server.start("127.0.0.1", 0)
        assert server.port
        served = Served(launcher, server, server.port)
        self.started.append(served)
        return served

    async def aclose(self) -> None:
        for served in reversed(self.started):
            await served.launcher.shutdown()
            served.grpc.close()
            await asyncio.wait_for(served.grpc.wait_closed(), 5)
        self.started.clear()


# ------------------------------------------------------------------ errors


@dataclass
class RichError:
    """A grpcio error with its google.rpc.Status details unpacked."""

    code: grpc.StatusCode
    message: str
    details: list[Any]

    def first(self, cls: type[Any]) -> Any:
        found = [d for d in self.details if isinstance(d, cls)]
        assert found, f"no {cls.__name__} in {self.details}"
        return found[0]

    @property
    def reason(self) -> str:
        info = self.first(error_details_pb2.ErrorInfo)
        assert info.domain == "agentplane"
        return str(info.reason)


_DETAIL_TYPES = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
)


def rich_error(error: grpc.RpcError) -> RichError:
    """Read an error the way a grpcio application does (grpcio-status)."""
    assert isinstance(error, grpc.Call)
    status: status_pb2.Status | None = rpc_status.from_call(error)
    assert status is not None, f"no google.rpc.Status in {error!r}"
    details = []
    for packed in status.details:
        for cls in _DETAIL_TYPES:
            if packed.Is(cls.DESCRIPTOR):
                message = cls()
                packed.Unpack(message)
                details.append(message)
    return RichError(error.code(), status.message, details)


def sync_error(call: Any, *args: Any, **kwargs: Any) -> RichError:
    """Run a grpcio sync call that must fail; answer its rich error."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as error:
        return rich_error(error)
    raise AssertionError("the call succeeded")


# ------------------------------------------------------------------ health


def health_check(channel: grpc.Channel, service: str, timeout: float = 5.0) -> int:
    """grpc.health.v1.Health/Check through a grpcio sync channel."""
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    response = check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return int(response.status)


# ------------------------------------------------------------- subprocesses


def buf() -> str:
    found = shutil.which("buf") or shutil.which(
        "buf", path=str(REPO_ROOT / "node_modules" / ".bin")
    )
    assert found, "buf not found on PATH or in node_modules/.bin: run `npm ci` (./dev test does)"
    return found


def console_script(name: str) -> str:
    """A console script of this environment (next to its python)."""
    candidate = Path(sys.executable).with_name(name)
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} is not installed in this environment"
    return found


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AGENTPLANE_API_TOKEN", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class Proc:
    """A server subprocess whose stdout and stderr are read as they come."""

    def __init__(self, args: list[str], cwd: Path = REPO_ROOT) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=subprocess_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(name,), daemon=True)
            for name in ("stdout", "stderr")
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str) -> None:
        stream = getattr(self.popen, name)
        for line in stream:
            with self._changed:
                self._lines[name].append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def text(self, name: str = "stderr") -> str:
        with self._changed:
            return "\n".join(self._lines[name])

    def wait_for(self, pattern: str, name: str = "stderr", timeout: float = 15.0) -> re.Match[str]:
        """The first line of ``name`` matching ``pattern``, waiting for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._lines[name]:
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (
                    self.popen.poll() is not None and not any(r.is_alive() for r in self._readers)
                ):
                    out, err = ("\n".join(self._lines[n]) for n in ("stdout", "stderr"))
                    raise AssertionError(
                        f"{pattern!r} not seen on {name} of {self.args}:\n"
                        f"--- stdout\n{out}\n--- stderr\n{err}"
                    )
                self._changed.wait(min(remaining, 0.2))

    def grpc_port(self) -> int:
        return int(self.wait_for(LISTENING.pattern).group(1))

    def send(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)
        for reader in self._readers:
            reader.join(5)
