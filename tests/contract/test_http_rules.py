"""The HTTP bindings and the documentation of the contract, read from compiled descriptors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from agentplane.clients.grpcio import session_service_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "proto"

Binding = tuple[str, str, str, str]  # (HTTP method, path template, body, response_body)

# The reference agent server's seven routes, then the call-scoped routes.
EXPECTED: dict[str, set[Binding]] = {
    "Start": {
        ("POST", "/sessions", "*", ""),
        ("POST", "/calls/{call_id}/sessions", "*", ""),
    },
    "Close": {
        ("DELETE", "/sessions/{session_id}", "", "session"),
        ("POST", "/sessions/{session_id}/close", "*", "session"),
        ("DELETE", "/calls/{call_id}/sessions/{session_id}", "", "session"),
        ("POST", "/calls/{call_id}/sessions/{session_id}/close", "*", "session"),
    },
    "Get": {
        ("GET", "/sessions/{session_id}", "", "session"),
        ("GET", "/calls/{call_id}/sessions/{session_id}", "", "session"),
    },
    "Metrics": {
        ("GET", "/sessions/{session_id}/metrics", "", ""),
        ("GET", "/calls/{call_id}/sessions/{session_id}/metrics", "", ""),
    },
    "ListSessions": {
        ("GET", "/sessions", "", ""),
        ("GET", "/calls/{call_id}/sessions", "", ""),
    },
    "StreamEvents": {
        ("GET", "/sessions/{session_id}/events", "", ""),
        ("GET", "/events", "", ""),
    },
}
REFERENCE_ROUTES = {
    ("POST", "/sessions"),
    ("DELETE", "/sessions/{session_id}"),
    ("POST", "/sessions/{session_id}/close"),
    ("GET", "/sessions/{session_id}"),
    ("GET", "/sessions/{session_id}/metrics"),
    ("GET", "/sessions/{session_id}/events"),
    ("GET", "/events"),
}
SERVICE = session_service_pb2.DESCRIPTOR.services_by_name["SessionService"]


def bindings(rule: http_pb2.HttpRule) -> Iterator[Binding]:
    pattern = rule.WhichOneof("pattern")
    assert pattern is not None and pattern != "custom", f"unexpected pattern {pattern}"
    yield pattern.upper(), getattr(rule, pattern), rule.body, rule.response_body
    for extra in rule.additional_bindings:
        assert not extra.additional_bindings, "additional bindings must not nest"
        yield from bindings(extra)


def http_bindings() -> dict[str, list[Binding]]:
    found: dict[str, list[Binding]] = {}
    for method in SERVICE.methods:
        options = method.GetOptions()
        assert options.HasExtension(annotations_pb2.http), f"{method.name} has no google.api.http"
        found[method.name] = list(bindings(options.Extensions[annotations_pb2.http]))
    return found


def test_every_rpc_has_exactly_the_expected_bindings() -> None:
    found = http_bindings()
    assert set(found) == set(EXPECTED)
    for name, expected in EXPECTED.items():
        assert len(found[name]) == len(set(found[name])), f"{name} has a duplicate binding"
        assert set(found[name]) == expected, name


def test_reference_routes_are_primary_or_additional_bindings() -> None:
    routes = {(method, path) for bound in http_bindings().values() for method, path, _, _ in bound}
    assert routes >= REFERENCE_ROUTES
    # Each route is bound once in the whole service, so the gateway's routing is unambiguous.
    flat = [(method, path) for bound in http_bindings().values() for method, path, _, _ in bound]
    assert len(flat) == len(set(flat))


def test_path_variables_are_request_fields_and_bodies_fit_the_verb() -> None:
    for method in SERVICE.methods:
        request_fields = {f.name for f in method.input_type.fields}
        response_fields = {f.name for f in method.output_type.fields}
        for verb, path, body, response_body in http_bindings()[method.name]:
            variables = {part[1:-1] for part in path.split("/") if part.startswith("{")}
            assert variables <= request_fields, (method.name, path)
            if verb in ("GET", "DELETE"):
                assert body == "", f"{verb} {path} must not take a body"
            assert body in ("", "*") or body in request_fields
            assert response_body == "" or response_body in response_fields


def test_streaming_is_only_stream_events() -> None:
    streaming = {m.name for m in SERVICE.methods if m.server_streaming or m.client_streaming}
    assert streaming == {"StreamEvents"}
    assert not SERVICE.methods_by_name["StreamEvents"].client_streaming


# --- documentation -----------------------------------------------------------------

# FileDescriptorProto / DescriptorProto / EnumDescriptorProto / ServiceDescriptorProto
# field numbers, as used in SourceCodeInfo.Location.path.
MESSAGE, ENUM, SERVICE_TYPE = 4, 5, 6
FIELD, NESTED, NESTED_ENUM, ONEOF = 2, 3, 4, 8
ENUM_VALUE, METHOD = 2, 2


def compile_with_comments(proto_dir: Path, out: Path) -> descriptor_pb2.FileDescriptorSet:
    """agentplane/v1 compiled by protoc with its comments (SourceCodeInfo)."""
    files = sorted(
        p.relative_to(proto_dir).as_posix() for p in (proto_dir / "agentplane").rglob("*.proto")
    )
    assert files, f"no proto files under {proto_dir}"
    command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}", "--include_source_info"]
    subprocess.run(
        [*command, f"--descriptor_set_out={out}", *files], check=True, capture_output=True
    )
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


@pytest.fixture(scope="module")
def source_info(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    return compile_with_comments(PROTO_DIR, tmp_path_factory.mktemp("descriptors") / "set.binpb")


def documented_elements(
    file: descriptor_pb2.FileDescriptorProto,
) -> Iterator[tuple[str, tuple[int, ...]]]:
    """(name, SourceCodeInfo path) of every service, method, message, field, oneof, enum and value."""

    def enum(
        e: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], scope: str
    ) -> Iterator[tuple[str, tuple[int, ...]]]:
        yield f"{scope}{e.name}", path
        for i, value in enumerate(e.value):
            yield f"{scope}{e.name}.{value.name}", (*path, ENUM_VALUE, i)

    def message(
        m: descriptor_pb2.DescriptorProto, path: tuple[int, ...], scope: str
    ) -> Iterator[tuple[str, tuple[int, ...]]]:
        if m.options.map_entry:
            return  # synthesized for map<,> fields
        name = f"{scope}{m.name}"
        yield name, path
        for i, field in enumerate(m.field):
            yield f"{name}.{field.name}", (*path, FIELD, i)
        for i, oneof in enumerate(m.oneof_decl):
            synthetic = all(
                f.proto3_optional
                for f in m.field
                if f.HasField("oneof_index") and f.oneof_index == i
            )
            if not synthetic:
                yield f"{name}.{oneof.name}", (*path, ONEOF, i)
        for i, nested in enumerate(m.nested_type):
            yield from message(nested, (*path, NESTED, i), f"{name}.")
        for i, nested_enum in enumerate(m.enum_type):
            yield from enum(nested_enum, (*path, NESTED_ENUM, i), f"{name}.")

    for i, m in enumerate(file.message_type):
        yield from message(m, (MESSAGE, i), "")
    for i, e in enumerate(file.enum_type):
        yield from enum(e, (ENUM, i), "")
    for i, service in enumerate(file.service):
        yield service.name, (SERVICE_TYPE, i)
        for j, method in enumerate(service.method):
            yield f"{service.name}.{method.name}", (SERVICE_TYPE, i, METHOD, j)


def undocumented(descriptors: descriptor_pb2.FileDescriptorSet) -> tuple[list[str], int]:
    """The elements of agentplane.* without a leading comment, and how many were checked."""
    checked = 0
    missing: list[str] = []
    for file in descriptors.file:
        if not file.package.startswith("agentplane."):
            continue
        comments = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}
        for name, path in documented_elements(file):
            checked += 1
            if not comments.get(path, "").strip():
                missing.append(f"{file.name}: {name}")
    return missing, checked


def test_every_element_has_a_leading_comment(source_info: descriptor_pb2.FileDescriptorSet) -> None:
    missing, checked = undocumented(source_info)
    assert not missing, "undocumented:\n" + "\n".join(missing)
    # 2 enums + 13 values, 18 messages + their 50-odd fields, 1 oneof, 1 service + 5 methods.
    assert checked > 90


def test_the_walk_covers_every_kind_of_element(
    source_info: descriptor_pb2.FileDescriptorSet,
) -> None:
    names = {name for file in source_info.file for name, _ in documented_elements(file)}
    for expected in (
        "SessionService",
        "SessionService.StreamEvents",
        "StreamEventsRequest",
        "StreamEventsRequest.after_cursor",
        "StreamEventsResponse.event",
        "StreamEventsResponse.gap",
        "SessionState",
        "SessionState.SESSION_STATE_ENDED",
        "MetricsResponse.metrics",
    ):
        assert expected in names
    assert "StreamEventsRequest._after_cursor" not in names  # synthetic oneof of `optional`
    assert not any("MetricsEntry" in name for name in names)  # synthetic map entry


def test_a_missing_comment_is_reported(tmp_path: Path) -> None:
    proto_dir = tmp_path / "proto"
    shutil.copytree(PROTO_DIR, proto_dir)
    service = proto_dir / "agentplane" / "v1" / "session_service.proto"
    text = service.read_text()
    comment = "  // The session to read.\n"
    assert text.count(comment) == 1
    service.write_text(text.replace(comment, ""))
    enum_file = proto_dir / "agentplane" / "v1" / "session.proto"
    text = enum_file.read_text()
    comment = "  // The node that ran the session disappeared (multi-node deployments).\n"
    assert text.count(comment) == 1
    enum_file.write_text(text.replace(comment, ""))

    missing, _ = undocumented(compile_with_comments(proto_dir, tmp_path / "set.binpb"))
    assert missing == [
        "agentplane/v1/session.proto: EndReason.END_REASON_NODE_LOST",
        "agentplane/v1/session_service.proto: GetRequest.session_id",
    ]
