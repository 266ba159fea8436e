"""Which callbacks are native hooks and which FastAPI dependencies; what FastAPI costs when unused."""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from typing import Annotated, Any

import pytest
from fastapi import Depends, Header, HTTPException, Query, Request
from google.rpc import code_pb2

from agentplane.compat.callbacks import is_fastapi_dependency
from agentplane.compat.fastapi_deps import refusal
from agentplane.server import AgentLauncher, RequestContext, Runner, ServeOptions, SessionRecord
from agentplane.service.status import error_status


async def ctx_annotated(ctx: RequestContext) -> None: ...
async def ctx_bare(ctx, session): ...  # type: ignore[no-untyped-def]
async def ctx_and_rest(ctx: RequestContext, *_: object) -> None: ...
async def star_args(*args: Any) -> None: ...
async def ctx_with_session(ctx: RequestContext, session: SessionRecord | None) -> None: ...


def user_dep() -> str:
    return "u"


async def header_default(x_api_key: str = Header(...)) -> None: ...
async def header_annotated(x_api_key: Annotated[str, Header()]) -> None: ...
async def depends_only(user: str = Depends(user_dep)) -> None: ...
async def no_parameters() -> bool: ...  # type: ignore[empty-body]
async def path_field(call_id: str) -> None: ...
async def request_first(request: Request) -> None: ...
async def ctx_but_marked(ctx: RequestContext, x: str = Header("")) -> None: ...


NATIVE = [ctx_annotated, ctx_bare, ctx_and_rest, star_args, ctx_with_session, print]
FASTAPI = [
    header_default,
    header_annotated,
    depends_only,
    no_parameters,
    path_field,
    request_first,
    ctx_but_marked,
    functools.partial(header_default),
]


@pytest.mark.parametrize("hook", NATIVE, ids=lambda h: getattr(h, "__name__", "partial"))
def test_the_context_first_and_no_fastapi_marker_is_a_native_hook(hook: Any) -> None:
    assert not is_fastapi_dependency(hook)


@pytest.mark.parametrize("hook", FASTAPI, ids=lambda h: getattr(h, "__name__", "partial"))
def test_anything_else_is_a_fastapi_dependency(hook: Any) -> None:
    assert is_fastapi_dependency(hook)


def launcher() -> AgentLauncher:
    async def create_agent(**_: Any) -> object:
        return object()

    async def join_call(*_: Any, **__: Any) -> None: ...

    return AgentLauncher(create_agent, join_call)


def test_what_no_call_can_supply_is_refused_at_start_up() -> None:
    async def wants_query(ctx: Any) -> None: ...  # an annotation that is no RequestContext

    async def wants_body(payload: dict[str, Any]) -> None: ...

    async def deep_query(user: str = Depends(wants_query)) -> None: ...

    for hook, words in (
        (wants_query, "requires the query parameter 'ctx'"),
        (deep_query, "requires the query parameter 'ctx'"),
        (wants_body, "body parameter 'payload'"),
    ):
        with pytest.raises(ValueError, match=words):
            Runner(launcher(), ServeOptions(api_token=None, can_view_session=hook))

    async def optional_query(limit: int = Query(10)) -> None: ...

    Runner(launcher(), ServeOptions(api_token=None, can_view_session=optional_query))


def test_a_fastapi_callback_without_fastapi_installed_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "fastapi" else find_spec(name, *a),
    )
    with pytest.raises(RuntimeError, match=r"can_start_session .*agentplane\[fastapi\]"):
        Runner(launcher(), ServeOptions(api_token=None, can_start_session=header_default))
    # Native hooks need nothing, and the app is Starlette's.
    runner = Runner(launcher(), ServeOptions(api_token=None, can_start_session=ctx_annotated))
    assert type(runner.fast_api).__name__ == "Starlette"


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, "INVALID_ARGUMENT", "bad"),
        (401, "UNAUTHENTICATED", "bad"),
        (403, "PERMISSION_DENIED", "bad"),
        (404, "NOT_FOUND", "bad"),
        (409, "ABORTED", "bad"),
        (418, "INVALID_ARGUMENT", "bad"),
        (422, "INVALID_ARGUMENT", "bad"),
        (429, "RESOURCE_EXHAUSTED", "bad"),
        (500, "INTERNAL", "bad"),
        (501, "UNIMPLEMENTED", "bad"),
        (503, "UNAVAILABLE", "bad"),
        (504, "DEADLINE_EXCEEDED", "bad"),
        (507, "UNKNOWN", "bad"),
    ],
)
def test_http_exceptions_answer_the_code_of_their_status(
    status: int, code: str, message: str
) -> None:
    answered = error_status(refusal(HTTPException(status, message)))
    assert (code_pb2.Code.Name(answered.code), answered.message) == (code, message)


def test_a_refusal_without_detail_says_the_status_and_a_structured_one_is_json() -> None:
    assert error_status(refusal(HTTPException(403))).message == "Forbidden"
    assert error_status(refusal(HTTPException(400, {"why": "x"}))).message == '{"why": "x"}'


NATIVE_ONLY_SERVER = """
import asyncio, json, sys
import httpx
from agentplane.server import AgentLauncher, RequestContext, ServeOptions, SessionRecord
from agentplane.testing import serving

async def create_agent(**_):
    return object()

async def join_call(*_, **__):
    await asyncio.Event().wait()

async def get_current_user(ctx: RequestContext) -> str:
    return ctx.metadata.get("grpcgateway-x-user", "")

async def can_view_session(ctx, session):
    return session is None or session.created_by == ctx.user

async def main():
    options = ServeOptions(api_token=None, gc_freeze=False,
                           get_current_user=get_current_user, can_view_session=can_view_session)
    async with serving(AgentLauncher(create_agent, join_call), options) as served:
        async with httpx.AsyncClient(base_url=served.http_url) as http:
            started = await http.post("/sessions", json={"call_id": "c"}, headers={"x-user": "a"})
            sid = started.json()["session_id"]
            mine = await http.get(f"/sessions/{sid}", headers={"x-user": "a"})
            theirs = await http.get(f"/sessions/{sid}", headers={"x-user": "b"})
        app = type(served.runner.fast_api).__name__
    print(json.dumps({"statuses": [started.status_code, mine.status_code, theirs.status_code],
                      "app": app, "fastapi": sorted(m for m in sys.modules if m.startswith("fastapi"))}))

asyncio.run(main())
"""


def test_native_hooks_and_an_untouched_app_never_import_fastapi() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NATIVE_ONLY_SERVER],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [201, 200, 403]
    assert report["app"] == "Starlette"
    assert report["fastapi"] == []
