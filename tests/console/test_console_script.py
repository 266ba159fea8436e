"""The installed ``agentplane sessions`` console script, as a process against a served port."""

from __future__ import annotations

import asyncio
import json
import signal

from agentplane.clients.betterproto import CloseRequest, StartRequest
from agentplane.server import AgentLauncher
from agentplane.testing import serving
from tests.server.support import Proc, console_script

from .support import Relay, create_agent, join_call

TIMEOUT = 60.0


async def run(*args: str) -> tuple[int, str, str]:
    proc = Proc([console_script("agentplane"), *args])
    code = await asyncio.to_thread(proc.wait, TIMEOUT)
    return code, proc.text("stdout"), proc.text("stderr")


async def test_the_console_script_lists_gets_and_fails_with_the_status() -> None:
    launcher = AgentLauncher(create_agent, join_call)
    async with serving(launcher, http=False) as served:
        started = await served.stub.start(StartRequest(call_id="call-s"), timeout=5)
        server = f"--server=127.0.0.1:{served.grpc_port}"

        code, out, err = await run("sessions", "list", "-o", "json", server)
        assert code == 0, err
        assert [s["session_id"] for s in json.loads(out)["sessions"]] == [started.session_id]

        code, out, err = await run("sessions", "get", started.session_id, server)
        assert code == 0, err
        assert "state       running" in out

        code, out, err = await run("sessions", "get", "nope", server)
        assert (code, out) == (69, "")
        assert err.startswith("error: NOT_FOUND: ")


async def test_the_console_script_watches_resumes_and_stops_on_ctrl_c() -> None:
    launcher = AgentLauncher(create_agent, join_call, max_sessions_per_call=5)
    async with serving(launcher, http=False) as served, Relay(served.grpc_port) as relay:
        proc = Proc(
            [console_script("agentplane"), "sessions", "watch", "-o", "json",
             f"--server=127.0.0.1:{relay.port}"]
        )  # fmt: skip
        try:
            await asyncio.to_thread(proc.wait_for, "watching every session", "stderr", TIMEOUT)
            first = await served.stub.start(StartRequest(call_id="call-x"), timeout=5)
            await asyncio.to_thread(proc.wait_for, first.session_id, "stdout", TIMEOUT)

            relay.cut(refuse=True)
            await asyncio.to_thread(proc.wait_for, "connection lost", "stderr", TIMEOUT)
            await served.stub.close(CloseRequest(session_id=first.session_id), timeout=5)
            relay.reopen()
            await asyncio.to_thread(proc.wait_for, "resumed every session", "stderr", TIMEOUT)
            await asyncio.to_thread(proc.wait_for, '"ended"', "stdout", TIMEOUT)

            proc.send(signal.SIGINT)
            code = await asyncio.to_thread(proc.wait, TIMEOUT)
        finally:
            proc.kill()
    assert code == 0, proc.text()
    events = [json.loads(line) for line in proc.text("stdout").splitlines()]
    cursors = [int(e["cursor"]) for e in events]
    assert cursors == sorted(set(cursors))
    assert "started" in events[0] and "ended" in events[-1]
    assert "stopped; resume with --after-cursor" in proc.text()
