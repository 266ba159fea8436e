"""agentplane.js itself, imported by a page in headless Chromium, against a real server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Page

from agentplane.core import EndReason, SessionState

from .support import WAIT_MS, Served, ended_event, running_server

# Defines window.outcome(call): a rejection as a plain object (null when it resolved).
OUTCOME = """
async () => {
  const { AgentplaneError } = await import("/demo/agentplane.js");
  window.outcome = async (call) => {
    try {
      await call();
      return null;
    } catch (error) {
      return {
        typed: error instanceof AgentplaneError && error instanceof Error,
        name: error.name, code: error.code, codeName: error.codeName,
        httpStatus: error.httpStatus, message: error.message, details: error.details,
        retryAfter: error.retryAfter, reason: error.reason,
      };
    }
  };
}
"""


async def _open(page: Page, served: Served) -> None:
    """A page of the server's origin (not the demo page, whose CSP forbids the test's
    string predicates), with the module's helpers loaded."""
    await page.goto(f"{served.url}/health")
    await page.evaluate(OUTCOME)


async def _server_cursors(served: Served, session_id: str) -> list[str]:
    """Every event of an ended session, as the server logged it."""
    cursors = []
    async with asyncio.timeout(5):
        async for event in served.runner.launcher.events.watch(session_id, 0):
            cursors.append(str(event.cursor))
    return cursors


async def test_errors_carry_the_grpc_status(auth_server: Served, page: Page) -> None:
    await _open(page, auth_server)
    errors: dict[str, Any] = await page.evaluate(
        """async (token) => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          const client = new AgentplaneClient({ token });
          const unknown = "00000000-0000-0000-0000-000000000000";
          return {
            unauthenticated: await outcome(() => new AgentplaneClient().start({ call_id: "c" })),
            not_found: await outcome(() => client.get(unknown)),
            invalid: await outcome(() => client.start({ call_id: "not a call id" })),
            unreachable: await outcome(
              () => new AgentplaneClient({ baseUrl: "http://127.0.0.1:9" }).metrics(unknown)),
          };
        }""",
        auth_server.token,
    )
    for error in errors.values():
        assert error["typed"] and error["name"] == "AgentplaneError", error
    unauthenticated = errors["unauthenticated"]
    assert (unauthenticated["code"], unauthenticated["codeName"]) == (16, "UNAUTHENTICATED")
    assert unauthenticated["httpStatus"] == 401
    not_found = errors["not_found"]
    assert (not_found["code"], not_found["codeName"], not_found["httpStatus"]) == (
        5,
        "NOT_FOUND",
        404,
    )
    assert "00000000-0000-0000-0000-000000000000" in not_found["message"]
    assert not_found["reason"] == "SESSION_NOT_FOUND"
    assert not_found["retryAfter"] is None
    invalid = errors["invalid"]
    assert (invalid["code"], invalid["codeName"], invalid["httpStatus"]) == (
        3,
        "INVALID_ARGUMENT",
        400,
    )
    (bad_request,) = [d for d in invalid["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert "call_id" in str(bad_request)
    unreachable = errors["unreachable"]
    assert (unreachable["codeName"], unreachable["httpStatus"]) == ("UNAVAILABLE", 0)


async def test_rate_limit_error_says_when_to_retry(page: Page) -> None:
    async with running_server(permits_per_minute=1) as served:
        await _open(page, served)
        error: dict[str, Any] = await page.evaluate(
            """async () => {
              const { AgentplaneClient } = await import("/demo/agentplane.js");
              const client = new AgentplaneClient();
              await client.start({ call_id: "first" });
              return outcome(() => client.start({ call_id: "second" }));
            }"""
        )
    assert (error["code"], error["codeName"], error["httpStatus"]) == (8, "RESOURCE_EXHAUSTED", 429)
    assert error["reason"] == "RATE_LIMITED"
    assert 0 < error["retryAfter"] <= 60


async def test_a_close_token_closes_without_credentials(auth_server: Served, page: Page) -> None:
    await _open(page, auth_server)
    result: dict[str, Any] = await page.evaluate(
        """async (token) => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          const started = await new AgentplaneClient({ token }).start({ call_id: "token-close" });
          const anonymous = new AgentplaneClient();
          const byIdOnly = await outcome(() => anonymous.close(started.session_id));
          const ended = await anonymous.close(started);  // Start's answer: its close token
          return { started, byIdOnly, ended };
        }""",
        auth_server.token,
    )
    assert result["started"]["close_token"]
    assert result["byIdOnly"]["codeName"] == "UNAUTHENTICATED"
    assert result["ended"]["state"] == "SESSION_STATE_ENDED"
    assert result["ended"]["end_reason"] == "END_REASON_CLOSED_BY_REQUEST"
    record = await auth_server.runner.launcher.get_session(result["started"]["session_id"])
    assert record.end_reason is EndReason.CLOSED_BY_REQUEST


async def test_events_over_eventsource_until_the_session_ends(server: Served, page: Page) -> None:
    await _open(page, server)
    session_id: str = await page.evaluate(
        """async () => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          const Native = window.EventSource;
          window.sources = [];
          window.EventSource = class extends Native {
            constructor(url, init) { super(url, init); window.sources.push(url); }
          };
          const client = new AgentplaneClient();
          const session = await client.start({ call_id: "eventsource-call" });
          window.received = [];
          window.stream = client.events(session, {
            afterCursor: 0,
            onEvent: (event) => window.received.push(event),
            onError: (error) => { window.failed = error; },
          });
          return session.session_id;
        }"""
    )
    await page.wait_for_function(
        "window.received.some((e) => e.agent_event?.name === 'joined')"
        " && window.received.some((e) => e.metrics_updated)",
        timeout=WAIT_MS,
    )
    await server.runner.launcher.close_session(session_id)
    await page.wait_for_function("window.stream.closed", timeout=WAIT_MS)
    received: list[dict[str, Any]] = await page.evaluate("window.received")
    state: dict[str, Any] = await page.evaluate(
        "({ sources: window.sources, failed: window.failed ?? null, cursor: window.stream.cursor })"
    )
    assert state["failed"] is None
    # baseUrl "": the page's own origin
    assert state["sources"] == [f"/sessions/{session_id}/events?after_cursor=0"]
    cursors = [event["cursor"] for event in received]
    assert cursors == await _server_cursors(server, session_id)
    assert state["cursor"] == cursors[-1]
    assert "started" in received[0]
    assert received[-1]["ended"]["session"]["end_reason"] == "END_REASON_CLOSED_BY_REQUEST"


async def test_events_with_a_token_resume_after_a_dropped_connection(
    auth_server: Served, page: Page
) -> None:
    """The fetch transport: the first connection breaks after one message, the client resumes."""
    await _open(page, auth_server)
    session_id: str = await page.evaluate(
        """async (token) => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          window.requests = [];
          let broken = false;
          const breakingFetch = async (url, init) => {
            window.requests.push({ url, authorization: init?.headers?.Authorization ?? null });
            const response = await fetch(url, init);
            if (broken || !url.includes("/events")) return response;
            broken = true;
            // Pass the first chunk on, then fail as a dropped connection does.
            const reader = response.body.getReader();
            let delivered = false;
            const body = new ReadableStream({
              async pull(controller) {
                if (delivered) {
                  reader.cancel();
                  controller.error(new TypeError("network error (the test broke the connection)"));
                  return;
                }
                const { value, done } = await reader.read();
                if (done) return controller.close();
                controller.enqueue(value);
                delivered = new TextDecoder().decode(value).includes("\\n\\n");
              },
            });
            return new Response(body, { status: response.status, headers: response.headers });
          };
          window.EventSource = undefined;  // must not be needed: a token rules it out anyway
          const client = new AgentplaneClient({ token, fetch: breakingFetch });
          const session = await client.start({ call_id: "resume-call" });
          window.received = [];
          window.opened = 0;
          window.stream = client.events(session, {
            afterCursor: 0,
            onOpen: () => { window.opened += 1; },
            onEvent: (event) => window.received.push(event),
            onError: (error) => { window.failed = error.message; },
          });
          return session.session_id;
        }""",
        auth_server.token,
    )
    await page.wait_for_function(
        "window.opened >= 2 && window.received.some((e) => e.metrics_updated)", timeout=WAIT_MS
    )
    await auth_server.runner.launcher.close_session(session_id)
    await page.wait_for_function("window.stream.closed", timeout=WAIT_MS)
    received: list[dict[str, Any]] = await page.evaluate("window.received")
    requests: list[dict[str, Any]] = await page.evaluate("window.requests")
    assert await page.evaluate("window.failed ?? null") is None
    cursors = [event["cursor"] for event in received]
    assert cursors == await _server_cursors(auth_server, session_id)  # nothing lost, no duplicate
    streams = [r for r in requests if "/events" in r["url"]]
    assert all(r["authorization"] == f"Bearer {auth_server.token}" for r in requests)
    events_url = f"/sessions/{session_id}/events"
    assert streams[0]["url"] == f"{events_url}?after_cursor=0"
    # The second connection resumes after what the first one delivered.
    resumed = int(streams[1]["url"].rsplit("after_cursor=", 1)[1])
    assert str(resumed) in cursors and resumed > 0
    assert received[-1]["ended"]["session"]["end_reason"] == "END_REASON_CLOSED_BY_REQUEST"


@pytest.mark.parametrize("transport", ["eventsource", "fetch"])
async def test_resuming_with_another_logs_cursor_replays_after_a_gap(
    server: Served, page: Page, transport: str
) -> None:
    """A cursor saved before the server restarted (another epoch) is ahead of the new
    log's: the client still hands over the new log's first events, after the gap."""
    await _open(page, server)
    state: dict[str, Any] = await page.evaluate(
        """async (transport) => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          const client = new AgentplaneClient();
          const first = await client.start({ call_id: "epoch-1" });
          const second = await client.start({ call_id: "epoch-2" });
          const received = [];
          const stream = client.events(null, {
            transport, afterCursor: "1000", epoch: "0000000000000000",
            onEvent: (event) => received.push(event),
          });
          const deadline = Date.now() + 10000;
          while (received.filter((e) => e.started).length < 2 && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          stream.close();
          return { received, epoch: stream.epoch, cursor: stream.cursor,
                   ids: [first.session_id, second.session_id] };
        }""",
        transport,
    )
    received = state["received"]
    assert received[0]["gap"]["after_cursor"] == "1000", received[0]
    new_epoch = received[0]["epoch"]
    assert new_epoch and new_epoch != "0000000000000000" and state["epoch"] == new_epoch
    # Then the new log from its first event: nothing the old cursor would have skipped.
    cursors = [int(e["cursor"]) for e in received[1:]]
    assert cursors == list(range(1, len(cursors) + 1))
    assert [e["session_id"] for e in received if "started" in e] == state["ids"]
    assert state["cursor"] == received[-1]["cursor"]


async def test_events_of_every_session(server: Served, page: Page) -> None:
    await _open(page, server)
    started: list[str] = await page.evaluate(
        """async () => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          const client = new AgentplaneClient();
          window.received = [];
          // afterCursor 0: replay what is buffered, so the Starts need not race
          // the stream's connection.
          window.stream = client.events(null, {
            afterCursor: 0, onEvent: (event) => window.received.push(event),
          });
          const first = await client.start({ call_id: "all-1" });
          const second = await client.start({ call_id: "all-2" });
          return [first.session_id, second.session_id];
        }"""
    )
    await page.wait_for_function(
        "(ids) => ids.every((id) => window.received.some((e) => e.started && e.session_id === id))",
        arg=started,
        timeout=WAIT_MS,
    )
    assert not await page.evaluate("window.stream.closed")  # a feed of all sessions never ends
    await page.evaluate("window.stream.close()")
    assert await page.evaluate("window.stream.closed")


async def test_a_refused_stream_reports_the_error(server: Served, page: Page) -> None:
    await _open(page, server)
    errors: dict[str, Any] = await page.evaluate(
        """async () => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          const unknown = "00000000-0000-0000-0000-000000000000";
          const failure = (transport) => new Promise((resolve) => {
            new AgentplaneClient().events(unknown, {
              transport, onEvent: () => {}, onError: (e) => resolve([e.codeName, e.httpStatus]),
            });
          });
          return { eventsource: await failure("eventsource"), fetch: await failure("fetch") };
        }"""
    )
    # EventSource does not show the answer: the client asks the server what went wrong.
    assert errors["eventsource"] == ["NOT_FOUND", 404]
    assert errors["fetch"] == ["NOT_FOUND", 404]


async def test_sse_parsing(server: Served, page: Page) -> None:
    """The fetch transport's parser on a hand-made stream: line endings split across
    chunks, comments, ids, an unknown event type, then the server's error event."""
    await _open(page, server)
    result: dict[str, Any] = await page.evaluate(
        """async () => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          const chunks = [
            ": heartbeat\\r\\n\\r\\n",
            'id: 7\\r\\ndata: {"cursor": "7", "session_id": "s", "agent_event": {"name": "a"}}\\r',
            "\\n\\r\\n",
            'data: {"cursor": "8", \\ndata:"session_id": "s", "gap": {}}\\n\\n',
            "event: custom\\ndata: ignored\\n\\n",
            'data: {"cursor": "7", "session_id": "s", "agent_event": {"name": "duplicate"}}\\n\\n',
            'event: error\\ndata: {"code": 14, "message": "server shutting down", "details": []}\\n\\n',
          ];
          const fakeFetch = async () => new Response(new ReadableStream({
            pull(controller) {
              const next = chunks.shift();
              if (next === undefined) controller.close();
              else controller.enqueue(new TextEncoder().encode(next));
            },
          }), { status: 200, headers: { "content-type": "text/event-stream" } });
          const received = [];
          const error = await new Promise((resolve) => {
            new AgentplaneClient({ token: "t", fetch: fakeFetch }).events(null, {
              onEvent: (event) => received.push(event), onError: resolve,
            });
          });
          return { received, error: [error.code, error.codeName, error.message] };
        }"""
    )
    assert [e["cursor"] for e in result["received"]] == ["7", "8"]
    assert result["received"][0]["agent_event"]["name"] == "a"
    assert "gap" in result["received"][1]
    assert result["error"] == [14, "UNAVAILABLE", "server shutting down"]


async def test_close_on_page_hide_can_be_disarmed(server: Served, page: Page) -> None:
    await _open(page, server)
    session_id: str = await page.evaluate(
        """async () => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          const client = new AgentplaneClient();
          const session = await client.start({ call_id: "disarmed" });
          const disarm = client.closeOnPageHide(session);
          disarm();
          return session.session_id;
        }"""
    )
    armed: str = await page.evaluate(
        """async () => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          const client = new AgentplaneClient();
          const session = await client.start({ call_id: "armed" });
          client.closeOnPageHide(session);
          return session.session_id;
        }"""
    )
    await page.goto("about:blank")
    ended = await asyncio.wait_for(ended_event(server, armed), 2)
    assert ended.payload["session"].end_reason is EndReason.CLOSED_BY_REQUEST
    # The disarmed one sent nothing: its beacon would have gone out before the armed one ended.
    assert (await server.runner.launcher.get_session(session_id)).state is SessionState.RUNNING


async def test_when_hidden_closes_as_soon_as_the_page_is_hidden(server: Served, page: Page) -> None:
    await _open(page, server)
    sessions: dict[str, str] = await page.evaluate(
        """async () => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          const client = new AgentplaneClient();
          const onHide = await client.start({ call_id: "when-hidden" });
          const onLeave = await client.start({ call_id: "on-leave-only" });
          client.closeOnPageHide(onHide, { whenHidden: true });
          client.closeOnPageHide(onLeave);
          return { onHide: onHide.session_id, onLeave: onLeave.session_id };
        }"""
    )
    close_url = f"{server.url}/sessions/{sessions['onHide']}/close"
    async with page.expect_response(close_url) as answer:
        # As a switch to another tab does (headless tabs are never hidden by themselves).
        await page.evaluate(
            """() => {
              Object.defineProperty(document, "visibilityState", { value: "hidden" });
              document.dispatchEvent(new Event("visibilitychange"));
            }"""
        )
    assert (await answer.value).status == 200
    ended = await asyncio.wait_for(ended_event(server, sessions["onHide"]), 2)
    assert ended.payload["session"].end_reason is EndReason.CLOSED_BY_REQUEST
    # Without whenHidden a hidden page keeps its agent: only leaving ends it.
    launcher = server.runner.launcher
    assert (await launcher.get_session(sessions["onLeave"])).state is SessionState.RUNNING
    await page.goto("about:blank")
    ended = await asyncio.wait_for(ended_event(server, sessions["onLeave"]), 2)
    assert ended.payload["session"].end_reason is EndReason.CLOSED_BY_REQUEST


async def test_list_sessions_filters_pages_and_orders(server: Served, page: Page) -> None:
    await _open(page, server)
    result: dict[str, Any] = await page.evaluate(
        """async () => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          const urls = [];
          const client = new AgentplaneClient({
            fetch: (url, init) => { urls.push(String(url)); return fetch(url, init); },
          });
          const started = [];
          for (const call_id of ["list-a", "list-a", "list-a", "list-b", "list-b"]) {
            started.push(await client.start({ call_id }));
          }
          await client.close(started[0]);
          const ids = (page) => page.sessions.map((s) => s.session_id);
          urls.length = 0;
          const running = await client.listSessions({
            callId: "list-a", states: ["SESSION_STATE_RUNNING"],
          });
          const closed = await client.listSessions({ endReasons: "END_REASON_CLOSED_BY_REQUEST" });
          const first = await client.listSessions({ pageSize: 2 });
          const second = await client.listSessions({ pageSize: 2, pageToken: first.nextPageToken });
          const oldest = await client.listSessions({ orderBy: "session_started_at", pageSize: 1 });
          const future = await client.listSessions({
            startedAfter: new Date(Date.now() + 3600_000), endedBefore: "2100-01-01T00:00:00Z",
          });
          const filterUrls = urls.splice(0);
          const walked = [];
          for await (const session of client.iterSessions({ pageSize: 2 })) {
            walked.push(session.session_id);
          }
          const walkUrls = urls.splice(0);
          const early = [];
          for await (const session of client.iterSessions({ pageSize: 2 })) {
            early.push(session.session_id);
            break;  // stops fetching
          }
          return {
            started: started.map((s) => s.session_id),
            running: ids(running), runningToken: running.nextPageToken,
            runningStates: running.sessions.map((s) => s.state),
            closed: ids(closed),
            first: ids(first), firstToken: first.nextPageToken, second: ids(second),
            oldest: ids(oldest), future: future,
            filterUrls, walked, walkUrls, early, earlyRequests: urls.length,
          };
        }"""
    )
    started = result["started"]
    newest_first = started[::-1]
    assert result["running"] == [started[2], started[1]]
    assert result["runningToken"] == ""
    assert result["runningStates"] == ["SESSION_STATE_RUNNING"] * 2
    assert result["closed"] == [started[0]]
    assert result["first"] == newest_first[:2] and result["firstToken"]
    assert result["second"] == newest_first[2:4]
    assert result["oldest"] == [started[0]]
    assert result["future"] == {"sessions": [], "nextPageToken": ""}  # protojson omits both
    path = "/calls/list-a/sessions?states=SESSION_STATE_RUNNING"  # baseUrl "": the origin
    assert result["filterUrls"][0] == path
    assert result["filterUrls"][1].endswith("/sessions?end_reasons=END_REASON_CLOSED_BY_REQUEST")
    assert "started_after=" in result["filterUrls"][5]
    assert "ended_before=2100-01-01T00%3A00%3A00Z" in result["filterUrls"][5]
    assert result["walked"] == newest_first
    assert len(result["walkUrls"]) == 3  # 2 + 2 + 1
    assert "page_token=" not in result["walkUrls"][0]
    assert all("page_token=" in url for url in result["walkUrls"][1:])
    assert result["early"] == newest_first[:1] and result["earlyRequests"] == 1


async def test_list_sessions_errors(auth_server: Served, page: Page) -> None:
    await _open(page, auth_server)
    errors: dict[str, Any] = await page.evaluate(
        """async (token) => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          const client = new AgentplaneClient({ token });
          const walk = async (filter) => { for await (const _ of client.iterSessions(filter)); };
          const typeError = (call) => { try { call(); return null; } catch (e) { return e.name; } };
          return {
            unauthenticated: await outcome(() => new AgentplaneClient().listSessions()),
            badToken: await outcome(() => client.listSessions({ pageToken: "not-a-token" })),
            badOrder: await outcome(() => walk({ orderBy: "call_id" })),
            misspelt: typeError(() => client.listSessions({ call_id: "c" })),
            badTime: typeError(() => client.listSessions({ startedAfter: 5 })),
            badDate: typeError(() => client.listSessions({ startedAfter: new Date("x") })),
            ok: await client.listSessions({}),
          };
        }""",
        auth_server.token,
    )
    assert errors["unauthenticated"]["codeName"] == "UNAUTHENTICATED"
    assert errors["unauthenticated"]["httpStatus"] == 401
    for name in ("badToken", "badOrder"):
        error = errors[name]
        assert error["typed"] and error["codeName"] == "INVALID_ARGUMENT", error
        assert error["httpStatus"] == 400
    assert "page_token" in str(errors["badToken"]["details"])
    assert "order_by" in str(errors["badOrder"]["details"])
    assert errors["misspelt"] == errors["badTime"] == errors["badDate"] == "TypeError"
    assert errors["ok"] == {"sessions": [], "nextPageToken": ""}


async def test_iter_sessions_goes_on_past_an_empty_page(server: Served, page: Page) -> None:
    """A page may hold no session while more remain (the server bounds each page's scan)."""
    await _open(page, server)
    walked: list[str] = await page.evaluate(
        """async () => {
          const { AgentplaneClient } = await import("/demo/agentplane.js");
          const pages = [
            { next_page_token: "t1" },  // examined its share, found nothing
            { sessions: [{ session_id: "a", call_id: "c" }], next_page_token: "t2" },
            { sessions: [{ session_id: "b", call_id: "c" }] },
          ];
          const asked = [];
          const fakeFetch = async (url) => {
            asked.push(new URL(url, location.href).searchParams.get("page_token") ?? "");
            return new Response(JSON.stringify(pages.shift()), { status: 200 });
          };
          const found = [];
          const client = new AgentplaneClient({ fetch: fakeFetch });
          for await (const s of client.iterSessions({ endReasons: ["END_REASON_ERROR"] })) {
            found.push(s.session_id);
          }
          return [...found, ...asked];
        }"""
    )
    assert walked == ["a", "b", "", "t1", "t2"]
