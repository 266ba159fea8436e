"""Bad input gets a 4xx naming the problem, and never touches a session."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from agentplane.server import ServeOptions

from .support import Agents, Deployment

BAD_STARTS: list[tuple[str, dict[str, str], bytes, int, str]] = [
    ("malformed JSON", {"content-type": "application/json"}, b'{"call_id": ', 400, "malformed JSON"),
    ("not an object", {"content-type": "application/json"}, b'["call_id"]', 400, "JSON object"),
    ("wrong type", {"content-type": "application/json"}, b'{"call_id": 5}', 400, "call_id"),
    ("bad metadata", {"content-type": "application/json"}, b'{"call_id": "c", "metadata": 3}', 400, "metadata"),
    ("bad call id", {"content-type": "application/json"}, b'{"call_id": "no spaces"}', 400, "call_id"),
    ("missing call id", {"content-type": "application/json"}, b"{}", 400, "call_id"),
    ("xml", {"content-type": "application/xml"}, b"<call_id>c</call_id>", 415, "Content-Type"),
    ("bad charset", {"content-type": "application/json;charset=klingon"}, b"{}", 415, "charset"),
    ("not utf-8", {"content-type": "application/json"}, b'{"call_id": "\xff"}', 400, "utf-8"),
    ("deep nesting", {"content-type": "application/json"}, b"[" * 100_000, 400, "nested too deeply"),
    ("deep metadata", {"content-type": "application/json"}, b'{"call_id": "c", "metadata": ' + b'{"a": ' * 200 + b"1" + b"}" * 201, 400, "too deep"),
    # Issue 12: Start takes JSON only, so another origin cannot send it without a preflight.
    ("form", {"content-type": "application/x-www-form-urlencoded"}, b"call_id=c", 415, "application/json"),
    ("text", {"content-type": "text/plain;charset=UTF-8"}, b'{"call_id": "c"}', 415, "application/json"),
    ("typeless", {}, b'{"call_id": "c"}', 415, "without Content-Type"),
    ("multipart", {"content-type": "multipart/form-data; boundary=b"}, b"--b\r\n\r\n--b--", 415, "application/json"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "body", "status", "named"),
    [case[1:] for case in BAD_STARTS],
    ids=[case[0] for case in BAD_STARTS],
)
async def test_bad_start_bodies_get_a_4xx_naming_the_problem(
    gw: Deployment, headers: dict[str, str], body: bytes, status: int, named: str
) -> None:
    response = await gw.http.post("/sessions", content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] == 3  # INVALID_ARGUMENT
    assert named.lower() in error["message"].lower(), error["message"]
    assert gw.launcher.stats().started == 0


async def test_an_oversized_body_is_413_without_reading_it_all(gw: Deployment) -> None:
    big = b'{"call_id": "c", "metadata": {"x": "' + b"a" * (2 << 20) + b'"}}'
    response = await gw.http.post(
        "/sessions", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "exceeds" in response.json()["message"]

    async def chunks() -> Any:  # no Content-Length: the limit applies while reading
        for _ in range(40):
            yield b"a" * 65536

    response = await gw.http.post("/sessions", content=chunks())
    assert response.status_code == 413
    assert gw.launcher.stats().started == 0


async def test_bad_query_parameters_are_400(gw: Deployment) -> None:
    response = await gw.http.get("/events", params={"after_cursor": "soon"})
    assert response.status_code == 400
    assert "after_cursor" in response.json()["message"]
    response = await gw.http.get("/events", params={"after_cursor": ["1", "2"]})
    assert response.status_code == 400
    assert "2 times" in response.json()["message"]


async def test_limits_answer_429_with_retry_after(
    agents: Agents, deploy_kind: Callable[..., AbstractAsyncContextManager[Deployment]]
) -> None:
    async with deploy_kind(agents.launcher(permits_per_minute=1)) as gw:
        assert (await gw.http.post("/sessions", json={"call_id": "a"})).status_code == 201
        response = await gw.http.post("/sessions", json={"call_id": "b"})
        assert response.status_code == 429
        assert 1 <= int(response.headers["retry-after"]) <= 60
        body = response.json()
        assert body["code"] == 8
        types = [d["@type"].rsplit("/", 1)[1] for d in body["details"]]
        assert types == ["google.rpc.ErrorInfo", "google.rpc.RetryInfo"]
        assert body["details"][0]["reason"] == "RATE_LIMITED"
        assert gw.launcher.stats().in_flight == 1


# Every 429 a Start can get from a limit: (launcher options, the Starts' call ids,
# the refused one's reason, the Retry-After bounds in whole seconds).
LIMITS_429 = [
    ({"max_concurrent_sessions": 1}, ["a", "b"], "MAX_CONCURRENT_SESSIONS", (5, 5)),
    ({"max_sessions_per_call": 1}, ["a", "a"], "MAX_SESSIONS_PER_CALL", (5, 5)),
    ({"max_sessions_per_node": 1}, ["a", "b"], "MAX_SESSIONS_PER_NODE", (5, 5)),
    ({"permits_per_minute": 1}, ["a", "b"], "RATE_LIMITED", (50, 60)),
    # A hint under a second is still a whole second in Retry-After.
    (
        {"max_concurrent_sessions": 1, "limit_retry_after": 0.2},
        ["a", "b"],
        "MAX_CONCURRENT_SESSIONS",
        (1, 1),
    ),
]


@pytest.mark.parametrize(("options", "calls", "reason", "bounds"), LIMITS_429)
async def test_every_limit_answers_429_with_retry_after(
    options: dict[str, Any],
    calls: list[str],
    reason: str,
    bounds: tuple[int, int],
    agents: Agents,
    deploy_kind: Callable[..., AbstractAsyncContextManager[Deployment]],
) -> None:
    async with deploy_kind(agents.launcher(**options)) as gw:
        assert (await gw.http.post("/sessions", json={"call_id": calls[0]})).status_code == 201
        response = await gw.http.post("/sessions", json={"call_id": calls[1]})
        assert response.status_code == 429
        assert response.json()["details"][0]["reason"] == reason
        assert bounds[0] <= int(response.headers["retry-after"]) <= bounds[1]


async def test_a_limit_without_a_hint_has_no_retry_after(
    agents: Agents, deploy_kind: Callable[..., AbstractAsyncContextManager[Deployment]]
) -> None:
    launcher = agents.launcher(max_concurrent_sessions=1, limit_retry_after=None)
    async with deploy_kind(launcher) as gw:
        assert (await gw.http.post("/sessions", json={"call_id": "a"})).status_code == 201
        response = await gw.http.post("/sessions", json={"call_id": "b"})
        assert response.status_code == 429
        assert "retry-after" not in response.headers
        types = [d["@type"].rsplit("/", 1)[1] for d in response.json()["details"]]
        assert types == ["google.rpc.ErrorInfo"]


async def test_draining_answers_503(
    agents: Agents, deploy_kind: Callable[..., AbstractAsyncContextManager[Deployment]]
) -> None:
    async with deploy_kind(agents.launcher(drain_timeout=30)) as gw:
        started = await gw.http.post("/sessions", json={"call_id": "a"})
        drain = asyncio.create_task(gw.launcher.drain())
        try:
            await asyncio.sleep(0)
            response = await gw.http.post("/sessions", json={"call_id": "b"})
            assert response.status_code == 503
            assert response.json()["details"][0]["reason"] == "DRAINING"
            # Running sessions stay readable while draining.
            sid = started.json()["session_id"]
            assert (await gw.http.get(f"/sessions/{sid}")).status_code == 200
        finally:
            await gw.launcher.shutdown()
            await drain


@pytest.mark.parametrize("expose", [False, True])
async def test_agent_failure_is_500_with_the_reason(
    expose: bool,
    deploy_kind: Callable[..., AbstractAsyncContextManager[Deployment]],
) -> None:
    from agentplane.server import AgentLauncher

    async def broken(**_: Any) -> Any:
        raise RuntimeError("no GPU at https://user:hunter2@gpu.example")

    async def join(*_: Any, **__: Any) -> None:
        pass

    options = ServeOptions(api_token=None, expose_error_details=expose)
    async with deploy_kind(AgentLauncher(broken, join), options) as gw:
        response = await gw.http.post("/sessions", json={"call_id": "a"})
        assert response.status_code == 500
        body = response.json()
        assert body["details"][0]["reason"] == "AGENT_START_FAILED"
        assert "RuntimeError" in body["message"]
        # The exception's text only when the operator opted in.
        assert ("hunter2" in body["message"]) is expose


async def test_metadata_create_agent_does_not_take_is_400_not_500(
    deploy_kind: Callable[..., AbstractAsyncContextManager[Deployment]],
) -> None:
    # Issue 13: a Vision Agents create_agent takes no keywords; Start's metadata is refused
    # naming the keys, before any agent is created, never a 500.
    from agentplane.server import AgentLauncher

    created: list[int] = []

    async def create_agent() -> Any:
        created.append(1)
        return object()

    async def join(agent: Any, call_type: str, call_id: str, **kwargs: Any) -> None:
        await asyncio.Event().wait()

    async with deploy_kind(AgentLauncher(create_agent, join), ServeOptions(api_token=None)) as gw:
        response = await gw.http.post(
            "/sessions", json={"call_id": "a", "metadata": {"voice": "x", "lang": "en"}}
        )
        assert response.status_code == 400, response.text
        error = response.json()
        assert error["code"] == 3
        assert "create_agent takes no keyword argument 'voice'" in error["message"]
        (bad_request,) = [d for d in error["details"] if "field_violations" in d]
        violations = bad_request["field_violations"]
        assert sorted(v["field"] for v in violations) == ["metadata.lang", "metadata.voice"]
        assert created == []
        ok = await gw.http.post("/sessions", json={"call_id": "a"})
        assert ok.status_code == 201, ok.text
        assert created == [1]
