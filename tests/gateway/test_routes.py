"""Every session route over real HTTP, in both deployments, against the reference bodies."""

from __future__ import annotations

from typing import Any

from .support import Deployment

START_KEYS = ["session_id", "call_id", "session_started_at"]
METRICS_KEYS = ["session_id", "call_id", "session_started_at", "metrics_generated_at", "metrics"]


async def start(gw: Deployment, call_id: str = "my-call-123", **body: Any) -> dict[str, Any]:
    response = await gw.http.post("/sessions", json={"call_id": call_id, **body})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_start_answers_201_with_the_reference_body(gw: Deployment) -> None:
    response = await gw.http.post(
        "/sessions", json={"call_id": "my-call-123", "call_type": "default"}
    )
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == START_KEYS  # key for key; no close_token while auth is off
    assert body["call_id"] == "my-call-123"
    assert body["session_started_at"].endswith("Z")
    record = await gw.launcher.get_session(body["session_id"])
    assert record.call_type == "default"


async def test_start_accepts_camel_case_and_ignores_unknown_fields(gw: Deployment) -> None:
    response = await gw.http.post(
        "/sessions", json={"callId": "c-camel", "callType": "video", "surprise": 1}
    )
    assert response.status_code == 201, response.text
    record = await gw.launcher.get_session(response.json()["session_id"])
    assert (record.call_id, record.call_type) == ("c-camel", "video")


async def test_start_on_the_call_scoped_route_takes_the_call_from_the_path(
    gw: Deployment,
) -> None:
    response = await gw.http.post("/calls/c-path/sessions", json={"call_type": "default"})
    assert response.status_code == 201, response.text
    assert response.json()["call_id"] == "c-path"


async def test_get_answers_the_session(gw: Deployment) -> None:
    started = await start(gw, metadata={"user": "u1"})
    sid = started["session_id"]
    for path in (f"/sessions/{sid}", f"/calls/my-call-123/sessions/{sid}"):
        response = await gw.http.get(path)
        assert response.status_code == 200, response.text
        body = response.json()
        assert list(body)[:3] == START_KEYS
        assert {k: body[k] for k in START_KEYS} == started
        assert body["state"] == "SESSION_STATE_RUNNING"
        assert body["metadata"] == {"user": "u1"}


async def test_a_session_of_another_call_is_not_found_there(gw: Deployment) -> None:
    sid = (await start(gw))["session_id"]
    response = await gw.http.get(f"/calls/other-call/sessions/{sid}")
    assert response.status_code == 404
    assert response.json()["code"] == 5
    assert (await gw.launcher.get_session(sid)).state.name == "RUNNING"


async def test_metrics_answer_the_reference_body(gw: Deployment) -> None:
    sid = (await start(gw))["session_id"]
    response = await gw.http.get(f"/sessions/{sid}/metrics")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == METRICS_KEYS
    assert body["metrics"]["llm_latency_ms__avg"] == 245.5
    assert body["metrics"]["llm_input_tokens__total"] == 1500
    scoped = await gw.http.get(f"/calls/my-call-123/sessions/{sid}/metrics")
    assert scoped.status_code == 200 and scoped.json()["session_id"] == sid


async def test_delete_ends_the_session_and_answers_it(gw: Deployment) -> None:
    sid = (await start(gw))["session_id"]
    response = await gw.http.delete(f"/sessions/{sid}")
    assert response.status_code == 200
    body = response.json()
    assert body["session_id"] == sid
    assert body["state"] == "SESSION_STATE_ENDED"
    assert body["end_reason"] == "END_REASON_CLOSED_BY_REQUEST"
    # Closing again is not an error: the session as it ended.
    again = await gw.http.delete(f"/calls/my-call-123/sessions/{sid}")
    assert again.status_code == 200 and again.json()["ended_at"] == body["ended_at"]


async def test_unknown_session_is_404_naming_it(gw: Deployment) -> None:
    response = await gw.http.get("/sessions/no-such-session")
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == 5
    assert "no-such-session" in body["message"]
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert body["details"][0]["reason"] == "SESSION_NOT_FOUND"


async def test_unknown_path_is_404_json(gw: Deployment) -> None:
    for path in ("/nothing", "/sessions/", "/sessions/a/b/c"):
        response = await gw.http.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"code": 5, "message": "Not Found", "details": []}


async def test_wrong_method_is_405_with_allow(gw: Deployment) -> None:
    sid = (await start(gw))["session_id"]
    response = await gw.http.put(f"/sessions/{sid}")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET"
    assert response.json()["code"] == 12
    response = await gw.http.put("/sessions")
    assert response.status_code == 405 and response.headers["allow"] == "GET, POST"
    response = await gw.http.post("/health")
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
    assert response.json()["message"] == "Method Not Allowed"


async def test_percent_encoded_path_variables_are_decoded(gw: Deployment) -> None:
    response = await gw.http.post("/calls/room%3A42/sessions", json={})
    assert response.status_code == 201, response.text
    assert response.json()["call_id"] == "room:42"
    # An encoded "/" stays inside one segment: a session id, not a route.
    missing = await gw.http.get("/sessions/a%2Fb")
    assert missing.status_code == 404 and "a/b" in missing.json()["message"]


async def test_health_and_ready(gw: Deployment) -> None:
    assert (await gw.http.get("/health")).json() == {"status": "ok"}
    assert (await gw.http.get("/ready")).status_code == 200
    await gw.launcher.drain()
    response = await gw.http.get("/ready")
    assert response.status_code == 400
    assert response.json() == {"status": "not ready"}
