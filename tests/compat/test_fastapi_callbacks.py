"""The Vision Agents docs' permission callbacks, unchanged but for imports, over gRPC and HTTP.

They are FastAPI dependencies (``Header(...)``, ``Depends(...)``,
``HTTPException``); agentplane resolves them with FastAPI's own machinery from
the call's metadata, ids and session, in SessionAPI, so the embedded gateway,
the standalone gateway and gRPC give the same answers.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import grpc
import pytest
from fastapi import Depends, Header, HTTPException, Request

from agentplane.clients.grpcio import session_service_pb2 as pb
from agentplane.clients.grpcio import session_service_pb2_grpc as pb_grpc
from agentplane.server import RequestContext, ServeOptions, SessionRecord, get_session
from tests.support import GatewayAgents, serving

from .support import Answer, connect

# ------------------------------------------------- the docs' API-key example


async def verify_api_key(x_api_key: str = Header(...)):  # type: ignore[no-untyped-def]
    if x_api_key != "secret-key":
        raise HTTPException(status_code=401, detail="Invalid API key")


API_KEY = ServeOptions(
    api_token=None,
    gc_freeze=False,
    can_start_session=verify_api_key,
    can_close_session=verify_api_key,
    can_view_session=verify_api_key,
    can_view_metrics=verify_api_key,
)
RIGHT = {"x-api-key": "secret-key"}
WRONG = {"x-api-key": "guess"}


async def test_the_api_key_example_guards_every_rpc(agents: GatewayAgents, transport: str) -> None:
    async with connect(transport, agents.launcher(), API_KEY) as client:
        refused = await client.start("c", WRONG)
        assert (refused.code, refused.message) == ("UNAUTHENTICATED", "Invalid API key")
        missing = await client.start("c", {})
        assert missing.code == "INVALID_ARGUMENT"
        assert "header.x-api-key: Field required" in missing.message
        assert client.launcher.stats().started == 0

        sid = (await client.start("c", RIGHT)).session_id
        assert client.launcher.stats().started == 1
        assert (await client.get(sid, RIGHT)).code == "OK"
        assert (await client.metrics(sid, RIGHT)).code == "OK"
        for call in (client.get, client.metrics, client.close):
            answer = await call(sid, WRONG)
            assert (answer.code, answer.message) == ("UNAUTHENTICATED", "Invalid API key")
        assert (await client.launcher.get_session(sid)).state.name == "RUNNING"
        closed = await client.close(sid, RIGHT)
        assert closed.code == "OK" and closed.body["session"]["state"] == "SESSION_STATE_ENDED"


# --------------------------------------------- the docs' user-based example


@dataclass
class User:
    id: str
    name: str

    def has_permission(self, permission: str) -> bool:
        return self.name != "mallory"


TOKENS = {f"token-{name}": User(id=f"u-{name}", name=name) for name in ("alice", "bob", "mallory")}
USER_CALLS: list[str] = []


async def validate_token_and_get_user(authorization: str) -> User:
    user = TOKENS.get(authorization)
    if user is None:
        raise HTTPException(status_code=401, detail="Unknown token")
    return user


async def get_current_user(authorization: str = Header(None)) -> User:
    """Extract and validate the current user from the request."""
    USER_CALLS.append(authorization)
    if not authorization:
        raise HTTPException(status_code=401, detail="Authorization required")
    user = await validate_token_and_get_user(authorization)
    return user


async def can_start_session(user: User = Depends(get_current_user)) -> bool:
    if not user.has_permission("start_session"):
        raise HTTPException(status_code=403, detail="Permission denied")
    return True


async def can_view_session(
    user: User = Depends(get_current_user),
    session: SessionRecord | None = Depends(get_session),
) -> bool:
    if session and session.created_by != user.id:
        raise HTTPException(status_code=403, detail="Not your session")
    return True


async def can_close_session(
    user: User = Depends(get_current_user),
    session: SessionRecord | None = Depends(get_session),
):  # type: ignore[no-untyped-def]
    if session and session.created_by != user.id:
        raise HTTPException(status_code=403, detail="Cannot close another user's session")


METRICS_READS: dict[str, int] = {}


async def can_view_metrics(
    user: User = Depends(get_current_user),
    session: SessionRecord | None = Depends(get_session),
) -> bool:
    """One metrics read per user, then 429 (a per-user rate limit)."""
    await can_view_session(user, session)
    METRICS_READS[user.id] = METRICS_READS.get(user.id, 0) + 1
    if METRICS_READS[user.id] > 1:
        raise HTTPException(429, "Too many metrics requests", headers={"Retry-After": "7"})
    return True


@pytest.fixture
def users() -> Iterator[ServeOptions]:
    USER_CALLS.clear()
    METRICS_READS.clear()
    yield ServeOptions(
        api_token=None,
        gc_freeze=False,
        get_current_user=get_current_user,
        can_start_session=can_start_session,
        can_view_session=can_view_session,
        can_close_session=can_close_session,
        can_view_metrics=can_view_metrics,
    )


def as_user(name: str) -> dict[str, str]:
    return {"authorization": f"token-{name}"}


async def test_the_user_example_decides_by_user_and_session(
    agents: GatewayAgents, transport: str, users: ServeOptions
) -> None:
    async with connect(transport, agents.launcher(), users) as client:
        anonymous = await client.start("c", {})
        assert (anonymous.code, anonymous.message) == ("UNAUTHENTICATED", "Authorization required")
        unknown = await client.start("c", {"authorization": "token-eve"})
        assert (unknown.code, unknown.message) == ("UNAUTHENTICATED", "Unknown token")
        mallory = await client.start("c", as_user("mallory"))
        assert (mallory.code, mallory.message) == ("PERMISSION_DENIED", "Permission denied")
        assert client.launcher.stats().started == 0

        started = await client.start("c", as_user("alice"))
        assert started.body.get("close_token")  # get_current_user turns auth on
        sid = started.session_id
        # What get_current_user answered is the session's created_by: its .id.
        assert (await client.launcher.get_session(sid)).created_by == "u-alice"
        USER_CALLS.clear()
        got = await client.get(sid, as_user("alice"))
        assert got.code == "OK" and got.body["session"]["created_by"] == "u-alice"
        # Resolved once per call, though can_view_session depends on it too.
        assert USER_CALLS == ["token-alice"]

        for call in (client.get, client.metrics):
            answer = await call(sid, as_user("bob"))
            assert (answer.code, answer.message) == ("PERMISSION_DENIED", "Not your session")
        bob_closes = await client.close(sid, as_user("bob"))
        assert (bob_closes.code, bob_closes.message) == (
            "PERMISSION_DENIED",
            "Cannot close another user's session",
        )
        assert (await client.launcher.get_session(sid)).state.name == "RUNNING"

        assert (await client.metrics(sid, as_user("alice"))).code == "OK"
        limited = await client.metrics(sid, as_user("alice"))
        assert (limited.code, limited.message) == (
            "RESOURCE_EXHAUSTED",
            "Too many metrics requests",
        )
        assert limited.retry_after == 7.0

        assert (await client.close(sid, as_user("alice"))).code == "OK"
        assert client.launcher.stats().in_flight == 0


# ------------------------------------------------ failures and their status


async def test_an_unexpected_error_in_a_callback_is_internal_and_logged_once(
    agents: GatewayAgents, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "db password is hunter2"

    async def broken(x_api_key: Annotated[str, Header()] = "") -> None:
        raise RuntimeError(secret)

    options = ServeOptions(api_token=None, gc_freeze=False, can_start_session=broken)
    async with connect(transport, agents.launcher(), options) as client:
        caplog.clear()
        answer = await client.start("c", RIGHT)
        assert (answer.code, answer.message) == ("INTERNAL", "internal error")
        logged = [r for r in caplog.records if r.exc_info is not None]
        assert len(logged) == 1, [r.getMessage() for r in logged]
        assert logged[0].name == "agentplane.service" and logged[0].levelno == logging.ERROR
        assert logged[0].exc_info is not None and secret in str(logged[0].exc_info[1])
        assert client.launcher.stats().started == 0


# ------------------------------------- path fields, sync callbacks, yield


async def test_callbacks_get_the_call_ids_run_sync_and_close_their_yield_dependencies(
    agents: GatewayAgents, transport: str
) -> None:
    opened: list[str] = []
    closed: list[str] = []

    def audit(request: Request) -> Iterator[str]:
        opened.append(request.url.path)
        try:
            yield "audit"
        finally:
            closed.append(request.url.path)

    def can_start_session(call_id: str, _: str = Depends(audit)) -> None:
        # Vision Agents 0.4+ passes call_id from the path; a sync def runs in a thread.
        if call_id.startswith("blocked-"):
            raise HTTPException(403, f"call {call_id} is blocked")

    def can_view_session(
        session_id: str, call_id: str, session: SessionRecord | None = Depends(get_session)
    ) -> bool:
        assert session is not None
        return (
            (session_id, call_id)
            == (session.session_id, session.call_id)
            == (
                session.session_id,
                "open-1",
            )
        )

    options = ServeOptions(
        api_token=None,
        gc_freeze=False,
        can_start_session=can_start_session,
        can_view_session=can_view_session,
    )
    async with connect(transport, agents.launcher(), options) as client:
        blocked = await client.start("blocked-1", {})
        assert (blocked.code, blocked.message) == ("PERMISSION_DENIED", "call blocked-1 is blocked")
        sid = (await client.start("open-1", {})).session_id
        assert opened == closed == ["/agentplane.v1.SessionService/Start"] * 2
        assert (await client.get(sid, {})).code == "OK"
        other = (await client.start("open-2", {})).session_id
        # A callback returning False denies, as a native hook's False does.
        denied = await client.get(other, {})
        assert (denied.code, denied.message) == (
            "PERMISSION_DENIED",
            "not allowed to view this session",
        )


# ------------------------------- Vision Agents' own dependencies, if imported


@pytest.fixture
def vision_agents_dependencies(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in for ``vision_agents.core.runner.http.dependencies`` (0.3), as imported by a user.

    Its get_session needs the reference's app state: called, it would fail.
    """
    module = types.ModuleType("vision_agents.core.runner.http.dependencies")

    def get_launcher(request: Request) -> Any:
        return request.app.state.launcher

    def get_session(session_id: str, launcher: Any = Depends(get_launcher)) -> Any:
        return launcher.get_session(session_id=session_id)

    def get_current_user() -> Any:
        return None

    module.get_launcher = get_launcher  # type: ignore[attr-defined]
    module.get_session = get_session  # type: ignore[attr-defined]
    module.get_current_user = get_current_user  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


async def test_vision_agents_get_session_and_get_current_user_are_answered(
    agents: GatewayAgents, transport: str, vision_agents_dependencies: types.ModuleType
) -> None:
    theirs = vision_agents_dependencies
    seen: list[tuple[Any, Any]] = []

    async def can_view_session(
        user: Any = Depends(theirs.get_current_user),
        session: Any = Depends(theirs.get_session),
    ) -> None:
        seen.append((user, session))

    options = ServeOptions(
        api_token=None,
        gc_freeze=False,
        get_current_user=get_current_user,
        can_view_session=can_view_session,
    )
    async with connect(transport, agents.launcher(), options) as client:
        sid = (await client.start("c", as_user("bob"))).session_id
        assert (await client.get(sid, as_user("bob"))).code == "OK"
        ((user, session),) = seen
        assert user == User(id="u-bob", name="bob")
        assert isinstance(session, SessionRecord) and session.session_id == sid


# ------------------------------------------------- both kinds side by side


async def test_native_and_fastapi_callbacks_mix(agents: GatewayAgents, transport: str) -> None:
    async def native_user(ctx: RequestContext) -> str:
        return ctx.metadata.get("x-user", "")  # gRPC metadata, or Grpc-Metadata-X-User

    async def can_view_session(
        user: str = Depends(native_user),
        session: SessionRecord | None = Depends(get_session),
        x_user: str | None = Header(None),
    ) -> None:
        # The user comes from the native hook's answer, not a second call.
        if session is None or session.created_by != user:
            raise HTTPException(403, f"{user} may not view this")

    async def can_close_session(ctx: RequestContext, session: SessionRecord | None) -> None:
        if session is not None and session.created_by != ctx.user:
            raise PermissionError  # unexpected: INTERNAL

    options = ServeOptions(
        api_token=None,
        gc_freeze=False,
        get_current_user=native_user,
        can_view_session=can_view_session,
        can_close_session=can_close_session,
    )
    http = transport != "grpc"

    def user(name: str) -> dict[str, str]:
        return {"grpc-metadata-x-user" if http else "x-user": name}

    async with connect(transport, agents.launcher(), options) as client:
        sid = (await client.start("c", user("ann"))).session_id
        assert (await client.launcher.get_session(sid)).created_by == "ann"
        assert (await client.get(sid, user("ann"))).code == "OK"
        refused: Answer = await client.get(sid, user("ben"))
        assert (refused.code, refused.message) == ("PERMISSION_DENIED", "ben may not view this")
        assert (await client.close(sid, user("ann"))).code == "OK"


async def test_the_feed_of_all_sessions_shows_a_user_only_their_own(
    agents: GatewayAgents, users: ServeOptions
) -> None:
    # can_view_session's HTTPException(403) filters the feed, as a native PermissionDenied does.
    async with (
        serving(agents.launcher(), users, http=False) as served,
        grpc.aio.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel,
    ):
        stub = pb_grpc.SessionServiceStub(channel)
        ids = {}
        for name in ("alice", "bob"):
            reply = await stub.Start(
                pb.StartRequest(call_id=f"{name}-call"), metadata=tuple(as_user(name).items())
            )
            ids[name] = reply.session_id
        for name in ("alice", "bob"):
            await stub.Close(
                pb.CloseRequest(session_id=ids[name]), metadata=tuple(as_user(name).items())
            )
        feed = stub.StreamEvents(
            pb.StreamEventsRequest(after_cursor=0),
            metadata=tuple(as_user("bob").items()),
            timeout=10,
        )
        seen = []
        async for event in feed:
            seen.append((event.session_id, event.WhichOneof("event")))
            if seen[-1] == (ids["bob"], "ended"):
                break
        feed.cancel()
    assert {sid for sid, _ in seen} == {ids["bob"]}
    assert seen[0] == (ids["bob"], "started")
