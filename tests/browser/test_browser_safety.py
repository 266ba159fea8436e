"""What a browser can and cannot do with the defaults (issue 12), in headless Chromium.

A page on another origin cannot start, close or delete sessions of a server
with auth off (no CORS origin by default, JSON-only routes, an Origin check on
the beacon route); the demo page's Start survives a reload mid-Start through
its idempotency key, and the abandoned first attempt is rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from playwright.async_api import Page

from agentplane.server import AgentLauncher, ServeOptions, SessionContext
from tests.support import serving, wait_until

from .support import Served

ATTACK = """
async ({ target, sid }) => {
  const out = {};
  const attempt = async (name, url, init) => {
    try {
      const response = await fetch(url, init);
      out[name] = response.type === "opaque" ? "opaque" : response.status;
    } catch (error) {
      out[name] = "blocked";
    }
  };
  const json = { "Content-Type": "application/json" };
  await attempt("start_json", target + "/sessions",
    { method: "POST", headers: json, body: JSON.stringify({ call_id: "evil-1" }) });
  await attempt("start_text", target + "/sessions",
    { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" },
      body: JSON.stringify({ call_id: "evil-2" }) });
  await attempt("start_form", target + "/sessions",
    { method: "POST", mode: "no-cors", body: new URLSearchParams({ call_id: "evil-3" }) });
  await attempt("start_blob", target + "/sessions",
    { method: "POST", mode: "no-cors", body: new Blob([JSON.stringify({ call_id: "evil-4" })]) });
  // What navigator.sendBeacon sends, awaited: a keepalive no-cors POST with a string.
  await attempt("beacon_close", target + "/sessions/" + sid + "/close",
    { method: "POST", mode: "no-cors", keepalive: true, body: "{}" });
  await attempt("delete", target + "/sessions/" + sid, { method: "DELETE" });
  await attempt("read", target + "/sessions/" + sid, {});
  return out;
}
"""


@contextlib.asynccontextmanager
async def _another_site() -> AsyncIterator[str]:
    """A blank page on another origin (another loopback port), as any web site is."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"<!doctype html><title>another site</title>"
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    site = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{site.sockets[0].getsockname()[1]}/"
    finally:
        site.close()
        await site.wait_closed()


async def test_a_page_on_another_origin_cannot_start_or_close_sessions(
    server: Served, page: Page
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        started = await http.post("/sessions", json={"call_id": "mine"})
    sid = started.json()["session_id"]
    async with _another_site() as elsewhere:
        await page.goto(elsewhere)
        result = await page.evaluate(ATTACK, {"target": server.url, "sid": sid})
    assert result["start_json"] == "blocked"  # the preflight finds no allowed origin
    assert result["delete"] == "blocked"
    assert result["read"] == "blocked"  # the page cannot read the answer either
    for name in ("start_text", "start_form", "start_blob", "beacon_close"):
        assert result[name] == "opaque", result  # sent, but refused (415 / 403) by the server
    stats = server.runner.launcher.stats()
    assert stats.started == 1, result
    assert (await server.runner.launcher.get_session(sid)).state.name == "RUNNING"
    # The page's own origin still can: the demo page's beacon and buttons work.
    await page.goto(f"{server.url}/demo/")
    own = await page.evaluate(
        "async (url) => (await fetch(url, { method: 'POST', keepalive: true, body: '{}' })).status",
        f"{server.url}/sessions/{sid}/close",
    )
    assert own == 200
    assert (await server.runner.launcher.get_session(sid)).state.name == "ENDED"


class _SlowStart:
    """create_agent: the first call waits until cancelled, later ones until ``release``."""

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0
        self.second = asyncio.Event()
        self.release = asyncio.Event()

    async def create_agent(self, **_: Any) -> object:
        self.calls += 1
        if self.calls > 1:
            self.second.set()
        try:
            await (self.release.wait() if self.calls > 1 else asyncio.Event().wait())
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return object()

    async def join_call(
        self, agent: object, call_type: str, call_id: str, *, session: SessionContext, **_: Any
    ) -> None:
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def _serving(launcher: AgentLauncher) -> AsyncIterator[Served]:
    async with serving(launcher, ServeOptions(api_token=None, demo_page=True)) as served:
        yield Served(served.runner, None)


async def test_a_reload_mid_start_resumes_with_the_same_idempotency_key(page: Page) -> None:
    slow = _SlowStart()
    launcher = AgentLauncher(
        slow.create_agent, slow.join_call, max_sessions_per_call=1, drain_timeout=2
    )
    async with _serving(launcher) as served:
        keys: list[str | None] = []
        page.on(
            "request",
            lambda request: (
                keys.append((request.post_data_json or {}).get("idempotency_key"))
                if request.method == "POST" and request.url.endswith("/sessions")
                else None
            ),
        )
        await page.goto(served.demo(call_id="reload-call"))
        await page.click("#start")
        await wait_until(lambda: slow.calls == 1, timeout=10)
        await page.reload()  # the tab reloads while Start waits for create_agent
        # The abandoned attempt was rolled back.
        await wait_until(lambda: slow.cancelled == 1, timeout=10)
        await asyncio.wait_for(slow.second.wait(), 10)  # the reloaded page retried by itself
        slow.release.set()
        await page.wait_for_selector('#state[data-state="running"]')
        assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys
        assert launcher.stats().started == 1
        assert launcher.stats().in_flight == 1
        assert await page.evaluate("sessionStorage.getItem('agentplane.demo.pendingStart')") is None
        assert await page.input_value("#call-id") == "reload-call"
