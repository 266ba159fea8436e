"""The protojson rendering of the contract matches the reference agent server's HTTP bodies.

The HTTP/JSON gateway renders messages as protojson with proto field names (what
grpc-gateway does with `UseProtoNames`), fields without presence always present;
`render` below is the gateway's own. The reference bodies are those of the
Vision Agents HTTP server documentation (POST /sessions, GET .../metrics).
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from agentplane.clients.grpcio import session_pb2, session_service_pb2
from agentplane.gateway.codec import render as gateway_render

# Reference request/response bodies, verbatim from the reference server's docs.
START_REQUEST_BODY = '{"call_id": "my-call-123", "call_type": "default"}'
START_RESPONSE_BODY = """{
  "session_id": "abc-123",
  "call_id": "my-call-123",
  "session_started_at": "2025-01-15T10:30:00Z"
}"""
METRICS_RESPONSE_BODY = """{
  "session_id": "abc-123",
  "call_id": "my-call-123",
  "session_started_at": "2025-01-15T10:30:00Z",
  "metrics_generated_at": "2025-01-15T10:35:00Z",
  "metrics": {
    "llm_latency_ms__avg": 245.5,
    "llm_time_to_first_token_ms__avg": 120.3,
    "llm_input_tokens__total": 1500,
    "llm_output_tokens__total": 800,
    "stt_latency_ms__avg": 85.2,
    "tts_latency_ms__avg": 95.1
  }
}"""


def render(message: Message) -> dict[str, Any]:
    rendered = gateway_render(message)
    assert isinstance(rendered, dict)
    return rendered


def assert_same_body(rendered: dict[str, Any], reference: dict[str, Any]) -> None:
    """Same keys in the same order, equal values (JSON numbers compare numerically)."""
    assert list(rendered) == list(reference)
    for key, value in reference.items():
        if isinstance(value, dict):
            assert sorted(rendered[key]) == sorted(value), key
            for inner, number in value.items():
                assert rendered[key][inner] == number, f"{key}.{inner}"
                assert isinstance(rendered[key][inner], (int, float)), f"{key}.{inner}"
        else:
            assert rendered[key] == value, key
            assert type(rendered[key]) is type(value), key


def timestamp(text: str) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    value = Timestamp()
    value.FromJsonString(text)
    return value


def test_start_response_matches_reference() -> None:
    response = session_service_pb2.StartResponse(
        session_id="abc-123",
        call_id="my-call-123",
        session_started_at=timestamp("2025-01-15T10:30:00Z"),
    )
    assert_same_body(render(response), json.loads(START_RESPONSE_BODY))


def test_start_response_close_token_only_appears_when_set() -> None:
    response = session_service_pb2.StartResponse(session_id="abc-123", close_token="ct_1")
    assert render(response) == {"session_id": "abc-123", "call_id": "", "close_token": "ct_1"}
    # Explicit presence: an empty token is still "issued", an unset one is absent.
    assert "close_token" not in render(session_service_pb2.StartResponse(session_id="abc-123"))


def test_metrics_map_is_present_even_when_empty() -> None:
    # Clients read body.metrics[...] without an existence check.
    assert render(session_service_pb2.MetricsResponse(session_id="s"))["metrics"] == {}


def test_metrics_response_matches_reference() -> None:
    reference = json.loads(METRICS_RESPONSE_BODY)
    response = session_service_pb2.MetricsResponse(
        session_id="abc-123",
        call_id="my-call-123",
        session_started_at=timestamp("2025-01-15T10:30:00Z"),
        metrics_generated_at=timestamp("2025-01-15T10:35:00Z"),
        metrics={key: float(value) for key, value in reference["metrics"].items()},
    )
    rendered = render(response)
    assert_same_body(rendered, reference)
    assert rendered["metrics"]["llm_latency_ms__avg"] == 245.5
    assert rendered["metrics"]["llm_time_to_first_token_ms__avg"] == 120.3
    # The reference body parses back into the message unchanged.
    assert (
        json_format.Parse(METRICS_RESPONSE_BODY, session_service_pb2.MetricsResponse()) == response
    )


def test_start_request_body_parses() -> None:
    request = json_format.Parse(START_REQUEST_BODY, session_service_pb2.StartRequest())
    assert request == session_service_pb2.StartRequest(call_id="my-call-123", call_type="default")
    # protojson also accepts the lowerCamel JSON names, as grpc-gateway does.
    camel = json_format.Parse(
        '{"callId": "my-call-123", "callType": "default"}', session_service_pb2.StartRequest()
    )
    assert camel == request


def test_start_request_metadata_is_free_form_json() -> None:
    body = '{"call_id": "c", "metadata": {"user": {"id": 7, "tags": ["a", null, true]}}}'
    request = json_format.Parse(body, session_service_pb2.StartRequest())
    assert render(request)["metadata"] == {"user": {"id": 7.0, "tags": ["a", None, True]}}


def test_get_response_session_starts_with_reference_keys() -> None:
    """GET /sessions/{id} answers `session` (response_body), whose first keys are the reference body's."""
    response = session_service_pb2.GetResponse(
        session=session_pb2.Session(
            session_id="abc-123",
            call_id="my-call-123",
            session_started_at=timestamp("2025-01-15T10:30:00Z"),
            call_type="default",
            state=session_pb2.SESSION_STATE_RUNNING,
            created_by="alice",
        )
    )
    body = render(response)["session"]
    reference = json.loads(START_RESPONSE_BODY)
    assert list(body)[:3] == list(reference)
    assert {key: body[key] for key in reference} == reference
    assert body["state"] == "SESSION_STATE_RUNNING"


def test_enums_render_as_names() -> None:
    session = session_pb2.Session(
        state=session_pb2.SESSION_STATE_ENDED,
        end_reason=session_pb2.END_REASON_IDLE_TIMEOUT,
        ended_at=timestamp("2025-01-15T10:40:00.250Z"),
    )
    rendered = render(session)
    assert rendered["state"] == "SESSION_STATE_ENDED"
    assert rendered["end_reason"] == "END_REASON_IDLE_TIMEOUT"
    assert rendered["ended_at"] == "2025-01-15T10:40:00.250Z"
    assert "metadata" not in rendered  # an unset message field is left out
    changed = session_pb2.StateChanged(
        previous_state=session_pb2.SESSION_STATE_RUNNING, state=session_pb2.SESSION_STATE_ENDING
    )
    assert render(changed) == {
        "previous_state": "SESSION_STATE_RUNNING",
        "state": "SESSION_STATE_ENDING",
    }
    # Enum names parse back.
    assert json_format.ParseDict(render(session), session_pb2.Session()) == session


def test_events_render_with_string_cursors_and_the_oneof_case_as_key() -> None:
    event = session_service_pb2.StreamEventsResponse(
        cursor=42,
        epoch="9f86d081884c7d65",
        session_id="abc-123",
        call_id="my-call-123",
        time=timestamp("2025-01-15T10:30:01Z"),
        metrics_updated=session_pb2.MetricsUpdated(metrics={"llm_latency_ms__avg": 245.5}),
    )
    assert render(event) == {
        "cursor": "42",  # protojson renders 64-bit integers as strings
        "epoch": "9f86d081884c7d65",
        "session_id": "abc-123",
        "call_id": "my-call-123",
        "time": "2025-01-15T10:30:01Z",
        "metrics_updated": {"metrics": {"llm_latency_ms__avg": 245.5}},
    }
    request = json_format.ParseDict(
        {"after_cursor": "0"}, session_service_pb2.StreamEventsRequest()
    )
    assert request.HasField("after_cursor")
