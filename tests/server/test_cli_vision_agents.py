"""A Vision Agents agent file's command line, flags and logs under agentplane (issue 13).

Real processes of ``tests/server/dropin_agent.py`` (a Vision Agents agent
with only its imports changed): every Vision Agents flag is taken with its
meaning (``--debug``, ``--no-splash``, ``run --log-level``, ``--no-demo``,
``--video-track-override``), ``--agents-log-level`` reaches ``vision_agents.*``
and the agent's own module, and ``--http-log-level INFO`` logs each request
to ``agentplane.access``. Every wait is for a line the process writes.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from .support import REPO_ROOT, Proc, console_script

Start = Callable[..., Proc]
HERE = REPO_ROOT / "tests" / "server"
AGENT_FILE = HERE / "dropin_agent.py"
HTTP_LISTENING = r"agentplane HTTP listening on 127\.0\.0\.1:(\d+)"
PORTS = ("--host", "127.0.0.1", "--port", "0", "--grpc-port", "0")


def _start_one_session(proc: Proc) -> str:
    """GET /health, then Start a session; answer its id once its agent joined the call."""
    port = int(proc.wait_for(HTTP_LISTENING).group(1))
    proc.wait_for("agentplane ready")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        assert http.get("/health").status_code == 200
        started = http.post("/sessions", json={"call_id": "c1"})
        assert started.status_code == 201, started.text
        sid = str(started.json()["session_id"])
        # After this line every earlier log line (the /health access line) is out.
        proc.wait_for(r"WARNING \S+: joined c1")
        # join_call forwarded its **kwargs to agent.join (which takes none): still running.
        assert http.get(f"/sessions/{sid}").json()["state"] == "SESSION_STATE_RUNNING"
    return sid


def _stop(proc: Proc) -> None:
    proc.send(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.text()


def test_serve_with_vision_agents_flags_logs_as_vision_agents_does(procs: Start) -> None:
    proc = procs(
        [sys.executable, str(AGENT_FILE), "serve", *PORTS, "--debug", "--no-splash",
         "--agents-log-level", "INFO", "--http-log-level", "INFO"]
    )  # fmt: skip
    _start_one_session(proc)
    # --http-log-level INFO: the access log, one line per request.
    proc.wait_for(r"INFO agentplane\.access: HTTP GET /health 200 [\d.]+ ms peer=127\.0\.0\.1:\d+")
    proc.wait_for(r"INFO agentplane\.access: HTTP POST /sessions 201 ")
    log = proc.text()
    # --agents-log-level INFO: the agent's own module and vision_agents.* at INFO.
    assert "INFO __main__: user module info: creating an agent" in log
    assert "INFO vision_agents.core.agents.agents: vision_agents info: agent created" in log
    # --debug: asyncio's debug mode, and its debug logs.
    assert "join_call: loop debug=True" in log
    assert "DEBUG asyncio: Using selector" in log
    _stop(proc)


def test_agent_module_loggers_and_a_quiet_http_log(procs: Start) -> None:
    # `agentplane serve --agent module:launcher`: the module's loggers are its own name.
    proc = procs(
        [console_script("agentplane"), "serve", "--agent", "dropin_agent:launcher", *PORTS,
         "--http-log-level", "WARNING"],
        HERE,
    )  # fmt: skip
    _start_one_session(proc)
    log = proc.text()
    assert "INFO dropin_agent: user module info: creating an agent" in log
    assert "INFO vision_agents.core.agents.agents: vision_agents info" in log
    assert "agentplane.access" not in log  # --http-log-level WARNING: no access log
    assert "uvicorn.access" not in log
    assert "join_call: loop debug=False" in log  # no --debug: no asyncio debug mode
    assert "DEBUG asyncio" not in log
    _stop(proc)


def test_run_with_vision_agents_flags(procs: Start, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00")
    proc = procs(
        [sys.executable, str(AGENT_FILE), "run", "--call-id", "once-1", "--call-type", "default",
         "--log-level", "WARNING", "--no-demo", "--debug", "--video-track-override", str(clip),
         "--no-splash"]
    )  # fmt: skip
    assert proc.wait(15) == 0, proc.text("stdout") + proc.text()
    out, log = proc.text("stdout"), proc.text()
    assert re.search(r"session \S+ ended: completed", out)
    assert "demo UI opened" not in out  # --no-demo
    # --video-track-override reached the agent before join_call.
    assert f"join_call: loop debug=True override={clip.resolve()}" in log
    # --log-level WARNING: the agent's INFO lines are hidden, its WARNING lines shown.
    assert "WARNING __main__: joined once-1" in log
    assert "user module info" not in log
    assert "vision_agents info" not in log


def test_run_opens_the_agents_demo_ui_by_default(procs: Start) -> None:
    proc = procs(
        [sys.executable, str(AGENT_FILE), "run", "--call-id", "once-2", "--log-level", "INFO"]
    )
    assert proc.wait(15) == 0, proc.text("stdout") + proc.text()
    assert "demo UI opened for default/once-2" in proc.text("stdout")
    log = proc.text()
    assert "INFO __main__: user module info" in log
    assert "INFO vision_agents.core.agents.agents: vision_agents info" in log
    assert "join_call: loop debug=False override=None" in log
