"""Shared pieces of the server integration tests.

Rich-error and health helpers for the grpcio stack, and a wrapper for server
subprocesses (``agentplane serve`` / ``python my_agent.py serve``). Fake
agents (``Toy``) and real servers (``Servers``) come from tests/support.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from grpclib.health.v1 import health_pb2

from tests.support import ServerAgents
from tests.support import Servers as Servers  # re-exported: this folder's files import it here
from tests.support import open_options as open_options  # likewise

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE = "agentplane.v1.SessionService"
LISTENING = re.compile(r"agentplane gRPC listening on 127\.0\.0\.1:(\d+)")


# Fake agents and servers are shared by every folder (tests/support); these
# are the names this folder's files have always used for them.
Toy = ServerAgents


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

    def __init__(
        self, args: list[str], cwd: Path = REPO_ROOT, env: Mapping[str, str] | None = None
    ) -> None:
        """``env``: variables set on top of ``subprocess_env()``."""
        self.args = args
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env={**subprocess_env(), **(env or {})},
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
