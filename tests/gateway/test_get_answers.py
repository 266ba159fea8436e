"""A Get of an unchanged session is built and rendered once; any change shows at once."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from google.protobuf.message import Message

from agentplane.clients.grpcio import session_pb2 as pb
from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.core import SessionRecord
from agentplane.gateway import codec
from agentplane.gateway.protojson import to_json
from agentplane.service.api import SessionAPI
from agentplane.service.auth import RequestContext
from agentplane.service.get_cache import GetAnswers

from .support import Deployment


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often the gateway rendered a Session, by its id."""
    counts: Counter[str] = Counter()

    def counting(message: Message) -> str:
        if isinstance(message, pb.Session):
            counts[message.session_id] += 1
        return to_json(message)

    monkeypatch.setattr(codec, "to_json", counting)
    return counts


async def test_polling_an_unchanged_session_renders_it_once(
    gw: Deployment, renders: Counter[str]
) -> None:
    started = await gw.http.post("/sessions", json={"call_id": "poll"})
    sid = started.json()["session_id"]
    first = await gw.http.get(f"/sessions/{sid}")
    assert first.status_code == 200 and first.json()["state"] == "SESSION_STATE_RUNNING"
    rendered = renders[sid]
    for path in (f"/sessions/{sid}", f"/calls/poll/sessions/{sid}"):
        again = await gw.http.get(path)
        assert again.status_code == 200
        assert again.content == first.content  # byte for byte
    if gw.kind == "embedded":
        # One answer object while nothing changed: rendered by the first Get only.
        assert renders[sid] == rendered
    else:
        # Through gRPC each answer is its own message: rendered each time, as before.
        assert renders[sid] == rendered + 2

    closed = await gw.http.delete(f"/sessions/{sid}")
    assert closed.status_code == 200
    after = await gw.http.get(f"/sessions/{sid}")
    assert after.json()["state"] == "SESSION_STATE_ENDED"
    assert after.json()["end_reason"] == "END_REASON_CLOSED_BY_REQUEST"
    assert after.json()["ended_at"] == closed.json()["ended_at"]


async def test_the_service_answers_the_same_message_until_the_session_changes(
    gw: Deployment,
) -> None:
    api: SessionAPI = gw.runner.api
    ctx = RequestContext("/agentplane.v1.SessionService/Get")
    started = await gw.http.post("/sessions", json={"call_id": "same"})
    sid = started.json()["session_id"]
    request = api_pb.GetRequest(session_id=sid)
    first = await api.get(request, ctx)
    assert await api.get(request, ctx) is first
    assert first.session.state == pb.SESSION_STATE_RUNNING

    await gw.http.delete(f"/sessions/{sid}")
    ended = await api.get(request, ctx)
    assert ended is not first
    assert ended.session.state == pb.SESSION_STATE_ENDED
    assert first.session.state == pb.SESSION_STATE_RUNNING  # a shared answer is never changed


def record(session_id: str = "s-1", **fields: Any) -> SessionRecord:
    return SessionRecord(
        session_id=session_id, call_id="c", call_type="default", started_at=1.5, **fields
    )


def test_an_answer_is_rebuilt_when_any_field_of_its_record_differs() -> None:
    answers = GetAnswers()
    first = answers.answer(record())
    assert answers.answer(record()) is first  # an equal snapshot: the same answer
    for changed in (
        record(error_message="boom"),
        record(metadata={"room": "b"}),
        record(created_by="alice"),
    ):
        answer = answers.answer(changed)
        assert answer is not first
        assert answer.session.error_message == changed.error_message
        assert answer.session.created_by == changed.created_by
        first = answer


def test_the_answers_kept_are_bounded() -> None:
    answers = GetAnswers(size=3)
    kept = [answers.answer(record(f"s-{n}")) for n in range(10)]
    assert len(answers) == 3
    # The oldest answers went first: the last three are still the same objects.
    assert all(answers.answer(record(f"s-{n}")) is kept[n] for n in (7, 8, 9))
    assert answers.answer(record("s-0")) is not kept[0]
    with pytest.raises(ValueError, match="at least 1"):
        GetAnswers(size=0)
