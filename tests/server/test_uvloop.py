"""A server on uvloop: what an application that installs uvloop gets.

Many agent applications run on uvloop (uvicorn[standard] installs it, and its
"auto" loop picks it). The launcher's timers once subclassed
``asyncio.TimerHandle``, whose ``cancel()`` calls a method only the stdlib
loop has: on uvloop every Close answered INTERNAL. These run a real server on
a uvloop loop and drive both transports through the paths that arm, cancel
and fire timers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import uvloop

import agentplane.clients.betterproto as bp
from agentplane.core.timers import SessionTimers
from agentplane.testing import serving, wait_until
from tests.support import FakeAgents


def run_on_uvloop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        runner.run(main())


def test_sessions_start_close_and_time_out_on_uvloop() -> None:
    async def main() -> None:
        agents = FakeAgents()
        # Every session's max-duration timer is armed at Start, and cancelled
        # by a Close before it fires.
        launcher = agents.launcher(agent_idle_timeout=30.0, max_session_duration_seconds=2.0)
        async with serving(launcher) as served:
            # Close over HTTP (cancels the session's idle timer).
            started = await served.stub.start(bp.StartRequest(call_id="c1"), timeout=5)
            async with httpx.AsyncClient(base_url=served.http_url) as http:
                got = await http.get(f"/sessions/{started.session_id}")
                assert got.status_code == 200, got.text
                assert got.json()["state"] == "SESSION_STATE_RUNNING"
                closed = await http.delete(f"/sessions/{started.session_id}")
                assert closed.status_code == 200, closed.text
            record = await launcher.get_session(started.session_id)
            assert record.end_reason is not None
            assert record.end_reason.name == "CLOSED_BY_REQUEST"

            # Close over gRPC.
            again = await served.stub.start(bp.StartRequest(call_id="c2"), timeout=5)
            reply = await served.stub.close(bp.CloseRequest(session_id=again.session_id), timeout=5)
            assert reply.session is not None
            assert reply.session.end_reason == bp.EndReason.CLOSED_BY_REQUEST

            # A timer that fires: the session's max duration.
            timed = await served.stub.start(bp.StartRequest(call_id="c3"), timeout=5)

            async def ended() -> bool:
                return (await launcher.get_session(timed.session_id)).end_reason is not None

            await wait_until(ended, timeout=10)
            record = await launcher.get_session(timed.session_id)
            assert record.end_reason is not None and record.end_reason.name == "MAX_DURATION"

    run_on_uvloop(main)


def test_session_timers_keep_loop_semantics_on_uvloop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        timers = SessionTimers(loop)
        ran: list[str] = []
        done = asyncio.Event()
        timers.call_later(0.02, ran.append, "second")
        timers.call_later(0.01, ran.append, "first")
        dropped = timers.call_later(0.015, ran.append, "cancelled")
        timers.call_later(0.03, done.set)
        dropped.cancel()
        assert dropped.cancelled()
        await asyncio.wait_for(done.wait(), 5)
        assert ran == ["first", "second"]
        assert len(timers) == 0

    run_on_uvloop(main)
