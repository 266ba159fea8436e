"""The gateway's pieces on their own: templates, bindings, codec, headers, error table."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from grpclib.const import Status

from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.gateway import BindingError, service_bindings
from agentplane.gateway.bodies import DecodedBody
from agentplane.gateway.codec import RequestBuilder, set_from_strings
from agentplane.gateway.errors import HTTP_STATUS, RpcError
from agentplane.gateway.headers import forwarded_metadata
from agentplane.gateway.httprule import PathTemplate, TemplateError
from agentplane.gateway.routes import DisconnectWatch
from agentplane.http.app import session_service


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/sessions/{session_id}", "/sessions/abc", {"session_id": "abc"}),
        ("/sessions/{session_id}", "/sessions/a%20b", {"session_id": "a b"}),
        ("/sessions/{session_id}", "/sessions/a%2Fb", {"session_id": "a/b"}),
        ("/sessions/{session_id}", "/sessions/", None),
        ("/sessions/{session_id}", "/sessions/a/b", None),
        ("/sessions", "/sessions/", None),
        ("/v1/{name=shelves/*}", "/v1/shelves/s1", {"name": "shelves/s1"}),
        ("/v1/{name=files/**}", "/v1/files/a/b%2Fc", {"name": "files/a/b%2Fc"}),
        ("/v1/{name=files/**}", "/v1/files", {"name": "files"}),
        ("/v1/{id}:cancel", "/v1/x:cancel", {"id": "x"}),
        ("/v1/{id}:cancel", "/v1/x", None),
        ("/v1/{id}", "/v1/x:y", {"id": "x:y"}),  # no verb in the template: ':' is data
        ("/calls/{call_id}/sessions", "/calls/room%3A1/sessions", {"call_id": "room:1"}),
    ],
)
def test_templates_match_raw_paths(
    template: str, path: str, expected: dict[str, str] | None
) -> None:
    assert PathTemplate.parse(template).match(path) == expected


@pytest.mark.parametrize(
    "bad", ["sessions", "/a/{b", "/a/**/c", "/{a}/{a}", "/a/{b={c}}", "/a:", "/a b", "/{1x}"]
)
def test_bad_templates_are_refused(bad: str) -> None:
    with pytest.raises(TemplateError, match="bad path template"):
        PathTemplate.parse(bad)


def test_template_repr_prints_the_template() -> None:
    assert repr(PathTemplate.parse("/a/{b}")) == "PathTemplate('/a/{b}')"


def test_session_service_bindings() -> None:
    bindings = service_bindings([session_service()])
    routes = {(b.http_method, b.template.text): b for b in bindings}
    assert routes[("POST", "/sessions")].body == "*"
    assert routes[("DELETE", "/sessions/{session_id}")].response_body == "session"
    assert routes[("POST", "/sessions/{session_id}/close")].body == "*"
    assert routes[("GET", "/events")].server_streaming
    assert routes[("GET", "/calls/{call_id}/sessions/{session_id}/metrics")].rpc_path == (
        "/agentplane.v1.SessionService/Metrics"
    )
    assert routes[("GET", "/calls/{call_id}/sessions")].rpc_path == (
        "/agentplane.v1.SessionService/ListSessions"
    )
    # 2 Start, 4 Close, 2 Get, 2 Metrics, 2 ListSessions, 2 StreamEvents
    assert len(bindings) == 14


def _service_with_rule(rule: str) -> ServiceDescriptor:
    """A throwaway service whose one method has ``option (google.api.http) = {rule}``."""
    from google.api import annotations_pb2, http_pb2
    from google.protobuf import text_format

    pool = descriptor_pool.DescriptorPool()
    for module in (descriptor_pb2, http_pb2, annotations_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        pool.AddSerializedFile(proto.SerializeToString())
    file = descriptor_pb2.FileDescriptorProto(
        name="t.proto", package="t", syntax="proto3", dependency=["google/api/annotations.proto"]
    )
    file.message_type.add(name="Req").field.add(
        name="id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )  # fmt: skip
    file.message_type.add(name="Resp")
    method = file.service.add(name="S").method.add(
        name="M", input_type=".t.Req", output_type=".t.Resp"
    )
    http = http_pb2.HttpRule()
    text_format.Parse(rule, http)
    method.options.Extensions[annotations_pb2.http].CopyFrom(http)
    pool.AddSerializedFile(file.SerializeToString())
    return pool.FindServiceByName("t.S")


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ('get: "/x/{nope}"', "names no field"),
        ('get: "/x/{id"', "bad path template"),
        ('post: "/x" body: "missing"', "body 'missing'"),
        ('get: "/x" response_body: "missing"', "response_body 'missing'"),
        ('get: "/x" additional_bindings { get: "/x" }', "duplicates"),
    ],
)
def test_bad_rules_stop_the_gateway_at_startup(rule: str, problem: str) -> None:
    service = _service_with_rule(rule)
    with pytest.raises(BindingError, match=problem):
        service_bindings([service])


def _start_binding() -> object:
    return next(b for b in service_bindings([session_service()]) if b.template.text == "/sessions")


def test_query_and_path_values_convert_by_field_type() -> None:
    request: Message = api_pb.StreamEventsRequest()
    set_from_strings(request, "after_cursor", ["42"], source="query parameter")
    assert request.after_cursor == 42  # type: ignore[attr-defined]
    with pytest.raises(RpcError, match="after_cursor"):
        set_from_strings(request, "after_cursor", ["-1"], source="query parameter")
    set_from_strings(request, "afterCursor", ["7"], source="query parameter")  # lowerCamel too
    assert request.after_cursor == 7  # type: ignore[attr-defined]


def test_body_star_ignores_the_query_and_path_wins() -> None:
    binding = next(
        b for b in service_bindings([session_service()])
        if b.template.text == "/calls/{call_id}/sessions"
    )  # fmt: skip
    request = RequestBuilder(binding)(
        {"call_id": "from-path"},
        [("call_type", "from-query")],
        DecodedBody({"call_id": "from-body", "call_type": "from-body"}, present=True),
    )
    assert (request.call_id, request.call_type) == ("from-path", "from-body")  # type: ignore[attr-defined]


def test_headers_forwarding_rules() -> None:
    metadata = dict(
        forwarded_metadata(
            [
                (b"Authorization", b"Bearer t"),
                (b"Grpc-Metadata-Tenant", b"acme"),
                (b"X-Api-Key", b"k"),
                (b"Content-Length", b"10"),
                (b"Connection", b"keep-alive"),
                (b"Host", b"gw:8000"),
                (b"X-Forwarded-For", b"10.0.0.1"),
                (b"Grpc-Metadata-Grpc-Status", b"0"),
                (b"Grpc-Metadata-Trace-Bin", b"AAE="),
            ],
            "127.0.0.1",
        )
    )
    assert metadata == {
        "authorization": "Bearer t",
        "tenant": "acme",
        "grpcgateway-x-api-key": "k",
        "x-forwarded-for": "10.0.0.1, 127.0.0.1",
        "x-forwarded-host": "gw:8000",
    }


def test_an_http_call_forwards_its_headers_when_read() -> None:
    from agentplane.gateway import CallInfo

    headers = [(b"authorization", b"Bearer t"), (b"x-api-key", b"k"), (b"host", b"gw")]
    call = CallInfo.from_http(headers, ("127.0.0.1", 5000))
    assert call.peer == "127.0.0.1:5000"
    assert call.metadata == forwarded_metadata(headers, "127.0.0.1")
    assert call.metadata is call.metadata  # built once
    anonymous = CallInfo.from_http([], None)
    assert (anonymous.peer, list(anonymous.metadata)) == (None, [])


def test_every_grpc_code_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(Status)
    assert HTTP_STATUS[Status.FAILED_PRECONDITION] == 400
    assert HTTP_STATUS[Status.CANCELLED] == 499
    assert RpcError(Status.RESOURCE_EXHAUSTED, "x").response().status_code == 429
    assert RpcError.from_http(413, "too big").to_dict()["code"] == Status.INVALID_ARGUMENT.value


def test_string_fields_are_set_as_protojson_sets_them() -> None:
    # Path and query text for a top-level string field is set directly (no
    # dict to parse): by proto or lowerCamel name, and a repeat still refused.
    request = api_pb.StartRequest()
    set_from_strings(request, "call_id", ["c-1"], source="path")
    set_from_strings(request, "callType", ["video"], source="query parameter")
    assert (request.call_id, request.call_type) == ("c-1", "video")
    set_from_strings(request, "call_id", ["é \u2028 x"], source="path")
    assert request.call_id == "é \u2028 x"
    with pytest.raises(RpcError, match="given 2 times"):
        set_from_strings(request, "call_id", ["a", "b"], source="query parameter")
    with pytest.raises(RpcError):  # text protobuf cannot hold: refused as before, not a 500
        set_from_strings(request, "call_id", ["\udcff"], source="path")


def test_printable_is_space_to_tilde() -> None:
    # Metadata values forwarded from headers: printable ASCII only, every code point checked.
    from agentplane.gateway.headers import _printable

    ok = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000 and _printable(chr(c))]
    assert ok == list(range(0x20, 0x7F))
    assert _printable("") and _printable("Bearer abc~") and not _printable("a\tb")


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_json_start_is_what_starlette_response_sends(status: int) -> None:
    from starlette.responses import Response

    from agentplane.gateway.errors import JSON_TYPE
    from agentplane.gateway.routes import json_start

    body = b'{"session_id":"s"}'
    ours: list[object] = []
    theirs: list[object] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def keep_ours(message: object) -> None:
        ours.append(message)

    async def keep_theirs(message: object) -> None:
        theirs.append(message)

    await keep_ours(json_start(status, body))
    await keep_ours({"type": "http.response.body", "body": body})
    await Response(body, status, media_type=JSON_TYPE)({"type": "http"}, receive, keep_theirs)
    assert ours == theirs


class _Client:
    """An ASGI client that leaves when ``leave.set()`` is called.

    ``watched``: its server offers ``DISCONNECT_WATCH`` (``watch``) and its
    ``receive`` never reports the departure; else ``receive`` does.
    """

    def __init__(self, watched: bool) -> None:
        self.leave = asyncio.Event()
        self.watched = watched
        self.watchers: set[Callable[[], None]] = set()
        self.watch: DisconnectWatch | None = self._watch if watched else None

    async def receive(self) -> dict[str, Any]:
        if self.watched:
            await asyncio.Event().wait()
        await self.leave.wait()
        return {"type": "http.disconnect"}

    def _watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        self.watchers.add(callback)

        async def on_leave() -> None:
            await self.leave.wait()
            if callback in self.watchers:
                callback()

        watching = asyncio.ensure_future(on_leave())

        def unwatch() -> None:
            self.watchers.discard(callback)
            watching.cancel()

        return unwatch


@pytest.fixture(params=[True, False], ids=["server-watches", "receive"])
def client(request: pytest.FixtureRequest) -> _Client:
    return _Client(watched=request.param)


async def test_a_client_leaving_cancels_the_call_as_cancelled(client: _Client) -> None:
    from agentplane.gateway.routes import until_disconnect

    entered = asyncio.Event()

    async def call() -> str:
        entered.set()
        await asyncio.Event().wait()
        return "never"

    async def request() -> None:
        with pytest.raises(RpcError) as raised:
            await until_disconnect(call(), client.receive, client.watch)
        assert raised.value.status is Status.CANCELLED
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        await asyncio.sleep(0)  # the request goes on: it can still answer

    task = asyncio.create_task(request())
    await asyncio.wait_for(entered.wait(), 5)
    client.leave.set()
    await asyncio.wait_for(task, 5)
    assert not client.watchers  # withdrawn once the call is over


async def test_a_call_that_answers_despite_the_client_leaving_keeps_its_answer(
    client: _Client,
) -> None:
    from agentplane.gateway.routes import until_disconnect

    entered = asyncio.Event()

    async def stubborn() -> str:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "answered anyway"
        return "never"

    async def request() -> str:
        answer = await until_disconnect(stubborn(), client.receive, client.watch)
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        await asyncio.sleep(0)
        return answer

    task = asyncio.create_task(request())
    await asyncio.wait_for(entered.wait(), 5)
    client.leave.set()
    assert await asyncio.wait_for(task, 5) == "answered anyway"
    assert not client.watchers


@pytest.mark.parametrize("client_leaves_too", [False, True])
async def test_a_cancellation_from_elsewhere_goes_on_as_it_is(
    client: _Client, client_leaves_too: bool
) -> None:
    from agentplane.gateway.routes import until_disconnect

    entered = asyncio.Event()

    async def call() -> str:
        entered.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(until_disconnect(call(), client.receive, client.watch))
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()  # the server stopping
    if client_leaves_too:
        client.leave.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert not client.watchers


@pytest.mark.parametrize(
    "body",
    [
        {"call_id": "c1", "call_type": "default"},
        {"call_id": "é🙂", "call_type": "x", "idempotency_key": "k"},
        {"call_id": "c\ud800"},  # an unpaired surrogate: refused
        {"callId": "c1"},  # lowerCamel
        {"call_id": "c1", "callId": "c2"},  # both names of one field: refused
        {"call_id": None},
        {"call_id": 5},
        {"call_id": "c1", "unknown": "ignored"},
        {"call_id": "c1", "metadata": {"a": 1}},
        {},
    ],
    ids=repr,
)
def test_a_json_body_parses_as_parse_dict_does(body: dict[str, Any]) -> None:
    from google.protobuf import json_format

    binding = next(b for b in service_bindings([session_service()]) if b.body == "*")
    expected: Any
    try:
        expected = json_format.ParseDict(body, binding.request_type(), ignore_unknown_fields=True)
    except json_format.ParseError as error:
        expected = f"invalid request body: {error}"
    try:
        got: Any = RequestBuilder(binding)({}, (), DecodedBody(body, present=True))
    except RpcError as error:
        got = error.message
    assert got == expected


@pytest.mark.parametrize(
    ("raw_path", "root_path", "found"),
    [
        (b"/sessions/abc", "", {"session_id": "abc"}),
        # A server that leaves the query in raw_path (ASGI does not promise it never does).
        (b"/sessions/abc?x=1", "", {"session_id": "abc"}),
        (b"/agents/sessions/a%20b", "/agents", {"session_id": "a b"}),
        (b"/sessions/abc/extra", "", None),
        (b"sessions/abc", "", None),
    ],
)
def test_rpc_routes_match_the_raw_path_below_the_root_path(
    raw_path: bytes, root_path: str, found: dict[str, str] | None
) -> None:
    from agentplane.gateway.routes import RpcRoutes

    class NoBackend:
        pass

    routes = RpcRoutes(service_bindings([session_service()]), NoBackend())  # type: ignore[arg-type]
    scope = {"type": "http", "method": "GET", "path": "-", "raw_path": raw_path}
    scope["root_path"] = root_path
    match = routes.match(scope)
    assert (match[1] if match else None) == found
    if match:
        assert match[0].rpc_path.endswith("/Get")
