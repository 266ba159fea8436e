"""``RpcRoutes``: every HTTP binding of the service as one Starlette route.

``matches`` answers FULL (path and method fit a binding), PARTIAL (the path
fits, the method does not: Starlette then calls ``handle`` for a 405 naming
every allowed method) or NONE. ``handle`` transcodes: body, path and query
into the request message, the call through the ``Backend``, the response
(or its ``response_body`` field) back as JSON, or a stream.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

from google.protobuf.message import Message
from grpclib.const import Status
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from .backend import Backend, CallInfo
from .bindings import Binding
from .bodies import DEFAULT_MAX_BODY_BYTES, NO_BODY, decode_beacon, decode_body, read_body
from .codec import RenderMemo, RequestBuilder, body_renderer
from .errors import JSON_TYPE, RpcError, internal_error, routing_error
from .streaming import (
    CURSOR_RESUME,
    DEFAULT_HEARTBEAT,
    NDJSON,
    LiveMessages,
    SseFormat,
    SseResume,
    stream_response,
    wants_sse,
)

_T = TypeVar("_T")

# What ``matches`` hands ``handle`` in the ASGI scope.
_BINDING = "gateway.binding"
_PATH_PARAMS = "gateway.path_params"
_ALLOW = "gateway.allow"
# Answers of a shared_answers RPC remembered (RenderMemo), per RPC and response field.
ANSWERS_REMEMBERED = 256
# The ASGI extension of a server that says itself when a client goes away:
# ``scope["extensions"][DISCONNECT_WATCH]["watch"](callback)`` has the server
# call ``callback()`` once if the connection is lost before the response is
# complete (soon, if it is lost already), and returns ``unwatch()``, which
# withdraws it. ``until_disconnect`` then needs no task reading ``receive``.
DISCONNECT_WATCH = "gateway.disconnect_watch"
DisconnectWatch = Callable[[Callable[[], None]], Callable[[], None]]


class RpcRoutes(BaseRoute):
    """Serves ``bindings`` through ``backend``.

    ``success_status`` maps gRPC paths (``/package.Service/Method``) to the
    HTTP status of their success when it is not 200 (grpc-gateway reaches the
    same with its ``x-http-code`` header-metadata pattern); ``realm`` goes into
    the ``WWW-Authenticate`` challenge of a 401.

    ``beacon_rpcs`` (gRPC paths) take the bodies ``navigator.sendBeacon``
    sends, and never refuse one for its content: what cannot be read of it
    (garbage, a JSON string, a field of the wrong type) is left out of the
    request (``bodies.decode_beacon``, ``RequestBuilder``'s ``lenient``), since a
    beacon never sees the answer. Every other route takes JSON only. A
    request that changes state (any method but GET/HEAD) and carries an
    ``Origin`` other than the page's own (the ``Host`` it was sent to) is
    refused with 403 unless that origin is in ``trusted_origins`` (``*``:
    any): the CORS origins, so a beacon from another site cannot close a
    session even where no preflight guards it.

    ``sse_resume`` says which message fields make a Server-Sent Event's id
    and which request fields its ``Last-Event-ID`` fills (``SseResume``).
    """

    def __init__(
        self,
        bindings: Sequence[Binding],
        backend: Backend,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        heartbeat: float = DEFAULT_HEARTBEAT,
        success_status: Mapping[str, int] | None = None,
        realm: str | None = None,
        beacon_rpcs: Collection[str] = (),
        trusted_origins: Collection[str] = (),
        sse_resume: SseResume = CURSOR_RESUME,
    ) -> None:
        self.bindings = tuple(bindings)
        self.beacon_rpcs = frozenset(beacon_rpcs)
        self.trusted_origins = frozenset(origin.rstrip("/").lower() for origin in trusted_origins)
        self.backend = backend
        self.max_body_bytes = max_body_bytes
        self.heartbeat = heartbeat
        self.success_status = dict(success_status or {})
        self.realm = realm
        self.sse = SseFormat(sse_resume)
        # Per HTTP method, its bindings in order: a request tries only those.
        by_method: dict[str, list[Binding]] = {}
        for binding in self.bindings:
            by_method.setdefault(binding.http_method, []).append(binding)
        self._by_method = {method: tuple(found) for method, found in by_method.items()}
        # What each binding sends for a response: rendered once per message
        # object where the backend hands the same one out again (a Get of an
        # unchanged session), one memo for all of an RPC's bindings that send
        # the same field; a memo elsewhere would only cost.
        shared = frozenset(getattr(backend, "shared_answers", ()))
        memos: dict[tuple[str, str], RenderMemo] = {}
        # By identity: a Binding's own hash walks all its fields.
        self._plans: dict[int, _Plan] = {}
        for binding in self.bindings:
            render = body_renderer(binding.response_body)
            if binding.rpc_path in shared:
                key = (binding.rpc_path, binding.response_body)
                render = memos.setdefault(key, RenderMemo(render, size=ANSWERS_REMEMBERED))
            self._plans[id(binding)] = _Plan(
                binding,
                RequestBuilder(binding),
                render,
                self.success_status.get(binding.rpc_path, 200),
                binding.rpc_path in self.beacon_rpcs,
            )

    def __repr__(self) -> str:
        return f"RpcRoutes({len(self.bindings)} bindings)"

    def match(self, scope: Scope) -> tuple[Binding, dict[str, str]] | None:
        """The first binding whose method and path fit ``scope``, with its path variables."""
        path = _raw_path(scope)
        if not path.startswith("/"):
            return None
        parts = path[1:].split("/")
        for binding in self._by_method.get(scope["method"], ()):
            params = binding.template.match_segments(parts)
            if params is not None:
                return binding, params
        return None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        found = self.match(scope)
        if found is not None:
            return Match.FULL, {_BINDING: found[0], _PATH_PARAMS: found[1]}
        path = _raw_path(scope)
        allowed = [b.http_method for b in self.bindings if b.template.match(path) is not None]
        if allowed:
            return Match.PARTIAL, {_ALLOW: allowed}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        from starlette.routing import NoMatchFound

        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        binding: Binding | None = scope.get(_BINDING)
        if binding is None:
            allow = sorted(set(scope.get(_ALLOW, ())))
            await routing_error(405, allow).response(realm=self.realm)(scope, receive, send)
            return
        await self.serve(binding, scope[_PATH_PARAMS], scope, receive, send)

    async def serve(
        self,
        binding: Binding,
        path_params: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Transcodes one request that ``match`` found for ``binding``.

        Errors answer in the gateway's shape. Anything unexpected before the
        answer starts is answered as Starlette's error middleware would (500
        INTERNAL, ``internal_error``) and raised on for the server to log: the
        bindings may be served from outside that middleware (``dispatch.py``).
        """
        scope[_BINDING] = binding  # for the access log's route
        plan = self._plans[id(binding)]
        stream: Callable[[Receive, Send], Awaitable[None]] | None = None
        chunk = b""
        try:
            # A read of a unary RPC with no body reads no header: no view built for it.
            headers = Headers(scope=scope) if plan.reads_headers else _NO_HEADERS
            if plan.changes_state:
                self._check_origin(headers)
            body = NO_BODY
            if binding.body:
                length = headers.get("content-length")
                declared = int(length) if length and length.isdigit() else None
                raw = await read_body(receive, self.max_body_bytes, declared)
                content_type = headers.get("content-type")
                if plan.beacon:
                    body = decode_beacon(content_type, raw)
                else:
                    body = decode_body(content_type, raw)
            query_string = scope.get("query_string")
            query = (
                parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
                if query_string
                else ()
            )
            request = plan.build(path_params, query, body, lenient=plan.beacon)
            call = CallInfo.from_http(scope["headers"], scope.get("client"))
            if binding.server_streaming:
                stream = await self._open_stream(binding, request, call, headers, scope)
            else:
                unary = self.backend.unary(binding, request, call)
                if plan.rolls_back:
                    response = await until_disconnect(unary, receive, disconnect_watch(scope))
                else:
                    response = await unary  # nothing to roll back: no watcher for it
                chunk = plan.render(response)
        except RpcError as error:
            await error.response(realm=self.realm)(scope, receive, send)
            return
        except Exception:
            await internal_error().response(realm=self.realm)(scope, receive, send)
            raise
        if stream is not None:
            # It answers its own failures from here on (``stream_response``).
            await stream(receive, send)
            return
        await send(json_start(plan.status, chunk))
        await send({"type": "http.response.body", "body": chunk})

    async def _open_stream(
        self,
        binding: Binding,
        request: Message,
        call: CallInfo,
        headers: Headers,
        scope: Scope,
    ) -> Callable[[Receive, Send], Awaitable[None]]:
        """The stream's call opened (its errors so far raised), and what sends its response."""
        fmt = self.sse if wants_sse(headers.get("accept", "")) else NDJSON
        last_id = headers.get("last-event-id")
        if (
            fmt is self.sse
            and last_id
            and self.sse.resume.accepts(request.DESCRIPTOR.fields_by_name)
        ):
            self.sse.resume.fill(request, last_id)
        live = call.live = LiveMessages(scope, fmt)
        messages = await self.backend.open_stream(binding, request, call)
        stream_error = getattr(self.backend, "stream_error", None)
        return functools.partial(
            stream_response,
            messages,
            fmt=fmt,
            heartbeat=self.heartbeat,
            errors=functools.partial(stream_error, binding) if stream_error else None,
            live=live,
        )

    def _check_origin(self, headers: Headers) -> None:
        origin = headers.get("origin")
        if origin is None or "*" in self.trusted_origins:
            return
        origin = origin.strip().rstrip("/").lower()
        if origin in self.trusted_origins:
            return
        hosts = {headers.get("host", "").lower(), headers.get("x-forwarded-host", "").lower()}
        if origin != "null" and urlsplit(origin).netloc in hosts - {""}:
            return  # same origin: the page was served from where it posts
        raise RpcError(
            Status.PERMISSION_DENIED,
            f"cross-origin request from {origin} refused: the server does not allow that "
            "origin (CORS allowed origins)",
        )


_JSON_TYPE = JSON_TYPE.encode("latin-1")
_NO_HEADERS = Headers()


def json_start(status: int, body: bytes) -> dict[str, Any]:
    """The ``http.response.start`` Starlette's ``Response(body, status, media_type=JSON_TYPE)``
    sends, same headers in the same order, without a Response object per request."""
    if status < 200 or status in (204, 304):
        headers = [(b"content-type", _JSON_TYPE)]  # no length: no body may follow
    else:
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON_TYPE)]
    return {"type": "http.response.start", "status": status, "headers": headers}


# A client that leaves one of these needs no rollback (RFC 9110, 9.2.2): a read
# changes nothing, and a DELETE (Close) finished after it left is what it asked
# for, as its retry would be. Only a Start (POST) is cancelled and rolled back.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class _Plan:
    """What serving one binding takes, worked out once at start-up."""

    __slots__ = (
        "beacon",
        "build",
        "changes_state",
        "reads_headers",
        "render",
        "rolls_back",
        "status",
    )

    def __init__(
        self,
        binding: Binding,
        build: RequestBuilder,
        render: Callable[[Message], bytes],
        status: int,
        beacon: bool,
    ) -> None:
        self.build = build
        self.render = render
        self.status = status
        self.beacon = beacon
        # A request is served only under its binding's method (``match``).
        self.changes_state = binding.http_method not in ("GET", "HEAD")
        self.rolls_back = binding.http_method not in IDEMPOTENT_METHODS
        self.reads_headers = self.changes_state or bool(binding.body) or binding.server_streaming


def disconnect_watch(scope: Scope) -> DisconnectWatch | None:
    """The server's ``DISCONNECT_WATCH`` for this request, if it offers one."""
    extension = scope.get("extensions", {}).get(DISCONNECT_WATCH)
    watch: DisconnectWatch | None = extension.get("watch") if extension else None
    return watch


async def until_disconnect(
    call: Awaitable[_T], receive: Receive, watch: DisconnectWatch | None = None
) -> _T:
    """``call``'s result, or ``call`` cancelled as soon as the HTTP client goes away.

    As over gRPC, a client that leaves cancels its call (a Start is rolled
    back rather than leaving an agent nobody knows the id of); the body has
    been read, so ``receive`` only reports ``http.disconnect`` from here on.
    ``call`` runs in the request's own task, which is cancelled when the
    client leaves: the server says so through ``watch`` (``DISCONNECT_WATCH``)
    when it can, else one watcher task reads ``receive`` (that task and its
    cancellation cost ~40,000 instructions a Start, callgrind on a socket).
    A cancellation from elsewhere (the server stopping) goes on as it is.
    """
    task = asyncio.current_task()
    assert task is not None
    left = False

    def leave() -> None:
        nonlocal left
        if not left:
            left = True
            task.cancel()

    async def read_until_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        leave()

    stop_watching: Callable[[], object]
    if watch is not None:
        stop_watching = watch(leave)
    else:
        stop_watching = asyncio.ensure_future(read_until_disconnect()).cancel
    try:
        result = await call
    except asyncio.CancelledError:
        # Ours taken back: a cancellation left over is someone else's.
        if left and task.uncancel() == 0:
            raise RpcError(
                Status.CANCELLED, "the client went away; the call was cancelled"
            ) from None
        raise
    except BaseException:
        if left:
            task.uncancel()  # the call ended its own way after our cancellation
        raise
    finally:
        # The watcher task ends at its pending receive(): nothing to wait for.
        stop_watching()
    if left:
        task.uncancel()  # the call took the cancellation in and still answered
    return result


def _raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    path: str
    if raw:
        path = raw.decode("latin-1")
        if "?" in path:  # a server that leaves the query in raw_path
            path = path.partition("?")[0]
    else:
        path = quote(str(scope["path"]))
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]  # mounted under a prefix in a bigger app
    return path
