"""Headers become metadata as grpc-gateway forwards them; auth is the server's, once."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from agentplane.server import PermissionDenied, RequestContext, ServeOptions, Unauthenticated

from .support import Agents, Deployment

TOKEN = "s3cret-token"


async def test_missing_or_bad_credentials_are_401_with_www_authenticate(
    agents: Agents, deploy_kind: Callable[..., AbstractAsyncContextManager[Deployment]]
) -> None:
    async with deploy_kind(agents.launcher(), ServeOptions(api_token=TOKEN)) as gw:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic eA=="}):
            response = await gw.http.post("/sessions", json={"call_id": "c"}, headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["code"] == 16
        ok = await gw.http.post(
            "/sessions", json={"call_id": "c"}, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert ok.status_code == 201
        assert ok.json()["close_token"]  # auth on: the beacon close needs it
        assert gw.launcher.stats().started == 1


async def test_grpc_metadata_and_other_headers_reach_the_hooks(
    agents: Agents, deploy_kind: Callable[..., AbstractAsyncContextManager[Deployment]]
) -> None:
    seen: list[RequestContext] = []

    async def get_current_user(ctx: RequestContext) -> str:
        seen.append(ctx)
        if ctx.metadata.get("grpcgateway-x-api-key") != "key-1":
            raise Unauthenticated("X-API-Key required")
        return ctx.metadata.get("x-user", "")

    async def can_view_session(ctx: RequestContext, session: object) -> None:
        if ctx.user != "alice":
            raise PermissionDenied("only alice may look")

    options = ServeOptions(
        api_token=None, get_current_user=get_current_user, can_view_session=can_view_session
    )
    async with deploy_kind(agents.launcher(), options) as gw:
        headers = {"x-api-key": "key-1", "grpc-metadata-x-user": "alice"}
        response = await gw.http.post("/sessions", json={"call_id": "c"}, headers=headers)
        assert response.status_code == 201, response.text
        sid = response.json()["session_id"]
        assert (await gw.launcher.get_session(sid)).created_by == "alice"
        ctx = seen[-1]
        assert ctx.metadata["x-user"] == "alice"
        assert "grpc-metadata-x-user" not in ctx.metadata
        assert ctx.metadata["x-forwarded-for"].endswith("127.0.0.1")
        assert ctx.metadata["x-forwarded-host"].startswith("127.0.0.1:")
        assert "grpcgateway-content-length" not in ctx.metadata
        assert ctx.method == "/agentplane.v1.SessionService/Start"

        as_bob = {"x-api-key": "key-1", "grpc-metadata-x-user": "bob"}
        denied = await gw.http.get(f"/sessions/{sid}", headers=as_bob)
        assert denied.status_code == 403
        assert denied.json()["message"] == "only alice may look"
        assert (await gw.http.get(f"/sessions/{sid}")).status_code == 401
        allowed = await gw.http.get(f"/sessions/{sid}", headers=headers)
        assert allowed.status_code == 200 and allowed.json()["created_by"] == "alice"


async def test_reserved_metadata_cannot_be_smuggled(
    agents: Agents, deploy_kind: Callable[..., AbstractAsyncContextManager[Deployment]]
) -> None:
    seen: list[RequestContext] = []

    async def get_current_user(ctx: RequestContext) -> str:
        seen.append(ctx)
        return "u"

    options = ServeOptions(api_token=None, get_current_user=get_current_user)
    async with deploy_kind(agents.launcher(), options) as gw:
        headers = [
            (b"grpc-metadata-grpc-timeout", b"1n"),
            (b"grpc-metadata-te", b"x"),
            (b"x-latin", "\u00e9t\u00e9".encode("latin-1")),  # not ASCII: dropped
        ]
        response = await gw.http.post("/sessions", json={"call_id": "c"}, headers=headers)
        assert response.status_code == 201, response.text
        assert not {"grpc-timeout", "te", "grpcgateway-x-latin"} & set(seen[-1].metadata)
