"""ListSessions on a real server: gRPC and HTTP, filters, pages, permissions, bad input."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from agentplane.clients.betterproto import (
    CloseRequest,
    EndReason,
    ListSessionsRequest,
    SessionState,
    StartRequest,
)
from agentplane.server import AgentLauncher, ServeOptions
from agentplane.service.auth import PermissionDenied, RequestContext
from agentplane.testing import Served, serving, wait_until

TOKEN = "list-token"


async def create_agent(**metadata: Any) -> dict[str, Any]:
    return dict(metadata)


async def join_call(agent: dict[str, Any], call_type: str, call_id: str, **_: Any) -> None:
    if agent.get("fail"):
        raise RuntimeError("the agent failed")
    await asyncio.Event().wait()


async def get_current_user(ctx: RequestContext) -> str:
    # Over HTTP the gateway forwards the header as grpcgateway-x-user.
    return ctx.metadata.get("x-user") or ctx.metadata.get("grpcgateway-x-user", "anonymous")


async def can_view(ctx: RequestContext, session: Any) -> None:
    # Users see their own sessions; "admin" sees all.
    if ctx.user != "admin" and session is not None and session.created_by != ctx.user:
        raise PermissionDenied("not yours")


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    launcher = AgentLauncher(create_agent, join_call, max_sessions_per_call=10)
    options = ServeOptions(
        api_token=None, get_current_user=get_current_user, can_view_session=can_view
    )
    async with serving(launcher, options) as served:
        yield served


def who(user: str) -> dict[str, str]:
    return {"x-user": user}


async def start(served: Served, call_id: str, user: str, **metadata: Any) -> str:
    from agentplane.clients.betterproto import google

    request = StartRequest(call_id=call_id, metadata=google.protobuf.Struct.from_dict(metadata))
    response = await served.stub.start(request, metadata=who(user), timeout=5)
    return response.session_id


async def test_lists_filters_and_pages_over_grpc(served: Served) -> None:
    ann = [await start(served, "call-1", "ann") for _ in range(3)]
    bob = await start(served, "call-2", "bob")
    failed = await start(served, "call-2", "bob", fail=True)

    async def ended() -> bool:
        return (await served.launcher.get_session(failed)).end_reason is not None

    await wait_until(ended)
    await served.stub.close(CloseRequest(session_id=ann[0]), metadata=who("ann"), timeout=5)

    stub = served.stub
    listed = await stub.list_sessions(ListSessionsRequest(), metadata=who("admin"), timeout=5)
    assert [s.session_id for s in listed.sessions] == [failed, bob, *ann[::-1]]
    assert listed.next_page_token == ""

    # Only what the caller may view.
    mine = await stub.list_sessions(ListSessionsRequest(), metadata=who("ann"), timeout=5)
    assert [s.session_id for s in mine.sessions] == ann[::-1]

    by_call = await stub.list_sessions(
        ListSessionsRequest(call_id="call-2"), metadata=who("admin"), timeout=5
    )
    assert [s.session_id for s in by_call.sessions] == [failed, bob]
    errors = await stub.list_sessions(
        ListSessionsRequest(end_reasons=[EndReason.ERROR]), metadata=who("admin"), timeout=5
    )
    assert [s.session_id for s in errors.sessions] == [failed]
    assert errors.sessions[0].state == SessionState.ENDED
    running = await stub.list_sessions(
        ListSessionsRequest(states=[SessionState.RUNNING], created_by="ann"),
        metadata=who("admin"),
        timeout=5,
    )
    assert [s.session_id for s in running.sessions] == ann[:0:-1]
    last_hour = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    recent = await stub.list_sessions(
        ListSessionsRequest(ended_after=last_hour, end_reasons=[EndReason.ERROR]),
        metadata=who("admin"),
        timeout=5,
    )
    assert [s.session_id for s in recent.sessions] == [failed]

    # Pages of two, oldest first, then the token with other filters is refused.
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.list_sessions(
            ListSessionsRequest(page_size=2, page_token=token, order_by="session_started_at"),
            metadata=who("admin"),
            timeout=5,
        )
        seen += [s.session_id for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
        last_token = token
    assert seen == [*ann, bob, failed]
    with pytest.raises(GRPCError) as refused:
        await stub.list_sessions(
            ListSessionsRequest(page_size=2, page_token=last_token),
            metadata=who("admin"),
            timeout=5,
        )
    assert refused.value.status is Status.INVALID_ARGUMENT
    assert "page_token" in (refused.value.message or "")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (ListSessionsRequest(page_size=-1), "page_size"),
        (ListSessionsRequest(page_token="not a token"), "page_token"),
        (ListSessionsRequest(order_by="call_id"), "order_by"),
        (ListSessionsRequest(call_id="bad call!"), "call_id"),
        (
            ListSessionsRequest(
                started_after=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC),
                started_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
            ),
            "started_before",
        ),
    ],
)
async def test_bad_requests_name_the_field(
    served: Served, request_: ListSessionsRequest, field: str
) -> None:
    with pytest.raises(GRPCError) as error:
        await served.stub.list_sessions(request_, metadata=who("admin"), timeout=5)
    assert error.value.status is Status.INVALID_ARGUMENT
    assert field in (error.value.message or "")


async def test_http_routes_and_query_parameters(served: Served) -> None:
    first = await start(served, "call-h", "ann")
    second = await start(served, "call-h", "ann")
    other = await start(served, "call-o", "ann")
    async with httpx.AsyncClient(base_url=served.http_url, headers=who("ann")) as http:
        response = await http.get("/sessions")
        assert response.status_code == 200
        body = response.json()
        assert [s["session_id"] for s in body["sessions"]] == [other, second, first]
        assert body["sessions"][0]["state"] == "SESSION_STATE_RUNNING"

        response = await http.get("/calls/call-h/sessions", params={"page_size": 1})
        body = response.json()
        assert [s["session_id"] for s in body["sessions"]] == [second]
        response = await http.get(
            "/calls/call-h/sessions",
            params={"page_size": 1, "page_token": body["next_page_token"]},
        )
        assert [s["session_id"] for s in response.json()["sessions"]] == [first]
        assert response.json().get("next_page_token", "") == ""

        response = await http.get(
            "/sessions",
            params=[
                ("states", "SESSION_STATE_RUNNING"),
                ("states", "SESSION_STATE_ENDED"),
                ("started_after", "2020-01-01T00:00:00Z"),
                ("order_by", "session_started_at"),
            ],
        )
        assert [s["session_id"] for s in response.json()["sessions"]] == [first, second, other]

        response = await http.get("/sessions", params={"page_size": "-3"})
        assert response.status_code == 400
        assert "page_size" in response.json()["message"]
        response = await http.get("/sessions", params={"states": "SESSION_STATE_NOPE"})
        assert response.status_code == 400
        assert "states" in response.json()["message"]
