"""What the browser tests share: a real server, a real headless Chromium, waits with deadlines."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import Page

from agentplane.core import EventKind, SessionEvent
from agentplane.demo.agent import demo_launcher
from agentplane.server import Runner, ServeOptions
from tests.support import serving

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("AGENTPLANE_CHROMIUM", "/usr/bin/chromium"))
# How CI starts Chromium: headless, no sandbox (root in a container), nothing
# talking to the network behind the tests' back. Each test gets a fresh
# user data dir (launch_persistent_context on a temporary folder).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts" / "browser"
API_TOKEN = "browser-test-token"
# The promise: leaving or closing the tab ends the session this fast.
BEACON_DEADLINE = 2.0
# Every other wait (page loads, selectors, events) is bounded by this.
WAIT_MS = 10_000


def missing_chromium() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return (
            f"Chromium not found at {CHROMIUM}: the browser tests need the Debian packages "
            "`chromium` and `chromium-driver` (apt-get install -y chromium chromium-driver; "
            ".ci/run installs them), or AGENTPLANE_CHROMIUM=/path/to/chromium"
        )
    return None


@dataclass
class Served:
    """A running agentplane server: the demo agent, gRPC and the HTTP gateway on port 0."""

    runner: Runner
    token: str | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.runner.http_port}"

    def demo(self, **query: str) -> str:
        params = "&".join(f"{key}={value}" for key, value in query.items())
        return f"{self.url}/demo/" + (f"?{params}" if params else "")

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}


@contextlib.asynccontextmanager
async def running_server(token: str | None = None, **limits: Any) -> AsyncIterator[Served]:
    launcher = demo_launcher(drain_timeout=2, **limits)
    options = ServeOptions(api_token=token, demo_page=True)
    async with serving(launcher, options) as served:
        yield Served(served.runner, token)


async def ended_event(served: Served, session_id: str) -> SessionEvent:
    """The session's ENDED event, as soon as the server published it (no polling)."""
    async for event in served.runner.launcher.events.watch(session_id, 0):
        if event.kind is EventKind.ENDED:
            return event
    raise AssertionError(f"session {session_id} was forgotten without an ENDED event")


async def start_from_page(
    page: Page, served: Served, call_id: str, *, token_in: str = "field"
) -> str:
    """Opens the demo page, starts an agent with the Start button, returns its session id.

    With auth on, the API token goes into the page's token field, or with
    ``token_in="query"`` into its ``?token=`` query parameter.
    """
    query = {"call_id": call_id}
    if served.token and token_in == "query":
        query["token"] = served.token
    await page.goto(served.demo(**query))
    if served.token and token_in == "field":
        await page.fill("#token", served.token)
    await page.click("#start")
    await page.wait_for_selector('#state[data-state="running"]')
    session_id = (await page.text_content("#session-id") or "").strip()
    assert len(session_id) == 36, session_id
    record = await served.runner.launcher.get_session(session_id)
    assert record.call_id == call_id
    return session_id


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


class Stopwatch:
    """Seconds since it was made, for the latencies the tests report."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started
