"""The command line as an operator meets it: the start-up summary, one-line
errors, ``-h``, ``python -m agentplane``, JSON lines. Real processes; every
wait is for a line the process writes, bounded."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.support import REPO_ROOT, Proc, console_script, subprocess_env

PORTS = ["--host", "127.0.0.1", "--port", "0", "--grpc-port", "0"]
HTTP_LISTENING = r"agentplane HTTP listening on 127\.0\.0\.1:(\d+)"
GRPC_LISTENING = r"agentplane gRPC listening on 127\.0\.0\.1:(\d+)"


def agentplane(*args: str) -> list[str]:
    return [console_script("agentplane"), *args]


def run(
    args: list[str], cwd: Path = REPO_ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout,
        check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def stop(proc: Proc) -> None:
    proc.send(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.text()


def test_the_summary_names_the_agent_auth_limits_and_every_url(procs: Any) -> None:
    proc = procs(agentplane("serve", *PORTS), env={"AGENTPLANE_API_TOKEN": "s3cret-token-1"})
    http = proc.wait_for(HTTP_LISTENING).group(1)
    grpc = proc.wait_for(GRPC_LISTENING).group(1)
    proc.wait_for("agentplane ready")
    proc.wait_for(r"^\s+health\s")  # the summary's last line
    log = proc.text()
    summary = log[log.index("agentplane ready") :]
    base = f"http://127.0.0.1:{http}"
    for name, value in [
        ("version", "agentplane 0.1.0, Python "),
        ("agent", "demo agent"),
        ("auth", "on: API token"),
        ("limits", "per call"),
        ("node", "single node"),
        ("gRPC", f"127.0.0.1:{grpc}"),
        ("HTTP", f"{base}/"),
        ("docs", f"{base}/docs"),
        ("demo", f"{base}/demo/"),
        ("metrics", f"{base}/metrics"),
        ("health", f"{base}/health  ready: {base}/ready"),
    ]:
        assert any(
            line.split(None, 1) == [name, line.split(None, 1)[1]] and value in line
            for line in summary.splitlines()[1:]
        ), (name, summary)
    assert "s3cret" not in log
    assert "Uvicorn running on" not in log and "Started server process" not in log
    stop(proc)


def test_the_summary_of_an_open_server_without_demo_page(procs: Any, tmp_path: Path) -> None:
    proc = procs(agentplane("serve", *PORTS, "--no-demo-page"))
    proc.wait_for(r"^\s+health\s")
    log = proc.text()
    assert "auth     off: no API token, no permission hooks" in log
    assert "/demo/" not in log
    stop(proc)


def test_json_lines_parse_and_carry_the_summary_and_the_access_fields(procs: Any) -> None:
    proc = procs(agentplane("serve", *PORTS, "--log-format", "json"))
    ready = proc.wait_for(r'"message": "agentplane ready')
    summary = json.loads(ready.string)["summary"]
    port = summary["HTTP"].rsplit(":", 1)[1].rstrip("/")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        assert http.get("/health", headers={"X-Request-Id": "json-1"}).status_code == 200
    line = json.loads(proc.wait_for(r'"logger": "agentplane.access"').string)
    assert line["request_id"] == "json-1" and line["status"] == 200
    assert line["route"] == "/health" and line["protocol"] == "http"
    assert line["peer"].startswith("127.0.0.1:") and line["duration_ms"] >= 0
    stop(proc)
    for text in proc.text().splitlines():
        entry = json.loads(text)
        assert {"ts", "level", "logger", "message"} <= set(entry)


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    assert "Usage:" not in done.stderr
    return errors[0]


def test_a_taken_http_port_is_one_line(tmp_path: Path) -> None:
    with taken_port() as port:
        done = run(
            agentplane("serve", "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0")
        )
    line = one_error_line(done)
    assert f"HTTP port {port} is already in use" in line and "--port" in line
    assert "uvicorn.error" not in done.stderr


def test_a_taken_grpc_port_is_one_line() -> None:
    with taken_port() as port:
        done = run(
            agentplane("serve", "--host", "127.0.0.1", "--port", "0", "--grpc-port", str(port))
        )
    line = one_error_line(done)
    assert f"gRPC port {port} is already in use" in line and "--grpc-port" in line


def test_a_taken_gateway_port_is_one_line() -> None:
    with taken_port() as port:
        done = run(agentplane("gateway", "--upstream", "127.0.0.1:1", "--port", str(port)))
    assert f"HTTP port {port} is already in use" in one_error_line(done)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("no_such_module:launcher", "no module named 'no_such_module'"),
        ("broken_import:launcher", "imports 'not_installed_dep', which is not installed"),
        ("good_agent:lancher", "has no attribute 'lancher'; it has launcher"),
        ("good_agent:NOT_AN_AGENT", "is a int; expected an AgentLauncher, a Runner"),
        ("good_agent", "expected module:attribute"),
    ],
)
def test_a_wrong_agent_is_one_line(tmp_path: Path, spec: str, expected: str) -> None:
    (tmp_path / "broken_import.py").write_text("import not_installed_dep\n")
    (tmp_path / "good_agent.py").write_text(
        "from agentplane.server import AgentLauncher\n"
        "async def create_agent(**_): return object()\n"
        "async def join_call(agent, call_type, call_id, **_): pass\n"
        "launcher = AgentLauncher(create_agent=create_agent, join_call=join_call)\n"
        "NOT_AN_AGENT = 3\n"
    )
    done = run(agentplane("serve", "--agent", spec, *PORTS), cwd=tmp_path)
    line = one_error_line(done)
    assert expected in line, line


def test_an_agent_module_that_fails_shows_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "failing_agent.py").write_text("raise RuntimeError('the agent file is broken')\n")
    done = run(agentplane("serve", "--agent", "failing_agent:launcher", *PORTS), cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "the agent file is broken" in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["-h"],
        ["serve", "-h"],
        ["run", "-h"],
        ["gateway", "-h"],
    ],
)
def test_dash_h_is_help(args: list[str]) -> None:
    done = run(agentplane(*args))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: agentplane")


def test_dash_h_in_a_users_own_file() -> None:
    agent_file = str(REPO_ROOT / "tests" / "server" / "standalone_agent.py")
    for args in (["-h"], ["serve", "-h"], ["run", "-h"]):
        done = run([sys.executable, agent_file, *args])
        assert done.returncode == 0, done.stderr
        assert (
            "Usage:" in done.stdout
            and "--log-format" in run([sys.executable, agent_file, "serve", "-h"]).stdout
        )


def test_python_dash_m_agentplane_help(tmp_path: Path) -> None:
    # From another folder: the installed package, not the checkout's layout.
    done = run([sys.executable, "-m", "agentplane", "--help"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Usage: agentplane" in done.stdout
    assert {"serve", "run", "gateway"} <= set(done.stdout.split())


def test_python_dash_m_agentplane_serves(procs: Any, tmp_path: Path) -> None:
    proc = procs([sys.executable, "-m", "agentplane", "serve", *PORTS], cwd=tmp_path)
    port = proc.wait_for(HTTP_LISTENING).group(1)
    proc.wait_for("agentplane ready")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        assert http.get("/health").status_code == 200
    stop(proc)
