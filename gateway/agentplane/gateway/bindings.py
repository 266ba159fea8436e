"""The HTTP bindings of a gRPC service, read from its ``google.api.http`` options.

Each RPC's rule and its ``additional_bindings`` become ``Binding``s: method,
compiled path template, ``body`` and ``response_body``. Everything is checked
here, at startup: a template that does not parse, a path variable or body
naming no field of the request, or a ``response_body`` naming no field of the
response raises ``BindingError`` and the gateway does not start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message

from .httprule import PathTemplate, TemplateError

HTTP_METHODS = ("get", "put", "post", "delete", "patch")


class BindingError(ValueError):
    """An HttpRule the gateway cannot serve."""


@dataclass(frozen=True, slots=True)
class Binding:
    """One HTTP route of one RPC."""

    method: MethodDescriptor
    http_method: str  # upper case: GET, POST, ...
    template: PathTemplate
    body: str  # "" (no body), "*" (the whole request) or a request field name
    response_body: str  # "" (the whole response) or a response field name
    index: int  # 0 for the rule itself, 1.. for its additional bindings
    # Derived once from ``method``: read on every request.
    rpc_path: str = field(init=False)  # the gRPC path, /package.Service/Method
    server_streaming: bool = field(init=False)
    request_type: type[Message] = field(init=False)
    response_type: type[Message] = field(init=False)

    def __post_init__(self) -> None:
        method = self.method
        derived = {
            "rpc_path": f"/{method.containing_service.full_name}/{method.name}",
            "server_streaming": bool(method.server_streaming),
            "request_type": message_factory.GetMessageClass(method.input_type),
            "response_type": message_factory.GetMessageClass(method.output_type),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"<Binding {self.http_method} {self.template.text} -> {self.rpc_path}>"


def service_bindings(services: Iterable[ServiceDescriptor]) -> list[Binding]:
    """Every HTTP binding of every method of ``services``, validated."""
    bindings: list[Binding] = []
    for service in services:
        for method in service.methods:
            if method.client_streaming:
                continue  # grpc-gateway cannot map these to one request either
            options: Any = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
            rules = [rule, *rule.additional_bindings]
            for index, one in enumerate(rules):
                if index and one.additional_bindings:
                    raise BindingError(f"{method.full_name}: additional bindings cannot nest")
                bindings.append(_binding(method, one, index))
    _check_unique(bindings)
    return bindings


def _binding(method: MethodDescriptor, rule: http_pb2.HttpRule, index: int) -> Binding:
    pattern = rule.WhichOneof("pattern")
    if pattern is None:
        raise BindingError(f"{method.full_name}: HttpRule has no method and path")
    if pattern == "custom":
        http_method, path = rule.custom.kind.upper(), rule.custom.path
    else:
        http_method, path = pattern.upper(), getattr(rule, pattern)
    try:
        template = PathTemplate.parse(path)
    except TemplateError as error:
        raise BindingError(f"{method.full_name}: {error}") from None
    request = method.input_type
    for field_path in template.field_paths:
        leaf = resolve_field(request, field_path)
        if leaf is None:
            raise BindingError(f"{method.full_name}: path variable {field_path!r} names no field")
        if _is_repeated(leaf) or leaf.type == FieldDescriptor.TYPE_MESSAGE:
            raise BindingError(f"{method.full_name}: path variable {field_path!r} is not a scalar")
    if rule.body not in ("", "*") and request.fields_by_name.get(rule.body) is None:
        raise BindingError(f"{method.full_name}: body {rule.body!r} names no request field")
    if rule.response_body and method.output_type.fields_by_name.get(rule.response_body) is None:
        raise BindingError(
            f"{method.full_name}: response_body {rule.response_body!r} names no response field"
        )
    return Binding(method, http_method, template, rule.body, rule.response_body, index)


def _check_unique(bindings: list[Binding]) -> None:
    seen: dict[tuple[str, str], Binding] = {}
    for binding in bindings:
        key = (binding.http_method, binding.template.text)
        if key in seen:
            raise BindingError(f"{binding!r} duplicates {seen[key]!r}")
        seen[key] = binding


def resolve_field(message: Descriptor, field_path: str) -> FieldDescriptor | None:
    """The field a dotted path names, walking singular message fields."""
    descriptor: Descriptor | None = message
    field: FieldDescriptor | None = None
    for name in field_path.split("."):
        if descriptor is None:
            return None
        field = descriptor.fields_by_name.get(name)
        if field is None:
            return None
        descriptor = field.message_type if not _is_repeated(field) else None
    return field


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)
