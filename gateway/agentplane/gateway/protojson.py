"""protojson rendering, compiled once per message type.

``to_dict(message)`` is ``json_format.MessageToDict(message,
preserving_proto_field_name=True, always_print_fields_with_no_presence=True)``,
key order included, at a fraction of its cost: ``json_format`` decides for every
field of every message what kind it is (message, enum, string, int64...) and
looks its name up; here each message type gets, the first time it is rendered,
a table of its fields with one converter each, and the defaults of its fields
without presence. What is rare or subtle (floats that are NaN or infinite,
bytes, closed enums with unknown values, well-known types other than
Timestamp, Struct, Value and ListValue, extensions) goes to ``json_format``'s own printer, so the output
stays its output; ``tests/gateway/test_protojson.py`` compares both on every
message of the contract.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from json.encoder import c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring as _encode_string
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

# Descriptors are typed Any: upb's and the pure-Python classes differ in their stubs.
_PRINTER: Any = json_format._Printer(  # type: ignore[attr-defined]
    preserving_proto_field_name=True, always_print_fields_with_no_presence=True
)
_Convert = Callable[[Any], Any]
_Write = Callable[[Any], str]
_INT64 = frozenset(
    {
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT64,
    }
)


class _Compiled:
    """One message type's fields: converter by field, and the defaults to add."""

    __slots__ = ("converters", "default_texts", "defaults", "writers")

    def __init__(self) -> None:
        # Filled after registration, so recursive types find themselves.
        self.converters: dict[Any, tuple[str, _Convert]] = {}
        # (name, factory of the default's JSON), in declaration order.
        self.defaults: list[tuple[str, Callable[[], Any]]] = []
        # For to_json: '"name":' and a writer of the value's JSON text, by field;
        # (name, '"name":<default>') in declaration order.
        self.writers: dict[Any, tuple[str, str, _Write]] = {}
        self.default_texts: list[tuple[str, str]] = []

    def fill(self, descriptor: Any) -> None:
        for field in descriptor.fields:
            key = _encode_string(field.name) + ":"
            self.converters[field] = (field.name, _field_converter(field))
            self.writers[field] = (field.name, key, _field_writer(field))
            if field.has_presence:
                continue
            if _is_map(field):
                self.defaults.append((field.name, dict))
            elif field.is_repeated:
                self.defaults.append((field.name, list))
            else:
                default = _PRINTER._FieldToJsonObject(field, field.default_value)
                self.defaults.append((field.name, _constant(default)))
            self.default_texts.append((field.name, key + compact_json(self.defaults[-1][1]())))


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


_COMPILED: dict[Any, _Compiled] = {}


def to_dict(message: Message) -> Any:
    """``message`` as ``MessageToDict`` with proto field names and no-presence fields."""
    descriptor: Any = message.DESCRIPTOR
    compiled = _COMPILED.get(descriptor)
    if compiled is None:
        well_known = _WELL_KNOWN.get(descriptor.full_name)
        if well_known is not None:
            return well_known(message)
        if descriptor.full_name.startswith("google.protobuf."):
            return _PRINTER._MessageToJsonObject(message)  # the other well-known types
        compiled = _compile(descriptor)
    converters = compiled.converters
    js: dict[str, Any] = {}
    try:
        for field, value in message.ListFields():
            entry = converters.get(field)
            if entry is None:  # an extension
                return _PRINTER._MessageToJsonObject(message)
            name, convert = entry
            js[name] = convert(value)
    except ValueError:
        # What the printer refuses (NaN in a Struct): its own error, as it words it.
        return _PRINTER._MessageToJsonObject(message)
    for name, default in compiled.defaults:
        if name not in js:
            js[name] = default()
    return js


def _compact_encoder() -> Callable[[Any], str]:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``, its encoder built once.

    ``json.dumps`` builds a ``JSONEncoder`` and then a C encoder per call; here
    the C encoder (json's own, when CPython has it) is built once and called
    directly, with no circular-reference bookkeeping: what it is given is
    fresh dicts and lists from the renderer, never a cycle.
    """
    python = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    if c_make_encoder is None:
        return python.encode
    encode = c_make_encoder(None, python.default, _encode_string, None, ":", ",",
                            False, False, True)  # fmt: skip

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


compact_json = _compact_encoder()


def to_json(message: Message) -> str:
    """``compact_json(to_dict(message))``, written straight from the message, no dict between.

    Each field's text comes from a writer compiled with its type (``_field_writer``);
    whatever ``to_dict`` hands to ``json_format``'s printer (an extension, a
    value it refuses) is rendered through ``to_dict``, so the text and the
    errors stay the same.
    """
    descriptor: Any = message.DESCRIPTOR
    compiled = _COMPILED.get(descriptor)
    if compiled is None:
        well_known = _WELL_KNOWN_TEXT.get(descriptor.full_name)
        if well_known is not None:
            return well_known(message)
        if descriptor.full_name.startswith("google.protobuf."):
            return compact_json(to_dict(message))
        compiled = _compile(descriptor)
    writers = compiled.writers
    parts: list[str] = []
    present: set[str] = set()
    try:
        for field, value in message.ListFields():
            entry = writers.get(field)
            if entry is None:  # an extension
                return compact_json(to_dict(message))
            name, key, write = entry
            parts.append(key + write(value))
            present.add(name)
    except ValueError:
        return compact_json(to_dict(message))  # the printer's own error
    for name, text in compiled.default_texts:
        if name not in present:
            parts.append(text)
    return "{" + ",".join(parts) + "}"


def _value(value: Any) -> Any:
    """A ``google.protobuf.Value`` as ``_Printer._ValueMessageToJsonObject`` renders it."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        # NaN and infinities: the printer refuses them, with its message.
        return number if number - number == 0 else _PRINTER._ValueMessageToJsonObject(value)
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return _struct(value.struct_value)
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    return None  # null_value, or no kind at all


def _struct(struct: Any) -> dict[str, Any]:
    fields = struct.fields
    return {key: _value(fields[key]) for key in fields}


# Timestamp.ToJsonString builds a datetime and a timedelta per call; its text
# is built here from integers, the date part kept per day (times cluster).
_FIRST, _LAST = -62_135_596_800, 253_402_300_799  # 0001-01-01 .. 9999-12-31T23:59:59
_EPOCH_DAY = datetime.date(1970, 1, 1).toordinal()
_DATES: dict[int, str] = {}
_DATES_KEPT = 4096


# The text of recent times as well: a session's start is rendered on every read of it.
_TIMES: dict[tuple[int, int], str] = {}
_TIMES_KEPT = 4096


def _timestamp(value: Any) -> str:
    """RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, exactly as ``ToJsonString``."""
    seconds, nanos = value.seconds, value.nanos
    key = (seconds, nanos)
    text = _TIMES.get(key)
    if text is None:
        text = _timestamp_text(seconds, nanos, value)
        if len(_TIMES) >= _TIMES_KEPT:
            _TIMES.clear()
        _TIMES[key] = text
    return text


def _timestamp_text(seconds: int, nanos: int, value: Any) -> str:
    if not (_FIRST <= seconds <= _LAST and 0 <= nanos < 1_000_000_000):
        return str(value.ToJsonString())  # out of range: its own error
    days, rest = divmod(seconds, 86_400)
    date = _DATES.get(days)
    if date is None:
        if len(_DATES) >= _DATES_KEPT:
            _DATES.clear()
        date = _DATES[days] = datetime.date.fromordinal(_EPOCH_DAY + days).isoformat()
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    # %-formatting: half the time of f-strings with format specs (CPython 3.11).
    if nanos == 0:
        return "%sT%02d:%02d:%02dZ" % (date, hours, minutes, secs)  # noqa: UP031
    if nanos % 1_000_000 == 0:
        return "%sT%02d:%02d:%02d.%03dZ" % (date, hours, minutes, secs, nanos // 1_000_000)  # noqa: UP031
    if nanos % 1000 == 0:
        return "%sT%02d:%02d:%02d.%06dZ" % (date, hours, minutes, secs, nanos // 1000)  # noqa: UP031
    return "%sT%02d:%02d:%02d.%09dZ" % (date, hours, minutes, secs, nanos)  # noqa: UP031


# The well-known types the contract uses, rendered here; the others go to the printer.
_WELL_KNOWN: dict[str, _Convert] = {
    "google.protobuf.Timestamp": _timestamp,
    "google.protobuf.Struct": _struct,
    "google.protobuf.Value": _value,
    "google.protobuf.ListValue": lambda value: [_value(item) for item in value.values],
}


def _compile(descriptor: Any) -> _Compiled:
    compiled = _COMPILED[descriptor] = _Compiled()
    compiled.fill(descriptor)
    return compiled


def _is_map(field: Any) -> bool:
    message_type = field.message_type
    return message_type is not None and message_type.GetOptions().map_entry


def _field_converter(field: Any) -> _Convert:
    if _is_map(field):
        value_field = field.message_type.fields_by_name["value"]
        convert_value = _value_converter(value_field)
        if field.message_type.fields_by_name["key"].cpp_type == FieldDescriptor.CPPTYPE_BOOL:
            return lambda value: {
                ("true" if key else "false"): convert_value(value[key]) for key in value
            }
        return lambda value: {str(key): convert_value(value[key]) for key in value}
    convert = _value_converter(field)
    if field.is_repeated:
        return lambda value: [convert(item) for item in value]
    return convert


def _enum_names(field: Any) -> dict[int, str]:
    """Number -> name of ``field``'s enum, when the printer would print the plain name."""
    enum_type = field.enum_type
    if enum_type.full_name == "google.protobuf.NullValue" or any(
        value.GetOptions().ListFields() for value in enum_type.values
    ):
        return {}  # json_name options and the like: the printer knows them
    return {value.number: value.name for value in enum_type.values}


def _same(value: Any) -> Any:
    return value


def _value_converter(field: Any) -> _Convert:
    """One value of ``field`` as ``_Printer._FieldToJsonObject`` renders it."""
    cpp_type = field.cpp_type

    def reference(value: Any) -> Any:
        return _PRINTER._FieldToJsonObject(field, value)

    if cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        return _WELL_KNOWN.get(field.message_type.full_name, to_dict)
    if cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        enum_type = field.enum_type
        if enum_type.full_name == "google.protobuf.NullValue" or any(
            value.GetOptions().ListFields() for value in enum_type.values
        ):
            return reference  # json_name options and the like: the printer knows them
        names = _enum_names(field)
        if enum_type.is_closed:
            return lambda value: names[value] if value in names else reference(value)
        return lambda value: names.get(value, value)
    if cpp_type == FieldDescriptor.CPPTYPE_STRING:
        return _same if field.type == FieldDescriptor.TYPE_STRING else reference
    if cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return bool
    if cpp_type in _INT64:
        return str
    if cpp_type == FieldDescriptor.CPPTYPE_DOUBLE:
        # Finite doubles as they are; NaN and infinities (x - x is not 0) as the printer says.
        return lambda value: value if value - value == 0 else reference(value)
    if cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_UINT32):
        return _same
    return reference  # float: the printer's shortest repr


# to_json's writers: the text compact_json gives for what the converter above returns.
_WELL_KNOWN_TEXT: dict[str, _Write] = {
    "google.protobuf.Timestamp": lambda value: '"' + _timestamp(value) + '"',
    "google.protobuf.Struct": lambda value: compact_json(_struct(value)),
    "google.protobuf.Value": lambda value: compact_json(_value(value)),
    "google.protobuf.ListValue": lambda value: compact_json([_value(v) for v in value.values]),
}


def _field_writer(field: Any) -> _Write:
    if _is_map(field):
        value_field = field.message_type.fields_by_name["value"]
        write_value = _value_writer(value_field)
        if field.message_type.fields_by_name["key"].cpp_type == FieldDescriptor.CPPTYPE_BOOL:
            return lambda value: (
                "{"
                + ",".join(
                    ('"true":' if key else '"false":') + write_value(value[key]) for key in value
                )
                + "}"
            )
        return lambda value: (
            "{"
            + ",".join(_encode_string(str(key)) + ":" + write_value(value[key]) for key in value)
            + "}"
        )
    write = _value_writer(field)
    if field.is_repeated:
        return lambda value: "[" + ",".join([write(item) for item in value]) + "]"
    return write


def _value_writer(field: Any) -> _Write:
    """One value of ``field`` as compact JSON text: ``compact_json(converter(value))``."""
    convert = _value_converter(field)
    cpp_type = field.cpp_type
    if cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        return _WELL_KNOWN_TEXT.get(field.message_type.full_name, to_json)
    if cpp_type == FieldDescriptor.CPPTYPE_STRING and field.type == FieldDescriptor.TYPE_STRING:
        return _encode_string
    if cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return lambda value: "true" if value else "false"
    if cpp_type in _INT64:
        return lambda value: '"' + str(value) + '"'
    if cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_UINT32):
        return int.__repr__
    if cpp_type == FieldDescriptor.CPPTYPE_DOUBLE:
        # Finite: float's repr, as json writes it; NaN and infinities as the printer says.
        return lambda value: (
            float.__repr__(value) if value - value == 0 else compact_json(convert(value))
        )
    if cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        texts = {number: compact_json(name) for number, name in _enum_names(field).items()}
        return lambda value: texts.get(value) or compact_json(convert(value))
    return lambda value: compact_json(convert(value))  # bytes, float: the printer's value
