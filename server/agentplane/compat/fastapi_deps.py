"""FastAPI-style auth callbacks, resolved per call by FastAPI's own dependency machinery.

``DependencyHook`` wraps a callback written for a FastAPI server (the Vision
Agents docs' ``verify_api_key(x_api_key: str = Header(...))``,
``can_view_session(user=Depends(get_current_user), session=Depends(get_session))``)
as a native hook, ``await hook(ctx, session)``, which ``AuthPolicy`` applies in
``SessionAPI`` like any other: gRPC and HTTP callers get the same answers.

Per call, FastAPI (``get_dependant`` once, ``solve_dependencies`` per call)
sees a request made from the call:

- **headers**: the call's metadata. A header the gateway forwarded with
  grpc-gateway's ``grpcgateway-`` prefix is seen under its own name (an HTTP
  client's ``X-API-Key`` is ``x_api_key: str = Header()`` over either
  transport) and wins over unprefixed metadata of that name;
  ``x-forwarded-host`` is also the ``host``;
- **path parameters**: ``call_id`` and ``session_id``, from the request and
  the session (the callback is analysed against ``/calls/{call_id}/sessions/{session_id}``);
- **the session**: ``Depends(get_session)`` (agentplane's, or Vision Agents'
  own ``get_session`` when it is imported); **the user**: in a ``can_*``
  callback, ``Depends(<the get_current_user of ServeOptions>)`` (or Vision
  Agents' ``get_current_user``) is what it answered for this call, not a
  second call;
- the query string and the body are empty: a callback declaring a body or a
  required query parameter is refused at start-up.

Answers: an ``HTTPException`` becomes the status of its HTTP code (401
UNAUTHENTICATED, 403 PERMISSION_DENIED, 429 RESOURCE_EXHAUSTED, ...: ``CODES``)
with its detail as the message; a missing or invalid parameter (FastAPI's 422)
is INVALID_ARGUMENT naming it; anything else raised is left to the one error
path (INTERNAL "internal error", logged once). Dependencies with ``yield`` are
closed when the check ends.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from http import HTTPStatus
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant, solve_dependencies
from google.rpc import code_pb2
from starlette.exceptions import HTTPException
from starlette.requests import Request

from agentplane.core import SessionRecord
from agentplane.core.errors import FieldViolation, InvalidArgument, LauncherError
from agentplane.service.auth import PermissionDenied, Refused, RequestContext, Unauthenticated

from .dependencies import (
    CONTEXT_KEY,
    SESSION_KEY,
    USER_KEY,
    VISION_AGENTS_DEPENDENCIES,
    current_user,
    get_session,
)

# Every callback is analysed against this path: call_id and session_id are
# path parameters wherever they are declared.
PATH = "/calls/{call_id}/sessions/{session_id}"
# grpc-gateway's prefix for forwarded HTTP headers (agentplane.gateway.headers).
FORWARD_PREFIX = "grpcgateway-"

# HTTPException status -> gRPC code. Read back through the gateway's table
# (gateway/errors.py) each answers its own HTTP status again, except 408 (504),
# 412 and 416 (400), 422 (400) and 502 (503).
CODES: dict[int, int] = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    404: code_pb2.NOT_FOUND,
    408: code_pb2.DEADLINE_EXCEEDED,
    409: code_pb2.ABORTED,
    412: code_pb2.FAILED_PRECONDITION,
    416: code_pb2.OUT_OF_RANGE,
    422: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED,
    499: code_pb2.CANCELLED,
    500: code_pb2.INTERNAL,
    501: code_pb2.UNIMPLEMENTED,
    502: code_pb2.UNAVAILABLE,
    503: code_pb2.UNAVAILABLE,
    504: code_pb2.DEADLINE_EXCEEDED,
}


class DependencyHook:
    """A FastAPI-style callback as a native hook: ``await hook(ctx)`` / ``await hook(ctx, session)``.

    ``user_hook`` is the ``get_current_user`` of the same options: in a
    ``can_*`` callback a dependency on it answers ``ctx.user``.
    """

    def __init__(
        self,
        call: Callable[..., Any],
        *,
        name: str,
        user_hook: Callable[..., Any] | None = None,
    ) -> None:
        self.call = call
        self.name = name
        dependant = get_dependant(path=PATH, call=call, name="result")
        substitutes = _substitutes(user_hook if name != "get_current_user" else None)
        _substitute(dependant, substitutes)
        _check(dependant, name)
        self._root = Dependant(path=PATH, dependencies=[dependant])

    def __repr__(self) -> str:
        return f"DependencyHook({self.name}={getattr(self.call, '__qualname__', self.call)!r})"

    async def __call__(self, ctx: RequestContext, session: SessionRecord | None = None) -> Any:
        path = dict(ctx.path_fields)
        if session is not None:
            path["session_id"] = session.session_id
            path["call_id"] = session.call_id
        try:
            async with AsyncExitStack() as request_stack, AsyncExitStack() as function_stack:
                scope = {
                    "type": "http",
                    "asgi": {"version": "3.0"},
                    "http_version": "2",
                    "method": "POST",
                    "scheme": "http",
                    "path": ctx.method,
                    "raw_path": ctx.method.encode(),
                    "root_path": "",
                    "query_string": b"",
                    "headers": _headers(ctx.metadata),
                    "client": _client(ctx.peer),
                    "server": None,
                    "path_params": path,
                    "fastapi_inner_astack": request_stack,
                    "fastapi_function_astack": function_stack,
                    SESSION_KEY: session,
                    USER_KEY: ctx.user,
                    CONTEXT_KEY: ctx,
                }
                solved = await solve_dependencies(
                    request=Request(scope),
                    dependant=self._root,
                    async_exit_stack=request_stack,
                    embed_body_fields=False,
                )
                if solved.errors:
                    raise _invalid(solved.errors)
                return solved.values["result"]
        except HTTPException as error:
            raise refusal(error) from None


def refusal(error: HTTPException) -> LauncherError:
    """What an ``HTTPException`` of a callback answers: its status as a gRPC code, its detail."""
    status = error.status_code
    message = _detail(error)
    if status == 401:
        return Unauthenticated(message)
    if status == 403:
        return PermissionDenied(message)
    code = CODES.get(status)
    if code is None:
        # As the gateway reads an HTTP-level error it has no row for.
        code = code_pb2.UNKNOWN if status >= 500 or status < 400 else code_pb2.INVALID_ARGUMENT
    return Refused(
        code,
        code_pb2.Code.Name(code),
        message,
        retry_after=_retry_after((error.headers or {}).get("Retry-After")),
    )


def _detail(error: HTTPException) -> str:
    detail: Any = error.detail
    if detail is None or detail == "":
        try:
            return HTTPStatus(error.status_code).phrase
        except ValueError:
            return str(error.status_code)
    return detail if isinstance(detail, str) else json.dumps(detail, default=str)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: not carried
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _invalid(errors: list[Any]) -> InvalidArgument:
    """FastAPI's validation errors (its 422) as the request's bad fields."""
    violations = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()))
        violations.append(FieldViolation(location or "request", str(error.get("msg", "invalid"))))
    return InvalidArgument(violations)


def _headers(metadata: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    forwarded: dict[str, str] = {}
    own: dict[str, str] = {}
    for key, value in metadata.items():
        if key.startswith(FORWARD_PREFIX):
            forwarded[key[len(FORWARD_PREFIX) :]] = value
        else:
            own[key] = value
    if "host" not in forwarded and "x-forwarded-host" in own:
        forwarded["host"] = own["x-forwarded-host"]
    merged = {**own, **forwarded}
    return [(key.encode("latin-1"), value.encode("latin-1")) for key, value in merged.items()]


def _client(peer: str | None) -> tuple[str, int] | None:
    if not peer:
        return None
    host, _, port = peer.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def _substitutes(user_hook: Callable[..., Any] | None) -> list[tuple[Any, Callable[..., Any]]]:
    """(dependency, what answers it instead): the session, and in a check the user."""
    pairs: list[tuple[Any, Callable[..., Any]]] = []
    vision_agents = sys.modules.get(VISION_AGENTS_DEPENDENCIES)
    if vision_agents is not None:
        theirs = getattr(vision_agents, "get_session", None)
        if theirs is not None:
            pairs.append((theirs, get_session))
    if user_hook is not None:
        pairs.append((user_hook, current_user))
        if vision_agents is not None:
            theirs = getattr(vision_agents, "get_current_user", None)
            if theirs is not None:
                pairs.append((theirs, current_user))
    return pairs


def _substitute(dependant: Dependant, pairs: list[tuple[Any, Callable[..., Any]]]) -> None:
    for index, sub in enumerate(dependant.dependencies):
        replacement = next((new for old, new in pairs if sub.call is old), None)
        if replacement is not None:
            sub = get_dependant(
                path=PATH,
                call=replacement,
                name=sub.name,
                use_cache=sub.use_cache,
                scope=sub.scope,
            )
            dependant.dependencies[index] = sub
        _substitute(sub, pairs)


def _check(dependant: Dependant, name: str) -> None:
    """Refuse, at start-up, what no call can ever supply."""
    if dependant.body_params:
        raise ValueError(
            f"{name}: {_where(dependant)} declares the body parameter "
            f"{dependant.body_params[0].name!r}; a permission callback sees headers, "
            "call_id, session_id and the session only"
        )
    for field in dependant.query_params:
        if field.field_info.is_required():
            raise ValueError(
                f"{name}: {_where(dependant)} requires the query parameter {field.name!r}, "
                "which calls never carry (headers: Header(); the call's ids: call_id, "
                "session_id; a native hook takes the RequestContext first)"
            )
    for sub in dependant.dependencies:
        _check(sub, name)


def _where(dependant: Dependant) -> str:
    return str(getattr(dependant.call, "__qualname__", dependant.call))
