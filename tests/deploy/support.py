"""Reading the deployment files of ``deploy/`` and running what they say on loopback.

No docker and no Kubernetes here: the tests read the files as their tools
would (compose's interpolation and YAML merge keys, Kubernetes' ``$(VAR)``
expansion, the Dockerfile's exec forms) and run the same commands as local
processes, every ``HOST:PORT`` of a service rewritten to a free loopback port
(``Placement``).
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agentplane.cluster.member import DEFAULT_HEARTBEAT
from agentplane.core import AgentLauncher
from agentplane.server.process import FINAL_GRACE
from agentplane.server.runner import SERVER_CLOSE_TIMEOUT
from tests.server.support import REPO_ROOT, Proc, console_script
from tests.support import wait_until_sync

DEPLOY = REPO_ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
LOOPBACK = "127.0.0.1"
# How long a process of the tests may take to start or to answer: bounds, not pauses.
START_WITHIN = 30.0


# ------------------------------------------------------------------ timings


def launcher_default(name: str) -> float:
    """A default of ``AgentLauncher`` (the demo agent's launcher takes them all)."""
    default = inspect.signature(AgentLauncher).parameters[name].default
    assert isinstance(default, int | float), name
    return float(default)


def stop_bound() -> float:
    """The longest a node takes from SIGTERM to exit with the default timeouts.

    As ``agentplane.server.process`` documents it: the drain, then stopping the
    agents still running (cancel ``join_call``, then ``close()``, each up to
    ``stop_timeout``), closing the two listeners, the leftover tasks' grace;
    plus leaving the cluster (the lease's release waits at most one heartbeat).
    """
    return (
        launcher_default("drain_timeout")
        + 2 * launcher_default("stop_timeout")
        + 2 * SERVER_CLOSE_TIMEOUT
        + FINAL_GRACE
        + DEFAULT_HEARTBEAT
    )


def seconds(duration: str | int | float) -> float:
    """A compose duration (``75s``, ``1m30s``, ``500ms``) or a number of seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


# ------------------------------------------------------------------ files


def pyproject() -> dict[str, Any]:
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Every document of a YAML file (merge keys ``<<`` resolved, as compose does)."""
    with path.open() as file:
        return [doc for doc in yaml.safe_load_all(file) if doc is not None]


def load_compose() -> dict[str, Any]:
    (compose,) = load_yaml_documents(COMPOSE)
    return compose


def k8s_documents() -> list[dict[str, Any]]:
    """The Kubernetes objects of ``deploy/k8s`` (the kustomization is kustomize's, not an object)."""
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_yaml_documents(path)
    ]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    (found,) = [
        doc for doc in k8s_documents() if doc["kind"] == kind and doc["metadata"]["name"] == name
    ]
    return found


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # a comment line inside a continuation is dropped too, as Docker does
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation"
    parsed = []
    for line in lines:
        instruction, _, arguments = line.partition(" ")
        parsed.append((instruction.upper(), arguments.strip()))
    return parsed


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage (a stage starts at FROM)."""
    stages: list[list[tuple[str, str]]] = []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, arguments))
    return stages


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) instruction's argv; a shell form is a test failure."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def final_stage(instruction: str) -> str:
    (found,) = [args for name, args in dockerfile_stages()[-1] if name == instruction]
    return found


def image_entrypoint() -> list[str]:
    return exec_form(final_stage("ENTRYPOINT"))


# ------------------------------------------------------------ interpolation

_COMPOSE_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def compose_interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``$$``."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        if op in (":-", "-"):
            return value if value or (op == "-" and value is not None) else arg
        if op in (":?", "?"):
            if not value and (op == ":?" or value is None):
                raise AssertionError(f"compose would refuse: {name} {arg}")
            return value or ""
        if op in (":+", "+"):
            return arg if value or (op == "+" and value is not None) else ""
        return value or ""

    return _COMPOSE_VARIABLE.sub(replace, value)


_K8S_VARIABLE = re.compile(r"\$\((?P<name>[A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def k8s_expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` in args and env values; an unknown one stays as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match["name"], match.group(0))

    return _K8S_VARIABLE.sub(replace, value)


# ---------------------------------------------------------------- placement


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


_ADDRESS = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*://(?:[^@/]*@)?)?(?P<host>[A-Za-z0-9_.-]+):(?P<port>\d+)(?P<rest>/.*)?$"
)


@dataclass
class Placement:
    """Where each service's container ports are on loopback.

    ``ports[name][container_port]`` is the local port; a name is a service, a
    hostname or a network alias (an alias of several services answers as the
    first). ``localize`` rewrites a command the way the network would route it.
    """

    ports: dict[str, dict[int, int]] = field(default_factory=dict)

    def add(self, names: Sequence[str], container_ports: Sequence[int]) -> dict[int, int]:
        mapping = {port: free_port() for port in container_ports}
        for name in names:
            self.ports.setdefault(name, mapping)
        return mapping

    def address(self, value: str) -> str:
        """``HOST:PORT`` (or a URL) of a known host, on loopback; anything else unchanged."""
        match = _ADDRESS.match(value)
        if match is None or match["host"] not in self.ports:
            return value
        local = self.ports[match["host"]][int(match["port"])]
        return f"{match['scheme'] or ''}{LOOPBACK}:{local}{match['rest'] or ''}"

    def localize(self, args: Sequence[str], own: Mapping[int, int]) -> list[str]:
        """``args`` with ``--host`` on loopback, ``--port``/``--grpc-port`` at ``own``'s ports."""
        out: list[str] = []
        flag = None
        for arg in args:
            if flag == "--host":
                out.append(LOOPBACK)
            elif flag in ("--port", "--grpc-port"):
                out.append(str(own[int(arg)]))
            else:
                out.append(self.address(arg))
            flag = arg
        return out


def flag_value(args: Sequence[str], flag: str) -> str:
    """The value after ``flag`` (once) in an argv."""
    positions = [i for i, arg in enumerate(args) if arg == flag]
    assert len(positions) == 1, f"{flag} should appear once in {args}"
    return args[positions[0] + 1]


# ---------------------------------------------------------------- processes


def program(name: str) -> str:
    """An argv[0] of the files (``agentplane``, ``python``, ``redis-server``) on this machine."""
    if name in ("python", "python3"):
        return sys.executable
    if name == "agentplane":
        return console_script("agentplane")
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (apt-get install redis-server; .ci/run does)")
    return found


def start_redis(argv: Sequence[str], port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """Redis as the files run it, plus a loopback port; once it answers PING."""
    process = subprocess.Popen(
        [program(argv[0]), *argv[1:], "--port", str(port), "--bind", LOOPBACK,
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip

    def pong() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"redis-server {argv[1:]} exited with {process.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    wait_until_sync(pong, START_WITHIN, 0.02, what="redis-server to answer PING")
    return process


def stop_redis(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def start(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Proc:
    return Proc([program(argv[0]), *argv[1:]], env=env)


def stop_all(procs: Sequence[Proc]) -> None:
    """Teardown: whatever still runs is killed (the tests check clean exits themselves)."""
    for proc in procs:
        proc.kill()


def http_status(url: str, **kwargs: Any) -> int:
    try:
        return httpx.get(url, timeout=5, **kwargs).status_code
    except httpx.TransportError:
        return 0


def wait_ready(url: str, proc: Proc) -> None:
    """Until ``url`` (a /ready) answers 200; fails at once if the process exits."""

    def ready() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.popen.returncode}:\n{proc.text()}")
        return http_status(url) == 200

    wait_until_sync(ready, START_WITHIN, 0.05, what=f"{url} to answer 200")


def exits_cleanly(proc: Proc, within: float) -> tuple[int, float]:
    """SIGTERM; the exit code and how long it took (``within`` bounds the wait)."""
    began = time.monotonic()
    proc.popen.terminate()
    code = proc.wait(within)
    return code, time.monotonic() - began


def walk_strings(value: Any) -> Iterator[str]:
    """Every string inside a parsed YAML value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from walk_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_strings(item)


def start_guarded_session(base_url: str, token: str, call_id: str) -> str:
    """Start a session over HTTP where a bearer token guards the routes; its id.

    Checks on the way that the same request without the token is a 401 (the
    deployment's token reached the server) and that the session reads back.
    """
    auth = {"Authorization": f"Bearer {token}"}
    refused = httpx.post(f"{base_url}/sessions", json={"call_id": call_id}, timeout=30)
    assert refused.status_code == 401, refused.text
    started = httpx.post(
        f"{base_url}/sessions", json={"call_id": call_id}, headers=auth, timeout=30
    )
    assert started.status_code == 201, started.text
    session_id: str = started.json()["session_id"]
    got = httpx.get(f"{base_url}/sessions/{session_id}", headers=auth, timeout=30)
    assert got.status_code == 200 and got.json()["call_id"] == call_id, got.text
    return session_id
