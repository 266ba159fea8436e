"""An HTTP Start whose client goes away is cancelled and rolled back (issue 12);
a Close whose client goes away still closes.

Before, the gateway kept awaiting Start after the client left: the session
was created anyway, nobody had its id, and with ``max_sessions_per_call=1``
the retry got 429 until the orphan idled out. Now the disconnect cancels the
call in both deployments (embedded: the in-process SessionAPI call;
standalone: the upstream gRPC call), as a gRPC client's cancellation does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from agentplane.core import SessionQuery
from agentplane.http.app import gateway_app
from agentplane.http.embedded import InProcessBackend
from agentplane.server import AgentLauncher, SessionContext
from agentplane.testing import serving
from tests.support import wait_until
from tests.support.servers import open_options

from .support import Agent, deploy


class SlowStart:
    """create_agent waits for ``release``; counts how often it was cancelled."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = 0

    async def create_agent(self, **_: Any) -> Agent:
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return Agent()

    async def join_call(
        self, agent: Agent, call_type: str, call_id: str, *, session: SessionContext, **_: Any
    ) -> None:
        await asyncio.Event().wait()


async def _start_and_leave(port: int, body: dict[str, Any], slow: SlowStart) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = json.dumps(body).encode()
    writer.write(
        b"POST /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    await writer.drain()
    await asyncio.wait_for(slow.entered.wait(), 10)
    writer.close()  # the tab is closed mid-Start
    await writer.wait_closed()


async def _send_and_leave(port: int, head: bytes) -> None:
    """Send a request and close the connection as soon as it has been read."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_an_abandoned_start_is_rolled_back(kind: str) -> None:
    slow = SlowStart()
    launcher = AgentLauncher(
        slow.create_agent, slow.join_call, max_sessions_per_call=1, drain_timeout=2
    )
    async with deploy(kind, launcher) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        await _start_and_leave(port, {"call_id": "c"}, slow)
        # Within 5 s: the standalone gateway's upstream deadline (10 s) must not be what ends it.
        await wait_until(lambda: slow.cancelled == 1 and launcher.stats().in_flight == 0, 5)
        assert launcher.stats().started == 0
        slow.release.set()
        retry = await gw.http.post("/sessions", json={"call_id": "c"})
        assert retry.status_code == 201, retry.text  # was 429: the orphan held the call's slot
        assert launcher.stats().in_flight == 1


def _receive_watchers() -> list[asyncio.Task[Any]]:
    """Tasks reading ``receive`` for a client's departure (``until_disconnect``'s fallback)."""
    return [
        task
        for task in asyncio.all_tasks()
        if "read_until_disconnect" in getattr(task.get_coro(), "__qualname__", "")
    ]


async def test_our_http_server_says_the_client_left_without_a_task_reading_receive(
    kind: str,
) -> None:
    # agentplane's HTTP server offers DISCONNECT_WATCH: a Start under way
    # costs no watcher task, and leaving still rolls it back.
    slow = SlowStart()
    launcher = AgentLauncher(slow.create_agent, slow.join_call, drain_timeout=2)
    async with deploy(kind, launcher) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = b'{"call_id": "c"}'
        writer.write(
            b"POST /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )
        await writer.drain()
        await asyncio.wait_for(slow.entered.wait(), 10)
        assert _receive_watchers() == []
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: slow.cancelled == 1 and launcher.stats().in_flight == 0, 5)


@contextlib.asynccontextmanager
async def _on_plain_uvicorn(launcher: AgentLauncher) -> AsyncIterator[int]:
    """The gateway of ``launcher`` on uvicorn as a user would run it: no DISCONNECT_WATCH."""
    async with serving(launcher, open_options()) as served:
        app = gateway_app(InProcessBackend(served.runner.api, launcher))
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            await wait_until(lambda: server.started or task.done(), 10)
            yield server.servers[0].sockets[0].getsockname()[1]
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)


async def test_on_another_asgi_server_a_task_reading_receive_sees_the_client_leave() -> None:
    slow = SlowStart()
    launcher = AgentLauncher(
        slow.create_agent, slow.join_call, max_sessions_per_call=1, drain_timeout=2
    )
    async with _on_plain_uvicorn(launcher) as port:
        started = asyncio.create_task(_start_and_leave(port, {"call_id": "c"}, slow))
        await asyncio.wait_for(slow.entered.wait(), 10)
        assert len(_receive_watchers()) == 1
        await started
        await wait_until(lambda: slow.cancelled == 1 and launcher.stats().in_flight == 0, 5)
        assert launcher.stats().started == 0
        assert _receive_watchers() == []


async def test_a_retry_with_the_same_idempotency_key_finds_its_session(kind: str) -> None:
    slow = SlowStart()
    slow.release.set()
    launcher = AgentLauncher(
        slow.create_agent, slow.join_call, max_sessions_per_call=1, drain_timeout=2
    )
    async with deploy(kind, launcher) as gw:
        body = {"call_id": "c", "idempotency_key": "tab-1-attempt-1"}
        first = await gw.http.post("/sessions", json=body)
        again = await gw.http.post("/sessions", json=body)
        assert first.status_code == 201 and again.status_code == 201, again.text
        assert again.json()["session_id"] == first.json()["session_id"]


async def test_a_close_whose_client_leaves_still_closes(kind: str) -> None:
    # The Close waits for the Start under way; its client leaves meanwhile.
    # A DELETE is idempotent: finished after the client left, it is what the
    # client asked for (the gateway watches only a Start for a departure).
    slow = SlowStart()
    launcher = AgentLauncher(slow.create_agent, slow.join_call, drain_timeout=2)
    async with deploy(kind, launcher) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        start = asyncio.create_task(gw.http.post("/sessions", json={"call_id": "c"}))
        await asyncio.wait_for(slow.entered.wait(), 10)
        page = await launcher.list_sessions(SessionQuery())
        (session_id,) = [record.session_id for record in page.records]
        await _send_and_leave(
            port, b"DELETE /sessions/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % session_id.encode()
        )

        # The server runs in this loop and the FIN is on its socket already: a
        # round trip through the gateway (and its upstream) gives it the loop
        # iterations to see the client leave (a watched call is cancelled then).
        for _ in range(2):
            got = await gw.http.get(f"/sessions/{session_id}")
            assert got.json()["state"] == "SESSION_STATE_STARTING", got.text
        slow.release.set()
        started = await start
        assert started.status_code == 201, started.text

        async def closed() -> bool:
            record = await launcher.get_session(session_id)
            return record.end_reason is not None

        await wait_until(closed, 5)
        record = await launcher.get_session(session_id)
        assert record.end_reason is not None
        assert record.end_reason.name == "CLOSED_BY_REQUEST"
