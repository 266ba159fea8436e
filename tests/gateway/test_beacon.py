"""``POST /sessions/{id}/close`` takes every body ``navigator.sendBeacon`` sends.

A beacon carries no Authorization header: with auth on, the session's close
token (from Start) in the body authorizes that one close, and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from agentplane.server import ServeOptions

from .support import Agents, Deployment

TOKEN = "api-token-1"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def beacon(kind: str, close_token: str | None) -> dict[str, Any]:
    """httpx keyword arguments for the request a browser's beacon makes."""
    fields = {"close_token": close_token} if close_token is not None else {}
    text = json.dumps(fields)
    if kind == "empty":
        return {"content": b""}
    if kind == "string":  # sendBeacon(url, JSON.stringify(...))
        return {"content": text, "headers": {"content-type": "text/plain;charset=UTF-8"}}
    if kind == "json-blob":  # new Blob([...], {type: "application/json"})
        return {"content": text, "headers": {"content-type": "application/json"}}
    if kind == "typeless-blob":  # new Blob([...]): no Content-Type at all
        return {"content": text.encode()}
    if kind == "urlsearchparams":
        return {"data": fields}
    if kind == "formdata":  # multipart/form-data with a boundary
        return {"files": {k: (None, v) for k, v in fields.items()} or {"x": (None, "")}}
    raise AssertionError(kind)


KINDS_WITH_BODY = ["string", "json-blob", "typeless-blob", "urlsearchparams", "formdata"]


@pytest.mark.parametrize("body", ["empty", *KINDS_WITH_BODY])
async def test_beacon_closes_without_auth(gw: Deployment, body: str) -> None:
    sid = (await gw.http.post("/sessions", json={"call_id": "c"})).json()["session_id"]
    response = await gw.http.post(f"/sessions/{sid}/close", **beacon(body, None))
    assert response.status_code == 200, response.text
    assert response.json()["end_reason"] == "END_REASON_CLOSED_BY_REQUEST"
    assert (await gw.launcher.get_session(sid)).state.name == "ENDED"


@pytest.mark.parametrize("body", KINDS_WITH_BODY)
async def test_beacon_with_the_close_token_closes_when_auth_is_on(
    agents: Agents,
    deploy_kind: Callable[..., AbstractAsyncContextManager[Deployment]],
    body: str,
) -> None:
    async with deploy_kind(agents.launcher(), ServeOptions(api_token=TOKEN)) as gw:
        started = (await gw.http.post("/sessions", json={"call_id": "c"}, headers=AUTH)).json()
        sid, token = started["session_id"], started["close_token"]
        response = await gw.http.post(f"/sessions/{sid}/close", **beacon(body, token))
        assert response.status_code == 200, response.text
        assert (await gw.launcher.get_session(sid)).state.name == "ENDED"


async def test_beacons_without_or_with_a_foreign_token_are_refused(
    agents: Agents, deploy_kind: Callable[..., AbstractAsyncContextManager[Deployment]]
) -> None:
    async with deploy_kind(agents.launcher(), ServeOptions(api_token=TOKEN)) as gw:
        mine = (await gw.http.post("/sessions", json={"call_id": "c"}, headers=AUTH)).json()
        theirs = (await gw.http.post("/sessions", json={"call_id": "d"}, headers=AUTH)).json()
        target = theirs["session_id"]
        no_token = await gw.http.post(f"/sessions/{target}/close", **beacon("empty", None))
        assert no_token.status_code == 401
        for forged in (mine["close_token"], "forged", theirs["close_token"] + "x"):
            response = await gw.http.post(f"/sessions/{target}/close", **beacon("string", forged))
            assert response.status_code == 403, forged
            assert response.json()["code"] == 7
        # A token also cannot close its session on another call's route.
        scoped = await gw.http.post(
            f"/calls/c/sessions/{target}/close", **beacon("string", theirs["close_token"])
        )
        assert scoped.status_code == 404
        assert (await gw.launcher.get_session(target)).state.name == "RUNNING"
        assert (await gw.launcher.get_session(mine["session_id"])).state.name == "RUNNING"
        # DELETE with the token in the query string works too (no body on DELETE).
        deleted = await gw.http.delete(
            f"/sessions/{target}", params={"close_token": theirs["close_token"]}
        )
        assert deleted.status_code == 200


async def test_json_sent_as_a_form_by_curl_is_refused_on_start(gw: Deployment) -> None:
    # `curl -d '{"call_id": ...}'` without -H sends application/x-www-form-urlencoded.
    # Issue 12: Start takes JSON only (a form is what another origin may post unasked).
    response = await gw.http.post(
        "/sessions",
        content=b'{"call_id": "curl-call"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["message"]
    assert gw.launcher.stats().started == 0
