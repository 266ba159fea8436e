"""Whatever a page's ``navigator.sendBeacon`` carries, the beacon close ends the session
(issue 13), in headless Chromium.

A beacon never sees its answer: ``sendBeacon(url, "bye")`` (text/plain) or a
typeless Blob of anything must not leave the agent running. "Ended" is the
server's own ENDED event, awaited as it is published.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from playwright.async_api import Page

from agentplane.core import EndReason

from .support import Served, ended_event

# The beacon of each kind, as a page would write it.
SEND = """
async ([url, kind, token]) => {
  const bodies = {
    "string bye": () => "bye",
    "typeless blob of text": () => new Blob(["bye"]),
    "typeless blob of bytes": () => new Blob([new Uint8Array([0, 255, 7, 123])]),
    "json string": () => JSON.stringify("bye"),
    "blob with the token and a bad field":
      () => new Blob([JSON.stringify({ close_token: token, session_id: 5 })]),
  };
  return navigator.sendBeacon(url, bodies[kind]());
}
"""
KINDS = ["string bye", "typeless blob of text", "typeless blob of bytes", "json string"]


async def _beacon(page: Page, served: Served, session_id: str, kind: str, token: str) -> int:
    """Send the beacon from ``page``; answer the HTTP status the server gave it."""
    url = f"{served.url}/sessions/{session_id}/close"
    async with page.expect_response(url) as answer:
        assert await page.evaluate(SEND, [url, kind, token]) is True  # queued
    response = await answer.value
    assert response.request.resource_type == "ping"  # a real beacon
    return response.status


@pytest.mark.parametrize("kind", KINDS)
async def test_an_unreadable_beacon_ends_the_session(server: Served, page: Page, kind: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        sid = (await http.post("/sessions", json={"call_id": "beacon-call"})).json()["session_id"]
    await page.goto(f"{server.url}/demo/")
    ended = asyncio.ensure_future(ended_event(server, sid))
    assert await _beacon(page, server, sid, kind, "") == 200
    event = await asyncio.wait_for(ended, 5)
    assert event.payload["session"].end_reason is EndReason.CLOSED_BY_REQUEST


async def test_a_blob_with_the_close_token_and_a_bad_field_ends_the_session(
    auth_server: Served, page: Page
) -> None:
    async with httpx.AsyncClient(base_url=auth_server.url, headers=auth_server.headers) as http:
        started = (await http.post("/sessions", json={"call_id": "beacon-call"})).json()
    await page.goto(auth_server.demo())
    body = "blob with the token and a bad field"
    ended = asyncio.ensure_future(ended_event(auth_server, started["session_id"]))
    # Without the token the same beacon is refused: the token closes it.
    assert await _beacon(page, auth_server, started["session_id"], body, "forged") == 403
    assert (
        await _beacon(page, auth_server, started["session_id"], body, started["close_token"]) == 200
    )
    event = await asyncio.wait_for(ended, 5)
    assert event.payload["session"].end_reason is EndReason.CLOSED_BY_REQUEST
