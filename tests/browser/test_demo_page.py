"""The demo page in headless Chromium: start, watch, close; leaving the tab ends the agent.

"Ended" is read from the server itself: the launcher's event log yields the
session's ENDED event the moment it is published, so no test polls or sleeps.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect

from agentplane.core import EndReason, SessionState
from agentplane.testing import wait_until

from .support import (
    BEACON_DEADLINE,
    Served,
    Stopwatch,
    ended_event,
    running_server,
    screenshot,
    start_from_page,
)

# Records every sendBeacon in sessionStorage, which outlives the page within
# its origin: a test can read what the beacon carried from the next page.
RECORD_BEACONS = """
const originalSendBeacon = navigator.sendBeacon.bind(navigator);
navigator.sendBeacon = (url, body) => {
  const sent = JSON.parse(sessionStorage.getItem("beacons") || "[]");
  sent.push({ url: String(url), body: body == null ? null : String(body),
              type: body == null ? null : body.constructor.name });
  sessionStorage.setItem("beacons", JSON.stringify(sent));
  return originalSendBeacon(url, body);
};
"""


async def test_start_watch_metrics_and_events_then_close_by_button(
    server: Served, page: Page
) -> None:
    session_id = await start_from_page(page, server, "browser-call-1")
    await expect(page.locator("#session-call")).to_have_text("browser-call-1 (default)")
    await expect(page.locator("#close")).to_be_enabled()
    # Live metrics: the demo agent processes a frame a second; the table follows.
    frames = page.locator('#metrics tr[data-metric="video_frames_processed__total"] td.num')
    await expect(frames).to_have_text(re.compile(r"^([2-9]|\d\d+)$"))
    await expect(page.locator("#stream")).to_have_text("live")
    latency = page.locator('#metrics tr[data-metric="video_processing_latency_ms__p95"]')
    await expect(latency).to_be_visible()
    # Events: the replay from the start, then live ones (frame_processed comes every 5 frames).
    events = page.locator("#events li")
    await expect(events.and_(page.locator('[data-kind="started"]'))).to_have_count(1)
    await expect(events.filter(has_text="joined")).to_have_count(1)
    await expect(events.filter(has_text="frame_processed")).to_have_count(1)
    await expect(page.locator('#events li[data-kind="metrics"] .detail')).to_contain_text("updates")
    await expect(frames).to_have_text(re.compile(r"^([5-9]|\d\d+)$"))
    await screenshot(page, "demo-page")

    await page.click("#close")
    await expect(page.locator("#state")).to_have_attribute("data-state", "ended")
    await expect(page.locator("#end-reason")).to_contain_text("closed by request")
    await expect(page.locator('#events li[data-kind="ended"]')).to_contain_text("closed by request")
    await expect(page.locator("#close")).to_be_disabled()
    await expect(page.locator("#start")).to_be_enabled()
    await expect(page.locator("#stream")).to_have_text("done (the session ended)")
    record = await server.runner.launcher.get_session(session_id)
    assert record.state is SessionState.ENDED
    assert record.end_reason is EndReason.CLOSED_BY_REQUEST
    await screenshot(page, "demo-page-closed")


async def test_close_button_with_auth_on(auth_server: Served, page: Page) -> None:
    session_id = await start_from_page(page, auth_server, "browser-call-button", token_in="query")
    await expect(page.locator("#metrics tbody tr").first).to_be_visible()
    await page.click("#close")
    await expect(page.locator("#state")).to_have_attribute("data-state", "ended")
    record = await auth_server.runner.launcher.get_session(session_id)
    assert record.end_reason is EndReason.CLOSED_BY_REQUEST


async def test_start_errors_are_shown(auth_server: Served, page: Page) -> None:
    await page.goto(auth_server.demo(call_id="no-token-given"))
    await page.click("#start")
    await expect(page.locator("#error")).to_contain_text("UNAUTHENTICATED (HTTP 401, code 16)")
    await page.fill("#token", auth_server.token or "")
    await page.fill("#call-id", "spaces are not allowed")
    await page.click("#start")
    await expect(page.locator("#error")).to_contain_text("INVALID_ARGUMENT (HTTP 400, code 3)")
    await expect(page.locator("#state")).to_have_attribute("data-state", "none")
    assert auth_server.runner.launcher.stats().started == 0


async def _ended_by_request(served: Served, session_id: str, clock: Stopwatch) -> None:
    ended = await ended_event(served, session_id)
    latency = clock.elapsed()
    assert ended.payload["session"].end_reason is EndReason.CLOSED_BY_REQUEST
    record = await served.runner.launcher.get_session(session_id)
    assert record.end_reason is EndReason.CLOSED_BY_REQUEST
    print(f"\n{session_id} ended by request {latency * 1000:.0f} ms after the page was left")


@pytest.mark.parametrize("auth", ["auth-off", "auth-on"])
async def test_navigating_away_ends_the_session(auth: str, page: Page) -> None:
    async with running_server("leave-token" if auth == "auth-on" else None) as served:
        await page.add_init_script(RECORD_BEACONS)
        session_id = await start_from_page(page, served, f"browser-away-{auth}")
        await screenshot(page, f"before-navigating-away-{auth}")
        clock = Stopwatch()
        async with asyncio.timeout(BEACON_DEADLINE):
            await page.goto(f"{served.url}/health")  # same origin: sessionStorage survives
            await _ended_by_request(served, session_id, clock)
        beacons: list[dict[str, Any]] = await page.evaluate(
            "JSON.parse(sessionStorage.getItem('beacons') || '[]')"
        )
    (beacon,) = beacons
    assert beacon["url"] == f"{served.url}/sessions/{session_id}/close"
    if served.token is None:
        assert beacon["body"] is None  # auth off: nothing to prove
    else:
        # A form body (CORS-safelisted: no preflight) with Start's close token.
        assert beacon["type"] == "URLSearchParams"
        key, _, close_token = beacon["body"].partition("=")
        assert key == "close_token"
        assert served.runner.api.auth.close_token_valid(session_id, close_token)


@pytest.mark.parametrize("auth", ["auth-off", "auth-on"])
async def test_closing_the_tab_ends_the_session(
    auth: str, browser: BrowserContext, page: Page
) -> None:
    async with running_server("tab-token" if auth == "auth-on" else None) as served:
        session_id = await start_from_page(page, served, f"browser-tab-{auth}")
        await screenshot(page, f"before-closing-the-tab-{auth}")
        other_tab = await browser.new_page()  # the browser stays; only the tab goes
        clock = Stopwatch()
        async with asyncio.timeout(BEACON_DEADLINE):
            await page.close(run_before_unload=True)  # as a user closing the tab
            await _ended_by_request(served, session_id, clock)
        assert not other_tab.is_closed()


async def test_a_forged_beacon_is_refused(auth_server: Served, page: Page) -> None:
    """With auth on, a close token closes its own session and no other one."""
    async with httpx.AsyncClient(base_url=auth_server.url, headers=auth_server.headers) as http:
        victim = (await http.post("/sessions", json={"call_id": "victim-call"})).json()
        attacker = (await http.post("/sessions", json={"call_id": "attacker-call"})).json()
    # The attacker's page has no API token, only the close token of its own session.
    await page.goto(auth_server.demo())
    victim_close = f"{auth_server.url}/sessions/{victim['session_id']}/close"
    forgeries = {
        "another session's token": (
            "closeOnPageHide({session_id: victim, close_token: token});"
            "window.dispatchEvent(new PageTransitionEvent('pagehide'));"
        ),
        "a made-up token": (
            "navigator.sendBeacon(`/sessions/${victim}/close`, "
            "new URLSearchParams({close_token: token.slice(0, -4) + 'AAAA'}));"
        ),
        "no token": "navigator.sendBeacon(`/sessions/${victim}/close`);",
    }
    statuses = {}
    for name, script in forgeries.items():
        async with page.expect_response(victim_close) as answer:
            await page.evaluate(
                "async ([victim, token]) => {"
                "  const { AgentplaneClient } = await import('/demo/agentplane.js');"
                "  const client = new AgentplaneClient();"
                "  const closeOnPageHide = (s) => client.closeOnPageHide(s);"
                f"  {script}"
                "}",
                [victim["session_id"], attacker["close_token"]],
            )
        response = await answer.value
        assert response.request.resource_type == "ping"  # a real beacon
        statuses[name] = response.status
    assert statuses == {"another session's token": 403, "a made-up token": 403, "no token": 401}

    launcher = auth_server.runner.launcher
    assert (await launcher.get_session(victim["session_id"])).state is SessionState.RUNNING
    assert (await launcher.get_session(attacker["session_id"])).state is SessionState.RUNNING

    # The same beacon with the matching pair closes the attacker's own session.
    async with page.expect_response(
        f"{auth_server.url}/sessions/{attacker['session_id']}/close"
    ) as answer:
        await page.evaluate(
            "async (session) => {"
            "  const { AgentplaneClient } = await import('/demo/agentplane.js');"
            "  new AgentplaneClient().closeOnPageHide(session);"
            "  window.dispatchEvent(new PageTransitionEvent('pagehide'));"
            "}",
            attacker,
        )
    assert (await answer.value).status == 200
    ended = await asyncio.wait_for(ended_event(auth_server, attacker["session_id"]), 2)
    assert ended.payload["session"].end_reason is EndReason.CLOSED_BY_REQUEST
    assert (await launcher.get_session(victim["session_id"])).state is SessionState.RUNNING


# A beacon that never arrives (the browser crashed, the network dropped): the
# session outlives the page, as it does when the page is reloaded that way.
LOSE_BEACONS = "navigator.sendBeacon = () => true;"


async def test_a_reload_re_attaches_to_the_running_session(server: Served, page: Page) -> None:
    await page.add_init_script(LOSE_BEACONS)
    await page.goto(server.demo())  # no ?call_id=: the page makes one up
    call_id = await page.input_value("#call-id")
    await page.click("#start")
    await expect(page.locator("#state")).to_have_attribute("data-state", "running")
    session_id = (await page.text_content("#session-id") or "").strip()
    assert (await server.runner.launcher.get_session(session_id)).call_id == call_id
    await expect(page.locator(f'#call-sessions tr[data-session-id="{session_id}"]')).to_have_count(
        1
    )

    async with page.expect_response(lambda r: "/sessions?" in r.url) as listed:
        await page.reload()  # the session id was only in the old page
    listing = await listed.value
    assert listing.url == (
        f"{server.url}/calls/{call_id}/sessions?states=SESSION_STATE_RUNNING&page_size=1"
    )
    await expect(page.locator("#session-id")).to_have_text(session_id)
    await expect(page.locator("#state")).to_have_attribute("data-state", "running")
    await expect(page.locator("#call-id")).to_have_value(call_id)
    await expect(page.locator("#hint")).to_contain_text("Re-attached")
    await expect(page.locator("#start")).to_be_disabled()
    # Its events from the start (replayed), its live metrics, and the call's list.
    await expect(page.locator('#events li[data-kind="started"]')).to_have_count(1)
    await expect(page.locator("#stream")).to_have_text("live")
    frames = page.locator('#metrics tr[data-metric="video_frames_processed__total"] td.num')
    await expect(frames).to_have_text(re.compile(r"^[1-9]\d*$"))
    row = page.locator(f'#call-sessions tr[data-session-id="{session_id}"]')
    await expect(row).to_contain_text("shown above")
    await expect(page.locator("#call-sessions tbody tr")).to_have_count(1)
    assert server.runner.launcher.stats().started == 1  # no second agent
    await screenshot(page, "demo-page-reattached")

    await page.click("#close")
    await expect(page.locator("#state")).to_have_attribute("data-state", "ended")
    await expect(page.locator("#end-reason")).to_contain_text("closed by request")
    await expect(row).to_have_attribute("data-state", "ended")
    await expect(page.locator("#start")).to_be_enabled()
    record = await server.runner.launcher.get_session(session_id)
    assert record.end_reason is EndReason.CLOSED_BY_REQUEST

    # Reloaded again, the call has no running session: nothing to re-attach, nothing started.
    await page.reload()
    await expect(row).to_have_attribute("data-state", "ended")
    await expect(page.locator("#state")).to_have_attribute("data-state", "none")
    await expect(page.locator("#start")).to_be_enabled()
    assert server.runner.launcher.stats().started == 1


async def test_with_auth_on_the_page_asks_for_the_token_before_listing(
    auth_server: Served, page: Page
) -> None:
    await page.add_init_script(LOSE_BEACONS)
    session_id = await start_from_page(page, auth_server, "browser-reattach-auth")
    await page.reload()  # the token field is empty again; the call id is in the URL
    await expect(page.locator("#hint")).to_contain_text("Enter the API token")
    await expect(page.locator("#error")).to_be_empty()
    await page.fill("#token", auth_server.token or "")
    await page.click("#refresh-sessions")
    await expect(page.locator("#session-id")).to_have_text(session_id)
    await page.click("#close")  # no close token now: the API token closes it
    await expect(page.locator("#state")).to_have_attribute("data-state", "ended")
    record = await auth_server.runner.launcher.get_session(session_id)
    assert record.end_reason is EndReason.CLOSED_BY_REQUEST


async def test_kept_agents_survive_a_real_reload_and_are_found_again(
    server: Served, page: Page
) -> None:
    # No beacon is faked away: the cleared box alone keeps the agent on reload.
    await page.goto(server.demo())
    await page.uncheck("#close-on-leave")
    await page.click("#start")
    await expect(page.locator("#state")).to_have_attribute("data-state", "running")
    await expect(page.locator("#hint")).to_contain_text("keeps running")
    session_id = (await page.text_content("#session-id") or "").strip()

    await page.reload()
    await expect(page.locator("#session-id")).to_have_text(session_id)
    await expect(page.locator("#hint")).to_contain_text("Re-attached")
    await expect(page.locator("#close-on-leave")).not_to_be_checked()  # the choice is kept
    record = await server.runner.launcher.get_session(session_id)
    assert record.state is SessionState.RUNNING and server.runner.launcher.stats().started == 1

    # Ticked again, leaving ends it with the beacon, as by default.
    await page.check("#close-on-leave")
    await expect(page.locator("#hint")).to_contain_text("ends the agent")
    await page.goto("about:blank")

    async def ended() -> bool:
        return (await server.runner.launcher.get_session(session_id)).ended

    await wait_until(ended, timeout=10)
    assert (await server.runner.launcher.get_session(session_id)).end_reason is (
        EndReason.CLOSED_BY_REQUEST
    )
