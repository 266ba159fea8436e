"""Protobuf requests from HTTP parts, and JSON from protobuf responses.

Rules of grpc-gateway: the body (``body: "*"`` or one field) is parsed first;
path variables then set their fields; remaining fields may come from the
query string (never for ``body: "*"``). JSON is protojson with proto field
names on the way out; on the way in both proto and lowerCamel names are
accepted and unknown fields are ignored. Whatever is wrong with the input
becomes an INVALID_ARGUMENT ``RpcError`` naming the field or the problem.

Request bodies are decoded by content type (``bodies.py``): JSON for
``application/json``; on beacon routes also ``text/plain`` (what
``navigator.sendBeacon`` sends for a string) and a body without a type (a
typeless Blob), and form fields for ``application/x-www-form-urlencoded`` and
``multipart/form-data``, each a field path as in a query string. A beacon
route is lenient (``RequestBuilder``'s ``lenient``): a body that is not a JSON object,
or a field whose value does not fit, is left out rather than refused, so a
beacon's request keeps what can be read of it (its ``close_token``, say).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from .bindings import Binding, resolve_field
from .bodies import NO_BODY, DecodedBody
from .errors import RpcError
from .protojson import compact_json, to_dict, to_json

# strconv.ParseBool's spellings, as grpc-gateway accepts them in paths and queries.
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def render(message: Message) -> Any:
    """protojson with proto field names; fields without presence always present.

    Scalars, maps and lists always appear (``"metrics": {}`` for a fresh
    session), so clients need no existence checks; fields with presence
    (messages, ``optional`` scalars such as ``close_token``) only when set.
    """
    return to_dict(message)  # MessageToDict with those options, compiled per type


def dumps(value: Any) -> bytes:
    """Compact JSON in UTF-8 (``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``)."""
    return compact_json(value).encode()


def body_renderer(response_body: str) -> Callable[[Message], bytes]:
    """The JSON a binding answers: of its ``response_body`` field, or ("") of the whole response.

    ``dumps(render(...))`` of it, written without the dict between.
    """
    if not response_body:
        return _whole_message

    def field_bytes(response: Message) -> bytes:
        return to_json(getattr(response, response_body)).encode()

    return field_bytes


def _whole_message(response: Message) -> bytes:
    return to_json(response).encode()


class RenderMemo:
    """``render(message)``, remembered for the last ``size`` message objects.

    Keyed by identity: each entry holds its message, so the ``id`` of a cached
    message cannot be reused by another object while the entry lives. A
    message handed out many times (an event to a thousand streams, the answer
    to a Get of a session that has not changed since) is rendered once, so a
    backend must never change a message it has handed out. Messages that are
    never shared (each proxied upstream message is its own object) are
    rendered once each, as without the memo; at most ``size`` of them are kept.
    """

    def __init__(self, render: Callable[[Message], bytes], size: int = 1024) -> None:
        self._render = render
        self.size = size
        self._entries: OrderedDict[int, tuple[Message, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __call__(self, message: Message) -> bytes:
        entry = self._entries.get(id(message))
        if entry is not None and entry[0] is message:
            return entry[1]
        chunk = self._render(message)
        self._entries[id(message)] = (message, chunk)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return chunk


class RequestBuilder:
    """The request message of one binding from the parts of an HTTP request.

    grpc-gateway's rules (above), with what they look up of the binding
    resolved once: built per binding at start-up, called per request. A path
    variable naming a top-level string field (a session's id) is set as it
    comes, the way protojson would set it; anything else converts by its
    field's type (``set_from_strings``).
    """

    __slots__ = ("_new", "_takes_query", "_text_fields", "binding")

    def __init__(self, binding: Binding) -> None:
        self.binding = binding
        self._new = binding.request_type
        strings = _string_fields(binding.request_type.DESCRIPTOR)
        self._text_fields = frozenset(
            path for path in binding.template.field_paths if strings.get(path) == path
        )
        # ``body: "*"`` takes every field: the query sets none.
        self._takes_query = binding.body != "*"

    def __call__(
        self,
        path_params: Mapping[str, str],
        query: Sequence[tuple[str, str]] = (),
        body: DecodedBody = NO_BODY,
        *,
        lenient: bool = False,
    ) -> Message:
        """The request; ``lenient`` (a beacon's): body fields that cannot be read are left
        out rather than refused."""
        binding = self.binding
        request = self._new()
        if binding.body and body.present:
            if body.form:
                for key, values in _group(body.form).items():
                    field_path = key if binding.body == "*" else f"{binding.body}.{key}"
                    try:
                        # Unknown fields are ignored, as in JSON bodies.
                        set_from_strings(
                            request, field_path, values, source="form field", ignore_unknown=True
                        )
                    except RpcError:
                        if not lenient:
                            raise
            elif body.json is not None:
                if lenient:
                    _salvage_body(binding, request, body.json)
                else:
                    _parse_body(binding, request, body.json)
        # Path variables after the body: the path wins.
        for field_path, value in path_params.items():
            if field_path in self._text_fields:
                try:
                    setattr(request, field_path, value)
                    continue
                except (TypeError, ValueError):
                    pass  # text protobuf refuses: the general path names the problem
            set_from_strings(request, field_path, [value], source="path")
        if query and self._takes_query:
            bound = {binding.body, *path_params} if binding.body else set(path_params)
            for key, values in _group(query).items():
                if key.split(".")[0] in bound or key in bound:
                    continue
                set_from_strings(
                    request, key, values, source="query parameter", ignore_unknown=True
                )
        return request


def _parse_body(binding: Binding, request: Message, body: Any) -> None:
    if binding.body == "*":
        if not isinstance(body, dict):
            raise RpcError.invalid_argument(
                f"request body must be a JSON object, got {_json_kind(body)}"
            )
        if _set_strings(request, body):
            return
        target, payload = request, body
    else:
        target, payload = request, {binding.body: body}
    try:
        json_format.ParseDict(payload, target, ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise RpcError.invalid_argument(f"invalid request body: {error}") from None


def _set_strings(request: Message, body: dict[str, Any]) -> bool:
    """Set a body made only of top-level string fields (by proto name) with text values.

    What ``ParseDict`` would do for such a body, without its walk; anything
    else (another field, a lowerCamel name, a non-string value, text protobuf
    refuses) answers False with ``request`` left empty, for ``ParseDict`` to
    take it and name the problem.
    """
    strings = _string_fields_by_proto_name(request.DESCRIPTOR)
    for key, value in body.items():
        if type(value) is not str or key not in strings:
            return False
        if not value.isascii() and _SURROGATE.search(value):
            return False  # ParseDict refuses an unpaired surrogate, in its words
    try:
        for key, value in body.items():
            setattr(request, key, value)
    except (TypeError, ValueError):
        request.Clear()
        return False
    return True


def _string_fields_by_proto_name(descriptor: Any) -> frozenset[str]:
    found = _PROTO_STRING_FIELDS.get(descriptor)
    if found is None:
        found = _PROTO_STRING_FIELDS[descriptor] = frozenset(
            field.name
            for field in descriptor.fields
            if field.type == FieldDescriptor.TYPE_STRING
            and not field.is_repeated
            # Members of a real oneof: ParseDict refuses two of them; a proto3
            # ``optional`` is the only member of its own.
            and (field.containing_oneof is None or len(field.containing_oneof.fields) == 1)
        )
    return found


_PROTO_STRING_FIELDS: dict[Any, frozenset[str]] = {}
_SURROGATE = re.compile("[\ud800-\udfff]")


def _salvage_body(binding: Binding, request: Message, body: Any) -> None:
    """Every field of ``body`` that parses, each on its own; the rest is left out."""
    if binding.body == "*":
        if not isinstance(body, dict):
            return
        payloads = [{key: value} for key, value in body.items()]
    else:
        payloads = [{binding.body: body}]
    for payload in payloads:
        # Into a fresh message first: a field that fails half-way leaves nothing behind.
        part = type(request)()
        try:
            json_format.ParseDict(payload, part, ignore_unknown_fields=True)
        except (json_format.ParseError, RecursionError, TypeError, ValueError):
            continue
        request.MergeFrom(part)


def set_from_strings(
    message: Message,
    field_path: str,
    values: Sequence[str],
    *,
    source: str,
    ignore_unknown: bool = False,
) -> None:
    """Set a (dotted) field from text, converting by the field's type."""
    descriptor: Any = message.DESCRIPTOR
    if len(values) == 1:
        # A top-level string field (a path's session_id): protojson would set
        # the text as it is, so set it, without building a dict to parse.
        name = _string_fields(descriptor).get(field_path)
        if name is not None:
            try:
                setattr(message, name, values[0])
                return
            except (TypeError, ValueError):
                pass  # text protobuf refuses: the general path names the problem
    field = resolve_field(descriptor, _proto_path(message, field_path))
    if field is None:
        if ignore_unknown:
            return  # grpc-gateway ignores query parameters it cannot place
        raise RpcError.invalid_argument(f"{source} {field_path!r} names no field", field_path)
    names = _proto_path(message, field_path).split(".")
    repeated = bool(field.is_repeated)
    if field.message_type is not None and not _is_wkt_scalar(field):
        raise RpcError.invalid_argument(
            f"{source} {field_path!r} is a message; send it in a JSON body", field_path
        )
    if not repeated and len(values) > 1:
        raise RpcError.invalid_argument(
            f"{source} {field_path!r} is given {len(values)} times but holds one value", field_path
        )
    converted = [_convert(field, value, field_path, source) for value in values]
    payload: Any = converted if repeated else converted[0]
    for name in reversed(names):
        payload = {name: payload}
    try:
        json_format.ParseDict(payload, message)
    except json_format.ParseError as error:
        raise RpcError.invalid_argument(
            f"invalid {source} {field_path!r}: {error}", field_path
        ) from None


_STRING_FIELDS: dict[Any, dict[str, str]] = {}


def _string_fields(descriptor: Any) -> dict[str, str]:
    """A message type's singular string fields: proto name and lowerCamel name -> proto name."""
    found = _STRING_FIELDS.get(descriptor)
    if found is None:
        # Names as _proto_path reads them: a proto name first, else the first lowerCamel one.
        named: dict[str, Any] = {}
        for field in descriptor.fields:
            named.setdefault(field.json_name, field)
        named.update(descriptor.fields_by_name)
        found = _STRING_FIELDS[descriptor] = {
            key: field.name
            for key, field in named.items()
            if field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated
        }
    return found


def _convert(field: FieldDescriptor, value: str, field_path: str, source: str) -> Any:
    if field.type == FieldDescriptor.TYPE_BOOL:
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise RpcError.invalid_argument(
            f"invalid {source} {field_path!r}: {value!r} is not a boolean", field_path
        )
    # protojson accepts numbers, enums (by name or number), bytes (base64) and
    # the string-encoded well-known types as strings: let it convert.
    if field.type == FieldDescriptor.TYPE_ENUM and value.lstrip("-").isdigit():
        return int(value)
    return value


def _is_wkt_scalar(field: FieldDescriptor) -> bool:
    # Well-known types whose JSON form is a single string or number.
    return field.message_type is not None and field.message_type.full_name in {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
        "google.protobuf.BoolValue",
        "google.protobuf.Int32Value",
        "google.protobuf.Int64Value",
        "google.protobuf.UInt32Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.FloatValue",
        "google.protobuf.DoubleValue",
    }


def _proto_path(message: Message, field_path: str) -> str:
    """Accept lowerCamel JSON names too: map each part to its proto name."""
    descriptor: Any = message.DESCRIPTOR
    parts: list[str] = []
    for part in field_path.split("."):
        if descriptor is None:
            parts.append(part)
            continue
        field = descriptor.fields_by_name.get(part)
        if field is None:
            field = next((f for f in descriptor.fields if f.json_name == part), None)
        if field is None:
            parts.append(part)
            descriptor = None
            continue
        parts.append(field.name)
        descriptor = field.message_type
    return ".".join(parts)


def _group(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__
