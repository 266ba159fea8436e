"""Server reflection (v1 and v1alpha) and every RPC through `buf curl` with JSON bodies.

buf curl discovers the schema through reflection, so a call that works here
proves the descriptors the server publishes are complete. It runs as an async
subprocess: the server lives in this test's event loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from grpclib.client import Channel
from grpclib.reflection.v1alpha import reflection_pb2
from grpclib.reflection.v1alpha.reflection_grpc import ServerReflectionStub

from tests.support import ServerAgents, Servers, wait_ended

from .conftest import Clients
from .support import SERVICE, buf

METHODS = [
    f"{SERVICE}/{m}" for m in ("Close", "Get", "ListSessions", "Metrics", "Start", "StreamEvents")
]
HEALTH_METHODS = ["grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch"]


async def buf_curl(port: int, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        buf(),
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        *args[:-1],
        f"http://127.0.0.1:{port}{args[-1]}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def buf_json(port: int, method: str, body: dict[str, Any]) -> dict[str, Any]:
    code, out, err = await buf_curl(port, "-d", json.dumps(body), f"/{method}")
    assert code == 0, err
    result = json.loads(out)
    assert isinstance(result, dict)
    return result


def _json_stream(text: str) -> list[dict[str, Any]]:
    """buf curl prints one pretty-printed JSON document per streamed message."""
    decoder = json.JSONDecoder()
    messages, index = [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return messages
        message, index = decoder.raw_decode(text, index)
        messages.append(message)


async def test_list_methods_with_reflection_v1_and_v1alpha(
    toy: ServerAgents, serve: Servers
) -> None:
    served = await serve(toy.launcher())
    code, out, err = await buf_curl(served.grpc_port, "--list-methods", "")
    assert code == 0, err
    assert out.split() == METHODS + HEALTH_METHODS

    code, out, err = await buf_curl(
        served.grpc_port, "--reflect-protocol", "grpc-v1alpha", "--list-methods", ""
    )
    assert code == 0, err
    assert out.split() == METHODS + HEALTH_METHODS


async def test_every_rpc_through_buf_curl(toy: ServerAgents, serve: Servers) -> None:
    served = await serve(toy.launcher())
    port = served.grpc_port

    started = await buf_json(
        port, f"{SERVICE}/Start", {"call_id": "buf-call", "metadata": {"voice": "alloy"}}
    )
    sid = started["sessionId"]
    assert started["callId"] == "buf-call"
    assert started["sessionStartedAt"].endswith("Z")
    assert "closeToken" not in started
    await toy.context(sid)

    # The agent stays in its call until released below, however slow the subprocesses are.
    got = await buf_json(port, f"{SERVICE}/Get", {"session_id": sid})
    assert got["session"]["state"] == "SESSION_STATE_RUNNING"
    assert got["session"]["metadata"] == {"voice": "alloy"}

    metrics = await buf_json(port, f"{SERVICE}/Metrics", {"session_id": sid})
    assert metrics["metrics"]["llm_latency_ms__avg"] == 12.5
    assert metrics["metrics"]["llm_output_tokens__total"] == 3

    # The agent finishes by itself (COMPLETED), so the stream completes.
    await toy.release(sid)
    code, out, err = await buf_curl(
        port, "-d", json.dumps({"session_id": sid, "after_cursor": 0}), f"/{SERVICE}/StreamEvents"
    )
    assert code == 0, err
    events = _json_stream(out)
    assert [next(k for k in ("started", "stateChanged", "ended") if k in e) for e in events] == [
        "started",
        "stateChanged",
        "stateChanged",
        "ended",
    ]
    assert events[-1]["ended"]["session"]["endReason"] == "END_REASON_COMPLETED"

    closed = await buf_json(port, f"{SERVICE}/Close", {"session_id": sid})
    assert closed["session"]["state"] == "SESSION_STATE_ENDED"
    assert closed["session"]["endReason"] == "END_REASON_COMPLETED"  # ended before the Close

    second = await buf_json(port, f"{SERVICE}/Start", {"callId": "buf-call-2"})  # lowerCamel too
    closed = await buf_json(port, f"{SERVICE}/Close", {"sessionId": second["sessionId"]})
    assert closed["session"]["endReason"] == "END_REASON_CLOSED_BY_REQUEST"
    assert "endedAt" in closed["session"]


async def test_stream_of_all_sessions_through_buf_curl_until_timeout(
    toy: ServerAgents, serve: Servers
) -> None:
    served = await serve(toy.launcher())
    before = await served.launcher.start_session("before-watch")
    await toy.release(before.session_id)  # it completes by itself
    await wait_ended(served.launcher, before.session_id)

    code, out, err = await buf_curl(
        served.grpc_port, "--timeout", "1s", "-d", '{"after_cursor": 0}', f"/{SERVICE}/StreamEvents"
    )
    # The feed of every session never ends by itself: the deadline ends it.
    assert code != 0 and "deadline_exceeded" in out + err
    events = _json_stream(out.split('{\n   "code"')[0])
    assert events[0]["started"]["session"]["callId"] == "before-watch"
    assert events[-1]["ended"]["session"]["endReason"] == "END_REASON_COMPLETED"


async def test_buf_curl_health_check(toy: ServerAgents, serve: Servers) -> None:
    served = await serve(toy.launcher())
    for service in ("", SERVICE, "liveness"):
        result = await buf_json(
            served.grpc_port, "grpc.health.v1.Health/Check", {"service": service}
        )
        assert result == {"status": "SERVING"}


async def _reflect(
    stream: Any, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    await stream.send_message(request)
    response = await stream.recv_message()
    assert response is not None
    assert not response.HasField("error_response"), response.error_response
    return response


async def test_raw_grpclib_reflection_v1alpha(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    channel: Channel = served.channel
    stub = ServerReflectionStub(channel)
    Request = reflection_pb2.ServerReflectionRequest

    async with stub.ServerReflectionInfo.open(timeout=10) as stream:
        listed = await _reflect(stream, Request(list_services=""))
        names = [s.name for s in listed.list_services_response.service]
        assert names == [SERVICE, "grpc.health.v1.Health"]

        found = await _reflect(stream, Request(file_containing_symbol=SERVICE))
        (raw,) = found.file_descriptor_response.file_descriptor_proto
        root = descriptor_pb2.FileDescriptorProto.FromString(raw)
        assert root.name == "agentplane/v1/session_service.proto"
        assert "google/api/annotations.proto" in root.dependency

        # Resolve every dependency by file name, as grpcurl does.
        files = {root.name: root}
        pending = list(root.dependency)
        while pending:
            name = pending.pop()
            if name in files:
                continue
            reply = await _reflect(stream, Request(file_by_filename=name))
            (dep_raw,) = reply.file_descriptor_response.file_descriptor_proto
            files[name] = descriptor_pb2.FileDescriptorProto.FromString(dep_raw)
            pending.extend(files[name].dependency)

        missing = await stream_missing(stream)
        assert missing.error_response.error_code == 5  # NOT_FOUND
        await stream.end()

    assert {
        "agentplane/v1/session.proto",
        "google/api/annotations.proto",
        "google/api/http.proto",
        "google/protobuf/descriptor.proto",
        "google/protobuf/struct.proto",
        "google/protobuf/timestamp.proto",
    } <= set(files)

    # A fresh pool built only from what reflection answered knows the service.
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str) -> None:
        if name in added:
            return
        for dep in files[name].dependency:
            add(dep)
        pool.Add(files[name])
        added.add(name)

    add(root.name)
    service = pool.FindServiceByName(SERVICE)
    assert [m.name for m in service.methods] == [
        "Start",
        "Close",
        "Get",
        "Metrics",
        "ListSessions",
        "StreamEvents",
    ]
    assert service.methods_by_name["StreamEvents"].output_type.full_name == (
        "agentplane.v1.StreamEventsResponse"
    )

    # The google.api.http options survive: the HTTP routes are readable from reflection.
    methods = {m.name: m for m in root.service[0].method}
    start_http = methods["Start"].options.Extensions[annotations_pb2.http]
    assert start_http.post == "/sessions" and start_http.body == "*"
    assert start_http.additional_bindings[0].post == "/calls/{call_id}/sessions"
    close_http = methods["Close"].options.Extensions[annotations_pb2.http]
    assert close_http.delete == "/sessions/{session_id}"
    assert close_http.response_body == "session"
    events_http = methods["StreamEvents"].options.Extensions[annotations_pb2.http]
    assert events_http.get == "/sessions/{session_id}/events"


async def stream_missing(stream: Any) -> reflection_pb2.ServerReflectionResponse:
    await stream.send_message(
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="agentplane.v1.Nothing")
    )
    response = await stream.recv_message()
    assert response is not None
    return response


async def test_unknown_method_is_unimplemented_for_buf_curl(
    toy: ServerAgents, serve: Servers, tmp_path: Path
) -> None:
    # connect-go (buf curl) and grpc-go report a response without content-type
    # as UNKNOWN, so this is what proves the server answers unknown methods properly.
    schema = tmp_path / "nothing.proto"
    schema.write_text(
        'syntax = "proto3";\n'
        "package nothing.v1;\n"
        "message Empty {}\n"
        "service Nothing { rpc Do(Empty) returns (Empty); }\n"
    )
    served = await serve(toy.launcher())
    code, out, err = await buf_curl(
        served.grpc_port, "--schema", str(schema), "-d", "{}", "/nothing.v1.Nothing/Do"
    )
    assert code != 0
    error = json.loads(out or err)
    assert error["code"] == "unimplemented", error
    assert "/nothing.v1.Nothing/Do" in error["message"]
