"""The gateway's protojson is ``json_format``'s, byte for byte, for every message of the contract.

The gateway renders responses and stream messages with its own compiled
renderer (``agentplane.gateway.protojson``) for speed; what it must produce is
what it produced with ``json_format.MessageToDict`` (proto field names, every
field without presence, enums by name) and ``json.dumps`` (compact, UTF-8):
these tests pin that on the wire-compat samples of every message type, on
fresh (empty) messages, and on the values a renderer gets wrong first.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from agentplane.clients.grpcio import session_pb2 as pb
from agentplane.gateway.codec import dumps, render
from agentplane.gateway.protojson import to_json
from tests.contract.test_wire_compat import SAMPLES, cases, message_types, pb_class


def reference_bytes(message: Message) -> bytes:
    """What the gateway sent before its own renderer: these options, this json.dumps."""
    value = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def assert_identical(message: Message) -> None:
    expected = reference_bytes(message)
    assert dumps(render(message)) == expected
    assert to_json(message).encode() == expected  # written straight, no dict between


def assert_fails_identically(message: Message) -> None:
    """Both renderers refuse ``message`` with json_format's own error and words."""
    with pytest.raises(json_format.SerializeToJsonError) as raised:
        render(message)
    with pytest.raises(json_format.SerializeToJsonError) as written:
        to_json(message)
    with pytest.raises(json_format.SerializeToJsonError) as expected:
        reference_bytes(message)
    assert str(raised.value) == str(written.value) == str(expected.value)


@pytest.mark.parametrize(("name", "index"), cases())
def test_every_sample_renders_as_json_format_does(name: str, index: int) -> None:
    message = json_format.ParseDict(SAMPLES[name][index], pb_class(name)())
    assert_identical(message)


@pytest.mark.parametrize("name", sorted(message_types()))
def test_every_empty_message_renders_as_json_format_does(name: str) -> None:
    assert_identical(pb_class(name)())


def _metrics_values() -> list[float]:
    return [0.0, -0.0, 1.5, 1e300, 5e-324, math.inf, -math.inf, math.nan, 2**53 + 1.0]


@pytest.mark.parametrize("value", _metrics_values(), ids=repr)
def test_doubles_render_as_json_format_does(value: float) -> None:
    assert_identical(pb.MetricsUpdated(metrics={"m": value}))


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_a_struct_with_a_non_finite_number_fails_as_json_format_does(value: float) -> None:
    session = pb.Session(session_id="s")
    session.metadata.update({"x": value})
    assert_fails_identically(session)


def test_edge_values_render_as_json_format_does() -> None:
    samples: list[dict[str, Any]] = [SAMPLES["Session"][0]]
    session = json_format.ParseDict(samples[0], pb.Session())
    session.session_id = 'é\u2028"\\\n\x00🙂'  # non-ASCII, escapes, a separator JSON allows
    session.state = 99  # an enum value this build does not know (open enum: the number)
    session.metadata.update({"k": [1, 2.5, None, True, "é"], "n": {"x": -0.0}})
    assert_identical(session)
    for wkt in (session.metadata, session.metadata["k"], session.session_started_at):
        assert render(wkt) == json_format.MessageToDict(wkt)
    assert_identical(pb.EventsGap(after_cursor=2**64 - 1, next_cursor=2**63))
    assert_identical(pb.MetricsUpdated(metrics={"a\u00e9": 0.1, "b": 1e-7}))


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(0, 0), (1_764_547_200, 0), (1_764_547_200, 5_000_000), (1_764_547_200, 123_456_000),
     (1_764_547_200, 1), (-62_135_596_800, 0), (253_402_300_799, 999_999_999)],
)  # fmt: skip
def test_timestamps_render_as_json_format_does_first_time_and_again(
    seconds: int, nanos: int
) -> None:
    session = pb.Session(session_id="s")
    session.session_started_at.seconds, session.session_started_at.nanos = seconds, nanos
    assert_identical(session)
    assert_identical(session)  # the second time its text is reused


def test_timestamps_across_the_whole_range_render_as_json_format_does() -> None:
    import random

    from google.protobuf import timestamp_pb2

    from agentplane.gateway.protojson import to_dict

    draw = random.Random(16)
    value = timestamp_pb2.Timestamp()
    for _ in range(20_000):
        value.seconds = draw.randint(-62_135_596_800, 253_402_300_799)
        value.nanos = draw.choice([0, 1, 999_999_999, draw.randrange(10**9)])
        value.nanos -= value.nanos % draw.choice([1, 1000, 1_000_000])
        assert to_dict(value) == value.ToJsonString()


def test_an_out_of_range_timestamp_fails_as_json_format_does() -> None:
    session = pb.Session(session_id="s")
    session.session_started_at.seconds = 253_402_300_800  # year 10000
    for _ in range(2):  # the second time too (nothing kept of a failure)
        assert_fails_identically(session)


def _kitchen_sink() -> Any:
    """A proto3 message with every kind of field the contract does not have (yet)."""
    from google.protobuf import (
        descriptor_pb2,
        descriptor_pool,
        duration_pb2,
        message_factory,
        timestamp_pb2,
        wrappers_pb2,
    )

    pool = descriptor_pool.DescriptorPool()
    for module in (timestamp_pb2, duration_pb2, wrappers_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        pool.AddSerializedFile(proto.SerializeToString())
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="sink.proto", package="sink", syntax="proto3",
        dependency=["google/protobuf/timestamp.proto", "google/protobuf/duration.proto",
                    "google/protobuf/wrappers.proto"],
    )  # fmt: skip
    color = file.enum_type.add(name="Color")
    for number, name in enumerate(["COLOR_UNSPECIFIED", "RED", "GREEN"]):
        color.value.add(name=name, number=number)
    inner = file.message_type.add(name="Inner")
    inner.field.add(
        name="when", number=1, type=f.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp"
    )
    inner.field.add(name="n", number=2, type=f.TYPE_INT32)
    sink = file.message_type.add(name="Sink")
    for entry_name, key_type, value_type, value_type_name in (
        ("FlagsEntry", f.TYPE_BOOL, f.TYPE_INT64, ""),
        ("InnersEntry", f.TYPE_STRING, f.TYPE_MESSAGE, ".sink.Inner"),
        ("NumbersEntry", f.TYPE_UINT32, f.TYPE_DOUBLE, ""),
    ):
        entry = sink.nested_type.add(name=entry_name)
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, type=key_type, label=f.LABEL_OPTIONAL)
        value = entry.field.add(name="value", number=2, type=value_type, label=f.LABEL_OPTIONAL)
        if value_type_name:
            value.type_name = value_type_name
    fields: list[tuple[str, int, int, str]] = [
        ("flags", f.TYPE_MESSAGE, f.LABEL_REPEATED, ".sink.Sink.FlagsEntry"),
        ("inners", f.TYPE_MESSAGE, f.LABEL_REPEATED, ".sink.Sink.InnersEntry"),
        ("numbers", f.TYPE_MESSAGE, f.LABEL_REPEATED, ".sink.Sink.NumbersEntry"),
        ("floats", f.TYPE_FLOAT, f.LABEL_REPEATED, ""),
        ("blob", f.TYPE_BYTES, f.LABEL_OPTIONAL, ""),
        ("big", f.TYPE_UINT64, f.LABEL_OPTIONAL, ""),
        ("neg", f.TYPE_SINT64, f.LABEL_OPTIONAL, ""),
        ("color", f.TYPE_ENUM, f.LABEL_OPTIONAL, ".sink.Color"),
        ("colors", f.TYPE_ENUM, f.LABEL_REPEATED, ".sink.Color"),
        ("inner", f.TYPE_MESSAGE, f.LABEL_OPTIONAL, ".sink.Inner"),
        ("items", f.TYPE_MESSAGE, f.LABEL_REPEATED, ".sink.Inner"),
        ("took", f.TYPE_MESSAGE, f.LABEL_OPTIONAL, ".google.protobuf.Duration"),
        ("maybe", f.TYPE_MESSAGE, f.LABEL_OPTIONAL, ".google.protobuf.StringValue"),
        ("flag", f.TYPE_BOOL, f.LABEL_OPTIONAL, ""),
        ("ratio", f.TYPE_DOUBLE, f.LABEL_OPTIONAL, ""),
        ("texts", f.TYPE_STRING, f.LABEL_REPEATED, ""),
    ]
    for number, (name, kind, label, type_name) in enumerate(fields, start=1):
        added = sink.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            added.type_name = type_name
    pool.AddSerializedFile(file.SerializeToString())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("sink.Sink"))


def test_every_kind_of_field_is_written_as_json_format_does() -> None:
    sink_class = _kitchen_sink()
    assert_identical(sink_class())
    sink = sink_class()
    sink.flags[True] = -(2**63)
    sink.flags[False] = 7
    sink.inners["é\n"].n = -3
    sink.inners["b"].when.seconds = 1_764_547_200
    sink.numbers[4_000_000_000] = 0.1
    sink.numbers[1] = math.inf
    sink.floats.extend([0.1, 1e-7, -0.0, 3.4e38])
    sink.blob = b"\x00\xff binary"
    sink.big = 2**64 - 1
    sink.neg = -(2**63)
    sink.color = 2
    sink.colors.extend([1, 0, 57])  # 57: unknown, printed as a number
    sink.inner.n = 2**31 - 1
    sink.items.add().n = 1
    sink.items.add()
    sink.took.seconds, sink.took.nanos = 3, 500_000_000
    sink.maybe.value = "wrapped"
    sink.flag = True
    sink.ratio = math.nan
    sink.texts.extend(["a", '"q"', "\u2028", ""])
    assert_identical(sink)
