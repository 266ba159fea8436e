"""The gateway is generic: it imports nothing of agentplane, and serves any annotated service."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from grpclib.const import Status

from agentplane.gateway import Binding, BindingError, CallInfo, RpcError, create_app
from agentplane.gateway.streaming import stream_response
from agentplane.http.server import HttpServer

GATEWAY = Path(__file__).resolve().parents[2] / "gateway" / "agentplane" / "gateway"


def _sources() -> list[Path]:
    found = sorted(GATEWAY.glob("*.py"))
    assert len(found) > 5, GATEWAY
    return found


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.name)
def test_the_gateway_imports_no_other_agentplane_package(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level <= 1, f"{path.name}:{node.lineno} reaches out of agentplane.gateway"
            names = [node.module or ""] if node.level == 0 else []
        else:
            continue
        for name in names:
            outside = name.startswith("agentplane.") and not name.startswith("agentplane.gateway")
            assert not outside and name != "agentplane", f"{path.name}:{node.lineno} imports {name}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.name)
def test_the_gateway_hard_codes_nothing_of_agentplane(path: Path) -> None:
    # Names, titles, realms, scope keys: whatever is agentplane's comes in as an option.
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert "agentplane" not in node.value.lower(), f"{path.name}:{node.lineno}"


def _shelves() -> ServiceDescriptor:
    """``example.v1.Shelves``: CreateShelf (POST /shelves) and GetShelf (GET /shelves/{name})."""
    pool = descriptor_pool.DescriptorPool()
    for module in (descriptor_pb2, http_pb2, annotations_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        pool.AddSerializedFile(proto.SerializeToString())
    file = descriptor_pb2.FileDescriptorProto(
        name="shelves.proto",
        package="example.v1",
        syntax="proto3",
        dependency=["google/api/annotations.proto"],
    )
    shelf = file.message_type.add(name="Shelf")
    shelf.field.add(
        name="name",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    service = file.service.add(name="Shelves")
    for name, rule in (
        ("CreateShelf", http_pb2.HttpRule(post="/shelves", body="*")),
        ("GetShelf", http_pb2.HttpRule(get="/shelves/{name}")),
    ):
        method = service.method.add(
            name=name, input_type=".example.v1.Shelf", output_type=".example.v1.Shelf"
        )
        method.options.Extensions[annotations_pb2.http].CopyFrom(rule)
    pool.AddSerializedFile(file.SerializeToString())
    return pool.FindServiceByName("example.v1.Shelves")


class ShelvesBackend:
    """Echoes the request; refuses callers without an authorization header.

    Shelf "broken" fails as a backend should not (not with an ``RpcError``).
    """

    async def unary(self, binding: Binding, request: Message, call: CallInfo) -> Message:
        if "authorization" not in dict(call.metadata):
            raise RpcError(Status.UNAUTHENTICATED, "who are you?")
        if getattr(request, "name", "") == "broken":
            raise RuntimeError("backend bug: secret 42")
        reply = message_factory.GetMessageClass(binding.method.output_type)()
        reply.CopyFrom(request)
        return reply

    async def open_stream(
        self, binding: Binding, request: Message, call: CallInfo
    ) -> AsyncIterator[Message]:
        raise RpcError(Status.UNIMPLEMENTED, "no streams here")

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        pass


async def test_any_annotated_service_is_served_with_its_own_options() -> None:
    shelves = _shelves()
    app = create_app(
        ShelvesBackend(),
        services=[shelves],
        success_status={"/example.v1.Shelves/CreateShelf": 201},
        realm='library "east"',
    )
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, headers={"authorization": "x"}) as http:
            created = await http.post("/shelves", json={"name": "poetry"})
            assert (created.status_code, created.json()) == (201, {"name": "poetry"})
            got = await http.get("/shelves/poetry")
            assert (got.status_code, got.json()) == (200, {"name": "poetry"})
            doc = (await http.get("/openapi.json")).json()
            assert doc["info"] == {"title": "example.v1.Shelves", "version": "version not set"}
            assert "201" in doc["paths"]["/shelves"]["post"]["responses"]
            assert (await http.get("/health")).json() == {"status": "ok"}
            # A backend's bug is a 500 in the one error shape, telling nothing of it.
            broken = await http.get("/shelves/broken")
            assert broken.status_code == 500
            assert broken.headers["content-type"] == "application/json"
            assert broken.json() == {"code": 13, "message": "internal error", "details": []}
        async with httpx.AsyncClient(base_url=base) as anonymous:
            refused = await anonymous.get("/shelves/poetry")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == 'Bearer realm="library \\"east\\""'
            assert refused.json() == {"code": 16, "message": "who are you?", "details": []}
    finally:
        await server.stop(2)


def test_a_success_status_must_name_a_served_rpc_and_a_2xx_status() -> None:
    shelves = _shelves()
    with pytest.raises(BindingError, match="no RPC"):
        create_app(ShelvesBackend(), services=[shelves], success_status={"/x.Y/Z": 201})
    with pytest.raises(BindingError, match="2xx"):
        create_app(
            ShelvesBackend(),
            services=[shelves],
            success_status={"/example.v1.Shelves/GetShelf": 302},
        )
    # No realm: a bare Bearer challenge.
    assert RpcError(Status.UNAUTHENTICATED, "x").response().headers["www-authenticate"] == "Bearer"


async def test_a_stream_failing_unexpectedly_ends_with_an_internal_error_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from google.protobuf import struct_pb2

    async def messages() -> AsyncIterator[Any]:
        yield struct_pb2.Value(string_value="x")
        raise RuntimeError("backend bug: secret 42")

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client stays
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(stream_response(messages(), receive, send), 5)
    lines = b"".join(m.get("body", b"") for m in sent[1:]).decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"result": "x"},
        {"error": {"code": 13, "message": "internal error", "details": []}},
    ]
    assert "secret" not in lines[-1]
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR


async def test_routes_ahead_of_the_bindings_keep_their_paths() -> None:
    """``RpcDispatch`` serves bindings without the Router's walk, never ahead of a route."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    from agentplane.gateway.dispatch import direct_bindings

    async def special(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the app's own route")

    shelves = _shelves()
    own = Route("/shelves/special", special, methods=["GET"])
    app = create_app(ShelvesBackend(), services=[shelves], extra_routes=[own])
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, headers={"authorization": "x"}) as http:
            assert (await http.get("/shelves/special")).text == "the app's own route"
            assert (await http.get("/shelves/poetry")).json() == {"name": "poetry"}
    finally:
        await server.stop(2)
    # Which bindings skip the Router: those whose first segment no route ahead could take.
    bindings = app.state.bindings
    assert direct_bindings(bindings, [Route("/health", special)]) == bindings
    assert direct_bindings(bindings, [own]) == []
    assert direct_bindings(bindings, [Route("/{anything}", special)]) == []
    assert direct_bindings(bindings, [Mount("", routes=[])]) == []
    assert direct_bindings(bindings, [Route("/", special), Mount("/demo", routes=[])]) == bindings


class _Recorder:
    """A user's middleware: notes every path it sees."""

    def __init__(self, app: Any, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append(scope["path"])
        await self.app(scope, receive, send)


def _layers(app: Any) -> list[str]:
    names = []
    layer = app.build_middleware_stack()
    while layer is not None and len(names) < 10:
        names.append(type(layer).__name__)
        layer = getattr(layer, "app", None)
    return names


@pytest.mark.parametrize("added", [False, True], ids=["own middleware only", "a user's added"])
async def test_the_bindings_are_served_outside_starlettes_error_layer_until_middleware_is_added(
    added: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Alone, CORS and RpcDispatch sit outside ServerErrorMiddleware (a coroutine per send
    less); with a user's middleware everything is inside it, that middleware seeing the
    bindings. Either way a backend's bug is the gateway's 500, logged once."""
    seen: list[str] = []
    app = create_app(ShelvesBackend(), services=[_shelves()])
    if added:
        app.add_middleware(_Recorder, seen=seen)
    layers = _layers(app)
    if added:
        assert layers[:4] == ["ServerErrorMiddleware", "_Recorder", "Cors", "RpcDispatch"]
    else:
        assert layers[:3] == ["Cors", "RpcDispatch", "ServerErrorMiddleware"]
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, headers={"authorization": "x"}) as http:
            assert (await http.get("/shelves/poetry")).json() == {"name": "poetry"}
            caplog.clear()
            broken = await http.get("/shelves/broken")
            assert broken.status_code == 500
            assert broken.json() == {"code": 13, "message": "internal error", "details": []}
            assert broken.headers["vary"] == "Origin"  # CORS wraps the answer
            assert (await http.get("/health")).status_code == 200
    finally:
        await server.stop(2)
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert logged[0].exc_info[0] is RuntimeError
    assert seen == (["/shelves/poetry", "/shelves/broken", "/health"] if added else [])
