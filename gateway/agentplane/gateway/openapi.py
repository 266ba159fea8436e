"""The OpenAPI document, derived from the bindings, the descriptors and the proto's comments.

Nothing here is written per RPC: paths, parameters, bodies and responses come
from the ``Binding``s (so the document always matches what the gateway
serves), schemas from the message descriptors with protojson's mapping
(64-bit integers as strings, enums as names, well-known types in their JSON
form), and descriptions from the comments kept in the generated descriptor
set. OpenAPI 3.0.3, so the bundled Swagger UI renders it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from .bindings import Binding
from .streaming import CURSOR_RESUME, SseResume

_INT = "^-?[0-9]{1,19}$"
_UINT = "^[0-9]{1,19}$"
STATUS_REF = {"$ref": "#/components/schemas/google.rpc.Status"}
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    # protojson writes 64-bit integers as strings (JSON numbers lose precision).
    FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64", "pattern": _INT},
    FieldDescriptor.TYPE_SINT64: {"type": "string", "format": "int64", "pattern": _INT},
    FieldDescriptor.TYPE_SFIXED64: {"type": "string", "format": "int64", "pattern": _INT},
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "uint64", "pattern": _UINT},
    FieldDescriptor.TYPE_FIXED64: {"type": "string", "format": "uint64", "pattern": _UINT},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "example": "1.5s"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int32Value": {"type": "integer"},
    "google.protobuf.UInt32Value": {"type": "integer"},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "string", "format": "uint64"},
}
_OPERATOR_PATHS: dict[str, Any] = {
    "/health": {
        "get": {
            "tags": ["Operations"],
            "operationId": "Health",
            "summary": "Liveness: 200 while the process serves.",
            "responses": {"200": {"description": "Alive."}},
        }
    },
    "/ready": {
        "get": {
            "tags": ["Operations"],
            "operationId": "Ready",
            "summary": "Readiness: 200 while new sessions would be admitted, 400 otherwise.",
            "responses": {"200": {"description": "Ready."}, "400": {"description": "Not ready."}},
        }
    },
}


class Comments:
    """Leading comments of proto elements by full name, from a descriptor set."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto] = ()) -> None:
        self._by_name: dict[str, str] = {}
        for file in files:
            self._add_file(file)

    @classmethod
    def from_descriptor_set(cls, data: bytes) -> Comments:
        """The comments of a serialized ``FileDescriptorSet`` built with source info
        (``buf build --as-file-descriptor-set``, ``protoc --include_source_info``)."""
        return cls(descriptor_pb2.FileDescriptorSet.FromString(data).file)

    def get(self, full_name: str) -> str:
        return self._by_name.get(full_name, "")

    def _add_file(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        names: dict[tuple[int, ...], str] = {}
        prefix = file.package + "." if file.package else ""

        def messages(path: tuple[int, ...], scope: str, items: Sequence[Any]) -> None:
            for i, message in enumerate(items):
                name = scope + message.name
                names[(*path, i)] = name
                for j, field in enumerate(message.field):
                    names[(*path, i, 2, j)] = f"{name}.{field.name}"
                messages((*path, i, 3), name + ".", message.nested_type)
                enums((*path, i, 4), name + ".", message.enum_type)

        def enums(path: tuple[int, ...], scope: str, items: Sequence[Any]) -> None:
            for i, enum in enumerate(items):
                names[(*path, i)] = scope + enum.name
                for j, value in enumerate(enum.value):
                    names[(*path, i, 2, j)] = scope + value.name

        messages((4,), prefix, file.message_type)
        enums((5,), prefix, file.enum_type)
        for i, service in enumerate(file.service):
            names[(6, i)] = prefix + service.name
            for j, method in enumerate(service.method):
                names[(6, i, 2, j)] = f"{prefix}{service.name}.{method.name}"
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            if name is not None and location.leading_comments:
                self._by_name[name] = _clean(location.leading_comments)


def _clean(comment: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in comment.splitlines()]
    return "\n".join(lines).strip()


class _Schemas:
    """components.schemas, filled as messages are referenced."""

    def __init__(self, comments: Comments) -> None:
        self.comments = comments
        self.schemas: dict[str, Any] = {}

    def ref(self, message: Descriptor) -> dict[str, Any]:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        if message.full_name not in self.schemas:
            self.schemas[message.full_name] = {}  # placeholder: recursion-safe
            self.schemas[message.full_name] = self.message(message)
        return {"$ref": f"#/components/schemas/{message.full_name}"}

    def message(self, message: Descriptor, skip: Iterable[str] = ()) -> dict[str, Any]:
        skipped = set(skip)
        properties = {
            field.name: self.field(field) for field in message.fields if field.name not in skipped
        }
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        description = self.comments.get(message.full_name)
        if description:
            schema["description"] = description
        return schema

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            schema: dict[str, Any] = {"type": "object", "additionalProperties": self.single(value)}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.single(field)}
        else:
            schema = self.single(field)
        description = self.comments.get(field.full_name)
        if description and "$ref" not in schema:  # 3.0 ignores siblings of $ref
            schema["description"] = description
        return schema

    def single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        return dict(_SCALARS[field.type])

    def enum(self, enum: EnumDescriptor) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in enum.values]}
        description = self.comments.get(enum.full_name)
        if description:
            schema["description"] = description
        return schema


def openapi_document(
    bindings: Sequence[Binding],
    *,
    title: str,
    version: str,
    comments: Comments | None = None,
    operator_paths: bool = True,
    success_status: Mapping[str, int] | None = None,
    sse_resume: SseResume = CURSOR_RESUME,
) -> dict[str, Any]:
    """An OpenAPI 3.0 document of ``bindings`` (and the operator endpoints).

    ``success_status`` and ``sse_resume`` are the gateway's: gRPC path -> HTTP
    status when not 200, and what a stream's ``Last-Event-ID`` fills.
    """
    comments = comments or Comments()
    statuses = dict(success_status or {})
    schemas = _Schemas(comments)
    schemas.schemas["google.rpc.Status"] = _status_schema()
    paths: dict[str, Any] = dict(_OPERATOR_PATHS) if operator_paths else {}
    services: dict[str, str] = {}
    for binding in bindings:
        service = binding.method.containing_service
        services[service.name] = comments.get(service.full_name)
        path = _openapi_path(binding)
        paths.setdefault(path, {})[binding.http_method.lower()] = _operation(
            binding, schemas, comments, str(statuses.get(binding.rpc_path, 200)), sse_resume
        )
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version},
        "tags": [
            {"name": name, "description": text} if text else {"name": name}
            for name, text in services.items()
        ],
        "paths": paths,
        "components": {"schemas": schemas.schemas},
    }


def _openapi_path(binding: Binding) -> str:
    template = binding.template
    segments = list(template.segments)
    for variable in reversed(template.variables):
        end = len(segments) if variable.end is None else variable.end
        segments[variable.start : end] = ["{" + variable.field_path + "}"]
    path = "/" + "/".join(segments)
    return path + (":" + template.verb if template.verb else "")


def _operation(
    binding: Binding, schemas: _Schemas, comments: Comments, status: str, sse_resume: SseResume
) -> dict[str, Any]:
    method = binding.method
    text = comments.get(method.full_name)
    summary, _, rest = text.partition("\n\n")
    service = method.containing_service.name
    operation: dict[str, Any] = {
        "tags": [service],
        "operationId": f"{service}_{method.name}"
        + (str(binding.index + 1) if binding.index else ""),
        "summary": " ".join(summary.split()),
    }
    if rest.strip():
        operation["description"] = rest.strip()
    request: Descriptor = method.input_type
    path_fields = set(binding.template.field_paths)
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": schemas.single(_leaf(request, name)),
            **_described(comments, request, name),
        }
        for name in binding.template.field_paths
    ]
    if binding.body != "*":
        skip = path_fields | ({binding.body} if binding.body else set())
        parameters += _query_parameters(request, skip, schemas, comments)
    if binding.server_streaming and sse_resume.accepts(request.fields_by_name):
        fields = f"`{sse_resume.separator}`".join(f"`{f}`" for f in sse_resume.request_fields)
        parameters.append(
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "With `Accept: text/event-stream`: resume after this event id "
                f"(sets {fields}). EventSource sends it when it reconnects.",
            }
        )
    if parameters:
        operation["parameters"] = parameters
    if binding.body == "*":
        body_schema = schemas.message(request, skip=path_fields)
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": body_schema}},
        }
    elif binding.body:
        field = request.fields_by_name[binding.body]
        operation["requestBody"] = {
            "content": {"application/json": {"schema": schemas.field(field)}}
        }
    response: Descriptor = method.output_type
    if binding.response_body:
        result = schemas.field(response.fields_by_name[binding.response_body])
    else:
        result = schemas.ref(response)
    if binding.server_streaming:
        content = {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "One JSON object per line (newline-delimited).",
                    "properties": {"result": result, "error": STATUS_REF},
                }
            },
            "text/event-stream": {
                "schema": {
                    "type": "string",
                    "description": "Server-Sent Events when the request sends "
                    "`Accept: text/event-stream`: `id:` is the cursor, `data:` the message.",
                }
            },
        }
        description = "A stream of messages."
    else:
        content = {"application/json": {"schema": result}}
        description = "A successful response."
    operation["responses"] = {
        status: {"description": description, "content": content},
        "default": {
            "description": "An error: a google.rpc.Status.",
            "content": {"application/json": {"schema": STATUS_REF}},
        },
    }
    return operation


def _leaf(message: Descriptor, field_path: str) -> FieldDescriptor:
    descriptor: Any = message
    field: Any = None
    for name in field_path.split("."):
        field = descriptor.fields_by_name[name]
        descriptor = field.message_type
    assert field is not None
    return field  # type: ignore[no-any-return]


def _described(comments: Comments, message: Descriptor, field_path: str) -> dict[str, str]:
    text = comments.get(_leaf(message, field_path).full_name)
    return {"description": text} if text else {}


def _query_parameters(
    message: Descriptor, skip: set[str], schemas: _Schemas, comments: Comments, prefix: str = ""
) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    for field in message.fields:
        name = prefix + field.name
        if name in skip:
            continue
        nested = field.message_type
        if nested is not None and nested.full_name not in _WELL_KNOWN:
            if not field.is_repeated and not prefix:  # one level deep, as far as is useful
                parameters += _query_parameters(nested, skip, schemas, comments, name + ".")
            continue
        if nested is not None and _WELL_KNOWN[nested.full_name].get("type") in ("object", None):
            continue  # Struct, Value, ...: only in a JSON body
        schema = schemas.field(field)
        schema.pop("description", None)  # said once, on the parameter
        if field.is_repeated:
            schema = {"type": "array", "items": schemas.single(field)}
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": False}
        parameter["schema"] = schema
        description = comments.get(field.full_name)
        if description:
            parameter["description"] = description
        if field.is_repeated:
            parameter["style"], parameter["explode"] = "form", True
        parameters.append(parameter)
    return parameters


def _status_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The error body of every failure (google.rpc.Status as JSON).",
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
            "message": {"type": "string", "description": "What went wrong."},
            "details": {
                "type": "array",
                "items": _WELL_KNOWN["google.protobuf.Any"],
                "description": "google.rpc details: ErrorInfo, BadRequest, RetryInfo, ...",
            },
        },
    }
