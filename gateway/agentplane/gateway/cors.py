"""Which browser origins may call the gateway, and the middleware that says so.

``Cors`` is Starlette's ``CORSMiddleware``: its options, its preflight
answers and its origin checks, unchanged. What it adds is a short way for the
common request, one with no ``Origin`` header (a backend, a same-origin GET):
Starlette builds a ``Headers`` view and a ``MutableHeaders`` per response for
it only to append ``Vary: Origin``; here that is one scan of the raw headers
and one append. Every request with an ``Origin`` takes Starlette's own path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ORIGIN = b"origin"
_VARY = b"vary"


@dataclass(frozen=True, slots=True)
class CorsOptions:
    """Which browser origins may call the gateway.

    None by default: only pages the gateway's own origin serves (``*``: any).
    A wildcard origin never allows credentials: browsers refuse that pairing,
    and echoing any origin with credentials would let every site act as the
    user.
    """

    allow_origins: Sequence[str] = ()
    allow_methods: Sequence[str] = ("*",)
    allow_headers: Sequence[str] = ("*",)
    allow_credentials: bool = False

    def __post_init__(self) -> None:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError(
                "CORS credentials need explicit origins: browsers refuse credentials "
                "with a wildcard origin"
            )


class Cors:
    """``CORSMiddleware``, answering a request without ``Origin`` with less work.

    Takes ``CORSMiddleware``'s keyword arguments. A request without ``Origin``
    goes to the app with ``_VaryOrigin`` around its ``send``, through no
    coroutine of this layer's own; every other request to Starlette's.
    """

    def __init__(self, app: ASGIApp, /, **options: Any) -> None:
        self.app = app
        self._starlette = CORSMiddleware(app, **options)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "http":
            for name, _ in scope["headers"]:
                if name == _ORIGIN:
                    break
            else:
                return self.app(scope, receive, _VaryOrigin(send))
        return self._starlette(scope, receive, send)


class _VaryOrigin:
    """Adds ``Vary: Origin`` to the response, as Starlette's simple response does.

    The app's header list is never changed (it may send one prebuilt list
    every time); the server's own awaitable is handed back rather than
    awaited in a coroutine of this wrapper's (ASGI asks only for an awaitable).
    """

    __slots__ = ("send",)

    def __init__(self, send: Send) -> None:
        self.send = send

    def __call__(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            headers = message.get("headers", ())
            for name, _ in headers:
                if name.lower() == _VARY:
                    # Merge with the Vary the app set: Starlette's own rule.
                    message = _merged_vary(message)
                    break
            else:
                message = {**message, "headers": [*headers, (_VARY, b"Origin")]}
        return self.send(message)


def _merged_vary(message: Message) -> Message:
    from starlette.datastructures import MutableHeaders

    message = dict(message)
    headers = MutableHeaders(scope=message)  # on a copy of the app's list
    headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])
    return message
