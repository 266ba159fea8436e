"""``RpcDispatch``: a request that fits an RPC binding goes straight to ``RpcRoutes``.

The gateway's app is a Starlette app: ServerErrorMiddleware, CORS, then
ExceptionMiddleware and the Router, which tries every route in order
(``/health``, the documents, the demo page, a user's own, ...) before the
bindings. For the session routes, which carry nearly all the traffic, that
walk and the exception layer's ``send`` wrapper were a fifth of a Get's
gateway CPU (``bench/results/2026-12-01-http-path-2core.md``). This
middleware sits right after CORS and hands a request that fully matches a
binding to ``RpcRoutes.serve`` itself, the same code the Router would have
reached; everything else (other routes, 404, 405, preflight) goes on as before.

Where it sits (``ahead_of_error_middleware``): Starlette puts its
ServerErrorMiddleware outside every middleware given to the app, and that
layer costs a coroutine per request and another per ``send`` (~0.7 µs of a
~10 µs Get in process, ~3.5% of its CPU on a socket), for nothing on the
bindings: ``RpcRoutes.serve`` answers their unexpected failures itself,
with the same 500 and the exception raised on to the server's log. So
while the app holds only the gateway's own middleware (CORS, then this),
those two go outside it. Middleware added later (``add_middleware``: GZip,
a user's own) must wrap the bindings too, and inside the error layer, so
then the stack is Starlette's as given; so it is for an application class
that builds its stack its own way (FastAPI, whose stack adds its own
layers). A failure outside the bindings still gets Starlette's 500.

It never changes which route answers: a binding is dispatched here only if no
route ahead of the bindings could match its paths, decided once at start-up
from the routes' first path segment (``first_segment``). A route it cannot
read (a custom ``BaseRoute``, a parameter or nothing as its first segment)
keeps every binding behind the Router. ``ahead`` is the routes ``create_app``
put before the bindings; a route inserted ahead of them later is not seen.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from .bindings import Binding
from .httprule import WILD
from .routes import RpcRoutes


class RpcDispatch:
    """ASGI middleware: the bindings ``rpc.match`` finds, served without the Router."""

    def __init__(self, app: ASGIApp, *, rpc: RpcRoutes, ahead: Sequence[BaseRoute]) -> None:
        self.app = app
        self.rpc = rpc
        # By identity: a Binding's own hash walks all its fields.
        self.direct = frozenset(id(binding) for binding in direct_bindings(rpc.bindings, ahead))

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # The awaitable of whoever answers: no coroutine of this layer's own in between.
        if scope["type"] == "http" and self.direct:
            found = self.rpc.match(scope)
            if found is not None and id(found[0]) in self.direct:
                return self.rpc.serve(found[0], found[1], scope, receive, send)
        return self.app(scope, receive, send)


def direct_bindings(bindings: Iterable[Binding], ahead: Sequence[BaseRoute]) -> list[Binding]:
    """The bindings no route in ``ahead`` could take a request from."""
    taken: set[str] = set()
    for route in ahead:
        segment = first_segment(route)
        if segment is None:
            return []  # unknown shape: it might match anything
        taken.add(segment)
    direct = []
    for binding in bindings:
        segments = binding.template.segments
        first = segments[0] if segments else ""
        if first != WILD and not first.startswith("*") and first not in taken:
            direct.append(binding)
    return direct


def first_segment(route: BaseRoute) -> str | None:
    """The literal first segment of every path ``route`` matches ("" for ``/``), or None.

    ``/health`` gives ``health``; ``/demo`` (a Mount) ``demo``; ``/`` gives
    ``""``: it matches only the root, which no binding's path is.
    """
    if not isinstance(route, Route | Mount | WebSocketRoute):
        return None
    path = route.path
    if isinstance(route, Mount) and path == "":
        return None  # a root mount takes every path
    if not path.startswith("/"):
        return None
    head = path[1:].split("/", 1)[0]
    if "{" in head or "*" in head:
        return None
    return unquote(head)


def ahead_of_error_middleware(app: Starlette) -> None:
    """Have ``app`` build its middleware outside Starlette's ServerErrorMiddleware while
    nothing else was added to it (the module's docstring says why).

    The middleware given to the app are its own (``create_app``'s CORS and
    ``RpcDispatch``). The check is made when the stack is built, at the first
    request, after every ``add_middleware``.
    """
    if type(app).build_middleware_stack is not Starlette.build_middleware_stack:
        return  # a class with its own stack (FastAPI): as it builds it
    ours = list(app.user_middleware)
    build = app.build_middleware_stack

    def build_stack() -> ASGIApp:
        if app.user_middleware != ours:
            return build()  # someone's middleware: everything inside the error layer
        # Starlette's own stack without ours (its code, not a copy), then ours around it.
        app.user_middleware = []
        try:
            stack = build()
        finally:
            app.user_middleware = ours
        for cls, args, kwargs in reversed(ours):
            stack = cls(stack, *args, **kwargs)
        return stack

    app.build_middleware_stack = build_stack  # type: ignore[method-assign]
