"""A hook that raises something unexpected: INTERNAL in the one error shape, logged once.

Both deployments answer the same: 500 with the google.rpc.Status as JSON (never
a text/plain page), a fixed message that tells nothing of the exception, and
one ERROR record with the traceback on the server. The session is unharmed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest

from agentplane.server import RequestContext, ServeOptions

from .support import Agents, Deployment

Deploy = Callable[..., AbstractAsyncContextManager[Deployment]]
SECRET = "db password is hunter2"
INTERNAL = {
    "code": 13,
    "message": "internal error",
    "details": [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "INTERNAL",
            "domain": "agentplane",
            "metadata": {},
        }
    ],
}


async def broken_hook(ctx: RequestContext, *_: Any) -> None:
    raise RuntimeError(SECRET)


def assert_internal(response: httpx.Response) -> None:
    assert response.status_code == 500, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == INTERNAL
    assert SECRET not in response.text


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records logged with a traceback (whatever the logger)."""
    return [r for r in caplog.records if r.exc_info is not None]


def assert_logged_once_each(caplog: pytest.LogCaptureFixture, failures: int) -> None:
    logged = tracebacks(caplog)
    assert len(logged) == failures, [r.getMessage() for r in logged]
    for record in logged:
        assert record.name == "agentplane.service" and record.levelno == logging.ERROR
        assert record.exc_info is not None and record.exc_info[0] is RuntimeError
        assert SECRET in str(record.exc_info[1])


async def test_a_permission_hook_that_raises_is_internal_and_the_session_lives_on(
    agents: Agents, deploy_kind: Deploy, caplog: pytest.LogCaptureFixture
) -> None:
    options = ServeOptions(api_token=None, can_view_session=broken_hook)
    async with deploy_kind(agents.launcher(), options) as gw:
        started = await gw.http.post("/sessions", json={"call_id": "c"})
        assert started.status_code == 201
        sid = started.json()["session_id"]
        caplog.clear()

        assert_internal(await gw.http.get(f"/sessions/{sid}"))
        assert_internal(await gw.http.get(f"/calls/c/sessions/{sid}"))
        assert_internal(await gw.http.get(f"/sessions/{sid}/events"))
        assert_internal(
            await gw.http.get(f"/sessions/{sid}/events", headers={"accept": "text/event-stream"})
        )
        assert_logged_once_each(caplog, 4)

        # Nothing of the session was touched: it runs, and closes as usual.
        assert (await gw.launcher.get_session(sid)).state.name == "RUNNING"
        assert gw.launcher.stats().in_flight == 1
        closed = await gw.http.delete(f"/sessions/{sid}")
        assert closed.status_code == 200
        assert closed.json()["end_reason"] == "END_REASON_CLOSED_BY_REQUEST"
        assert gw.launcher.stats().in_flight == 0


async def test_a_get_current_user_that_raises_is_internal_and_starts_nothing(
    agents: Agents, deploy_kind: Deploy, caplog: pytest.LogCaptureFixture
) -> None:
    options = ServeOptions(api_token=None, get_current_user=broken_hook)
    async with deploy_kind(agents.launcher(), options) as gw:
        caplog.clear()
        assert_internal(await gw.http.post("/sessions", json={"call_id": "c"}))
        assert_internal(await gw.http.get("/events"))
        assert_logged_once_each(caplog, 2)
        stats = gw.launcher.stats()
        assert (stats.started, stats.in_flight) == (0, 0)
        assert not agents.contexts


async def test_a_failure_mid_stream_ends_it_with_an_internal_error_line(
    agents: Agents, deploy_kind: Deploy, caplog: pytest.LogCaptureFixture
) -> None:
    # The all-sessions stream asks the hook about each session as its first
    # event arrives, after the response began: the error is the last line.
    options = ServeOptions(api_token=None, can_view_session=broken_hook)
    async with deploy_kind(agents.launcher(), options) as gw:
        started = await gw.http.post("/sessions", json={"call_id": "c"})
        sid = started.json()["session_id"]
        caplog.clear()
        async with gw.http.stream("GET", "/events", params={"after_cursor": 0}) as response:
            assert response.status_code == 200
            lines = [json.loads(line) async for line in response.aiter_lines()]
        assert lines[-1] == {"error": INTERNAL}
        assert all("result" in line for line in lines[:-1])
        assert_logged_once_each(caplog, 1)
        assert (await gw.launcher.get_session(sid)).state.name == "RUNNING"
