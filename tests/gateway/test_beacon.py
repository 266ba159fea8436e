"""``POST /sessions/{id}/close`` takes every body ``navigator.sendBeacon`` sends.

A beacon carries no Authorization header: with auth on, the session's close
token (from Start) in the body authorizes that one close, and nothing else.
A beacon never sees its answer (issue 13): a body the close route cannot read
(``sendBeacon(url, "bye")``, a Blob of garbage, a JSON string) closes as an
empty one would; only the size limit still refuses (413). Every other route
still refuses a bad body.
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


# What a page may put in a beacon that is no request at all (issue 13).
UNREADABLE: dict[str, dict[str, Any]] = {
    "text bye": {"content": b"bye", "headers": {"content-type": "text/plain;charset=UTF-8"}},
    "typeless garbage": {"content": b"\x00\xffnot json{"},
    "json string": {"content": b'"bye"', "headers": {"content-type": "application/json"}},
    "json array": {"content": b"[1, 2]", "headers": {"content-type": "text/plain"}},
    "json number": {"content": b"42"},
    "json null": {"content": b"null", "headers": {"content-type": "application/json"}},
    "bad field type": {"content": b'{"session_id": 5}', "headers": {"content-type": "text/plain"}},
    "not utf-8": {"content": b'{"a": "\xff"}', "headers": {"content-type": "text/plain"}},
    "unknown charset": {"content": b"{}", "headers": {"content-type": "text/plain; charset=x-no"}},
    "png blob": {"content": b"\x89PNG\r\n\x1a\n", "headers": {"content-type": "image/png"}},
    "broken form": {
        "content": b"a=%zz&&=",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
    },
    "broken multipart": {
        "content": b"--b\r\nno end",
        "headers": {"content-type": "multipart/form-data; boundary=b"},
    },
    "multipart without boundary": {
        "content": b"x",
        "headers": {"content-type": "multipart/form-data"},
    },
    "almost 1 MiB of garbage": {"content": b"\x07" * ((1 << 20) - 1)},
}


@pytest.mark.parametrize("body", UNREADABLE, ids=list(UNREADABLE))
async def test_an_unreadable_beacon_still_closes(gw: Deployment, body: str) -> None:
    sid = (await gw.http.post("/sessions", json={"call_id": "c"})).json()["session_id"]
    response = await gw.http.post(f"/sessions/{sid}/close", **UNREADABLE[body])
    assert response.status_code == 200, response.text
    assert response.json()["end_reason"] == "END_REASON_CLOSED_BY_REQUEST"
    assert (await gw.launcher.get_session(sid)).state.name == "ENDED"
    # The call-scoped close route is the same RPC: lenient too.
    other = (await gw.http.post("/sessions", json={"call_id": "c"})).json()["session_id"]
    scoped = await gw.http.post(f"/calls/c/sessions/{other}/close", **UNREADABLE[body])
    assert scoped.status_code == 200, scoped.text
    assert (await gw.launcher.get_session(other)).state.name == "ENDED"


def _with_bad_field(token: str) -> str:
    return json.dumps({"session_id": {"not": "a string"}, "close_token": token, "metadata": 3})


# A beacon's token is read from what can be read of its body; the rest is left out.
PARTLY_BAD: dict[str, Callable[[str], dict[str, Any]]] = {
    "json text": lambda t: {
        "content": json.dumps({"close_token": t}),
        "headers": {"content-type": "text/plain"},
    },
    "json with a bad field": lambda t: {
        "content": _with_bad_field(t),
        "headers": {"content-type": "text/plain"},
    },
    "typeless with a bad field": lambda t: {"content": _with_bad_field(t)},
    "typed blob": lambda t: {"content": _with_bad_field(t), "headers": {"content-type": "x/y"}},
    "form with a bad field": lambda t: {"data": {"close_token": t, "session_id": ["a", "b"]}},
}


@pytest.mark.parametrize("body", PARTLY_BAD, ids=list(PARTLY_BAD))
async def test_the_close_token_is_read_from_a_partly_bad_body(
    agents: Agents,
    deploy_kind: Callable[..., AbstractAsyncContextManager[Deployment]],
    body: str,
) -> None:
    async with deploy_kind(agents.launcher(), ServeOptions(api_token=TOKEN)) as gw:
        started = (await gw.http.post("/sessions", json={"call_id": "c"}, headers=AUTH)).json()
        sid, token = started["session_id"], started["close_token"]
        # Without the token the same shape of body is refused: the token did it.
        refused = await gw.http.post(f"/sessions/{sid}/close", **PARTLY_BAD[body]("forged"))
        assert refused.status_code == 403, refused.text
        response = await gw.http.post(f"/sessions/{sid}/close", **PARTLY_BAD[body](token))
        assert response.status_code == 200, response.text
        assert (await gw.launcher.get_session(sid)).state.name == "ENDED"


async def test_an_unreadable_beacon_without_credentials_is_refused_when_auth_is_on(
    agents: Agents, deploy_kind: Callable[..., AbstractAsyncContextManager[Deployment]]
) -> None:
    async with deploy_kind(agents.launcher(), ServeOptions(api_token=TOKEN)) as gw:
        sid = (await gw.http.post("/sessions", json={"call_id": "c"}, headers=AUTH)).json()[
            "session_id"
        ]
        refused = await gw.http.post(f"/sessions/{sid}/close", **UNREADABLE["text bye"])
        assert refused.status_code == 401, refused.text
        assert (await gw.launcher.get_session(sid)).state.name == "RUNNING"
        # With credentials the same body closes.
        closed = await gw.http.post(
            f"/sessions/{sid}/close", content=b"bye", headers={**AUTH, "content-type": "text/plain"}
        )
        assert closed.status_code == 200, closed.text
        assert (await gw.launcher.get_session(sid)).state.name == "ENDED"


async def test_an_over_limit_beacon_is_still_413(gw: Deployment) -> None:
    sid = (await gw.http.post("/sessions", json={"call_id": "c"})).json()["session_id"]
    for headers in ({}, {"content-type": "text/plain"}):
        response = await gw.http.post(
            f"/sessions/{sid}/close", content=b"x" * ((1 << 20) + 1), headers=headers
        )
        assert response.status_code == 413, response.text
    assert (await gw.launcher.get_session(sid)).state.name == "RUNNING"


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"bye", "text/plain", 415),
        (b"bye", None, 415),
        (b'"bye"', "application/json", 400),
        (b"bye", "application/json", 400),
        (b'{"call_id": 5}', "application/json", 400),
    ],
)
async def test_other_routes_still_refuse_bad_bodies(
    gw: Deployment, content: bytes, content_type: str | None, status: int
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await gw.http.post("/sessions", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert gw.launcher.stats().started == 0
