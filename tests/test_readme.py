"""The README's snippets run as written.

* The Python client example is a complete script: it runs in its own
  interpreter against a real server.
* "Your agent": ``my_agent.py`` goes into a user's own folder, outside the
  repository, and runs there with agentplane's environment activated (its
  ``bin`` first on ``PATH``, as ``. .venv/bin/activate`` does):
  ``python my_agent.py run``, then ``agentplane serve --agent my_agent:launcher``.
* The curl examples run, as written, against that server.

Only the addresses change: the servers here listen on free ports. The ``buf
curl`` examples run with the same flags in tests/server/test_server_reflection.py;
grpcurl is not installed here (the reflection it relies on is tested there too).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentplane.demo.agent import demo_launcher
from tests.support import serving, wait_until

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
TIMEOUT = 120.0


def _section(title: str) -> str:
    text = README.read_text()
    assert f"\n{title}\n" in text, f"the README lost its section {title!r}"
    return text.split(f"\n{title}\n", 1)[1].split("\n## ", 1)[0]


def _code(title: str, language: str) -> str:
    """The first ``language`` code block under the heading ``title``."""
    match = re.search(rf"```{language}\n(.*?)```", _section(title), re.S)
    assert match, f"the README lost its {language} example under {title!r}"
    return match.group(1)


def _activated() -> dict[str, str]:
    """The environment of a shell where agentplane's virtualenv is activated."""
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(bin_dir.parent)
    return env


async def _run(*args: str, cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=_activated(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """A user's project folder with the README's ``my_agent.py`` in it."""
    folder = tmp_path / "my-project"
    folder.mkdir()
    assert not folder.resolve().is_relative_to(REPO)
    code = _code("## Your agent", "python")
    assert code.startswith("# my_agent.py\n"), "the agent example names its file first"
    (folder / "my_agent.py").write_text(code)
    return folder


# ------------------------------------------------------------ Python client


async def test_readme_client_script_runs_against_a_server(tmp_path: Path) -> None:
    script = _code("### Using the Python clients", "python")
    assert "asyncio.run(main())" in script and "50051" in script
    async with serving(demo_launcher(), http=False) as served:
        (tmp_path / "client.py").write_text(script.replace("50051", str(served.grpc_port)))
        code, out, err = await _run("python", "client.py", cwd=tmp_path)
        assert code == 0, out + err
        assert out.strip(), "the example prints the session and its events"
        stats = served.launcher.stats()
        assert stats.started == 1
        assert stats.ended_by_reason == {"CLOSED_BY_REQUEST": 1}


# ------------------------------------------------------------ your agent


async def test_readme_agent_runs_once_in_the_console(user_folder: Path) -> None:
    code, out, err = await _run("python", "my_agent.py", "run", cwd=user_folder)
    assert code == 0, out + err
    assert re.search(r"^session \S+ started in call console-\w+ \(default\)$", out, re.M), out
    assert "event turn_finished: {'text': 'hi'}" in out, out
    assert re.search(r"^session \S+ ended: completed$", out, re.M), out


async def test_readme_agent_test_runs_next_to_the_agent(user_folder: Path) -> None:
    (user_folder / "test_my_agent.py").write_text(_code("### Testing your agent", "python"))
    code, out, err = await _run("python", "test_my_agent.py", cwd=user_folder)
    assert code == 0, out + err
    assert out.startswith("ok; the gateway was at http://127.0.0.1:"), out + err


@dataclass
class _Served:
    process: asyncio.subprocess.Process
    logs: list[str] = field(default_factory=list)
    http_port: int = 0
    reader: asyncio.Task[None] | None = None


@pytest.fixture
async def served_agent(user_folder: Path) -> AsyncIterator[_Served]:
    """``agentplane serve --agent my_agent:launcher`` from the user's folder, until ready."""
    process = await asyncio.create_subprocess_exec(
        "agentplane", "serve", "--agent", "my_agent:launcher", "--port", "0", "--grpc-port", "0",
        cwd=user_folder, env=_activated(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    served = _Served(process)
    ready = asyncio.Event()

    async def read_logs() -> None:
        assert process.stderr is not None
        async for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip()
            served.logs.append(line)
            if found := re.search(r"agentplane HTTP listening on \S+:(\d+)", line):
                served.http_port = int(found.group(1))
            if line.endswith("agentplane ready"):
                ready.set()

    served.reader = reader = asyncio.create_task(read_logs())
    waiter = asyncio.create_task(ready.wait())
    try:
        await asyncio.wait({reader, waiter}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        assert ready.is_set(), "agentplane serve did not get ready:\n" + "\n".join(served.logs)
        assert served.http_port, "\n".join(served.logs)
        yield served
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        waiter.cancel()
        reader.cancel()
        await asyncio.gather(reader, waiter, return_exceptions=True)


def _curl_commands() -> list[list[str]]:
    block = _code("### Over HTTP/JSON", "bash").replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    commands = [c for c in commands if c]
    assert commands and all(c[0] == "curl" for c in commands), commands
    return commands


async def _until_subscribed(address: str, seen: list[str]) -> None:
    """Wait until the feed is live: it shows a probe session started after it connected.

    The feed has only what happens after it subscribed, and curl says nothing
    when that is; so probe sessions are started (a fresh one each round) until
    one of them shows up in it.
    """
    probes: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=10) as http:

        async def live() -> bool:
            text = "".join(seen)
            if any(probe in text for probe in probes):
                return True
            started = await http.post("/sessions", json={"call_id": f"feed-probe-{len(probes)}"})
            probes.append(started.json()["session_id"])
            return False

        await wait_until(live, timeout=TIMEOUT, interval=0.1, what="the feed to show a probe")


def _ended_in_feed(seen: list[str], session_id: str) -> bool:
    for line in "".join(seen).splitlines():
        if line.startswith("data: "):
            event = json.loads(line[6:])
            if event.get("session_id") == session_id and "ended" in event:
                return True
    return False


def _json(out: str) -> dict[str, Any]:
    body = json.loads(out)
    assert isinstance(body, dict), out
    assert "code" not in body or "session_id" in body, f"an error: {out}"
    return body


async def test_readme_agent_served_from_its_folder_answers_the_curl_examples(
    served_agent: _Served, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{served_agent.http_port}"
    session_id = ""

    def as_written(command: list[str]) -> list[str]:
        return [a.replace("127.0.0.1:8000", address).replace("<id>", session_id) for a in command]

    commands = _curl_commands()
    (feed,) = [c for c in commands if "Accept: text/event-stream" in c]
    # The all-sessions feed never ends by itself: watch it while the others run.
    sse = await asyncio.create_subprocess_exec(
        *as_written(feed), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    seen: list[str] = []

    async def read_feed() -> None:
        assert sse.stdout is not None
        async for line in sse.stdout:
            seen.append(line.decode())

    feed_reader = asyncio.create_task(read_feed())
    try:
        await _until_subscribed(address, seen)
        bodies: dict[str, dict[str, Any]] = {}
        for command in commands:
            if command is feed:
                continue
            code, out, err = await _run(*as_written(command), cwd=tmp_path)
            assert code == 0, f"{shlex.join(command)}: {err}"
            method = command[command.index("-X") + 1] if "-X" in command else "GET"
            url = next(a for a in command if a.startswith("http://"))
            if method == "POST":
                bodies["start"] = started = _json(out)
                session_id = started["session_id"]
                assert started["call_id"] == "my-call-123"
                assert set(started) == {"session_id", "call_id", "session_started_at"}
            elif "-N" in command:
                # NDJSON, replayed from cursor 0; the stream ends with the session.
                lines = [json.loads(line)["result"] for line in out.splitlines()]
                assert "started" in lines[0] and "ended" in lines[-1], out
                assert any(e.get("agent_event", {}).get("name") == "turn_finished" for e in lines)
            elif "/sessions?" in url:  # ListSessions: the call's sessions, this one among them
                page = json.loads(out)
                assert session_id in [s["session_id"] for s in page["sessions"]], out
            elif url.endswith("/metrics"):
                body = _json(out)
                assert body["session_id"] == session_id
                assert body["metrics"]["llm_input_tokens__total"] == 1500
            else:
                body = _json(out)
                assert body["session_id"] == session_id and "state" in body, out
                bodies[method] = body
        # DELETE answers the ended session: the agent finished on its own.
        assert bodies["DELETE"]["state"] == "SESSION_STATE_ENDED"
        assert bodies["DELETE"]["end_reason"] == "END_REASON_COMPLETED"

        # The feed saw the session live, to its end.
        await wait_until(lambda: _ended_in_feed(seen, session_id), timeout=10)
        feed_text = "".join(seen)
        assert re.search(r"^id: [0-9a-f]+:\d+$", feed_text, re.M), feed_text
    finally:
        if sse.returncode is None:
            sse.terminate()
        await sse.wait()
        await asyncio.gather(feed_reader, return_exceptions=True)

    served_agent.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(served_agent.process.wait(), 60) == 0
    assert served_agent.reader is not None
    await asyncio.wait_for(served_agent.reader, 10)  # the last log lines
    assert any(line.endswith("agentplane stopped") for line in served_agent.logs), served_agent.logs
