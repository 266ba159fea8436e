"""``Cors`` answers exactly as Starlette's ``CORSMiddleware``, header for header.

It only takes a shorter way for requests without ``Origin``; these tests run
the same requests through both and compare every message sent.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

from agentplane.gateway.cors import Cors

OPTIONS: list[dict[str, Any]] = [
    {"allow_origins": []},
    {"allow_origins": ["https://app.example"], "allow_credentials": True},
    {"allow_origins": ["*"]},
    {"allow_origins": ["*"], "allow_methods": ["GET"], "allow_headers": ["x-a"]},
]
REQUESTS: list[tuple[str, list[tuple[bytes, bytes]]]] = [
    ("GET", []),
    ("GET", [(b"host", b"h")]),
    ("POST", [(b"origin", b"https://app.example")]),
    ("GET", [(b"origin", b"https://evil.example")]),
    ("GET", [(b"origin", b"null")]),
    ("OPTIONS", [(b"origin", b"https://app.example"), (b"access-control-request-method", b"GET")]),
    ("OPTIONS", [(b"origin", b"https://evil.example"), (b"access-control-request-method", b"PUT")]),
    ("OPTIONS", [(b"access-control-request-method", b"GET")]),
]
# What the app itself answers with: nothing on Vary, one Vary, two Vary lines.
APP_HEADERS: list[list[tuple[bytes, bytes]]] = [
    [(b"content-type", b"application/json")],
    [(b"vary", b"Accept")],
    [(b"Vary", b"Accept"), (b"x-other", b"1"), (b"vary", b"Accept-Encoding")],
]


def _app(headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def _answer(
    middleware: Any, method: str, headers: list[tuple[bytes, bytes]]
) -> list[Message]:
    sent: list[Message] = []
    scope = {"type": "http", "method": method, "path": "/x", "headers": headers}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: repr(sorted(o.items())))
@pytest.mark.parametrize(("method", "headers"), REQUESTS, ids=lambda r: repr(r))
@pytest.mark.parametrize("app_headers", APP_HEADERS, ids=["plain", "vary", "two-vary"])
async def test_cors_answers_as_starlettes_middleware(
    options: dict[str, Any],
    method: str,
    headers: list[tuple[bytes, bytes]],
    app_headers: list[tuple[bytes, bytes]],
) -> None:
    ours = await _answer(Cors(_app(app_headers), **options), method, headers)
    theirs = await _answer(CORSMiddleware(_app(app_headers), **options), method, headers)
    assert ours == theirs
    assert any((name.lower(), value) == (b"vary", b"Origin") or b"Origin" in value
               for name, value in ours[0]["headers"] if name.lower() == b"vary")  # fmt: skip


@pytest.mark.parametrize("app_headers", APP_HEADERS, ids=["plain", "vary", "two-vary"])
async def test_cors_leaves_the_apps_own_header_list_alone(
    app_headers: list[tuple[bytes, bytes]],
) -> None:
    # An app may send one prebuilt list (a reused Response's raw_headers) every time.
    shared = list(app_headers)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": shared})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = Cors(app, allow_origins=[])
    first = await _answer(middleware, "GET", [])
    again = await _answer(middleware, "GET", [])
    assert shared == app_headers
    assert first == again
    theirs = await _answer(CORSMiddleware(_app(app_headers), allow_origins=[]), "GET", [])
    assert again == theirs
