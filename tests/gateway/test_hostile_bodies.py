"""Bodies and origins a hostile page or client sends (issue 12).

Multipart is bounded (parts, nesting, one linear pass) and answers 413/400
(on the beacon close, an unreadable form is an empty body: issue 13), never a
RecursionError 500 or seconds of event-loop time; a state-changing
request from another origin is refused unless CORS allows that origin.
"""

from __future__ import annotations

import itertools
import time

import pytest

from agentplane.gateway.bodies import MAX_FORM_PARTS, decode_body
from agentplane.gateway.errors import RpcError
from agentplane.server import ServeOptions

from .support import Agents, Deployment, deploy

PART = b'--b\r\nContent-Disposition: form-data; name="close_token"\r\n\r\nx\r\n'
FORM = "multipart/form-data; boundary=b"


def many_parts(count: int) -> bytes:
    return PART * count + b"--b--\r\n"


def nested(depth: int) -> bytes:
    """A form whose part is a form whose part is ... ``depth`` deep (outer boundary "b")."""
    names = [b"b"] + [b"n%d" % i for i in range(1, depth + 1)]
    head, tail = b"", b""
    for outer, inner in itertools.pairwise(names):
        head += b"--%s\r\nContent-Type: multipart/form-data; boundary=%s\r\n\r\n" % (outer, inner)
        tail = b"\r\n--%s--\r\n" % outer + tail
    last = names[-1]
    leaf = b'--%s\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n--%s--' % (last, last)
    return head + leaf + tail


def test_a_form_of_the_allowed_size_decodes() -> None:
    decoded = decode_body(FORM, many_parts(MAX_FORM_PARTS), beacon=True)
    assert decoded.form == [("close_token", "x")] * MAX_FORM_PARTS


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        (many_parts(MAX_FORM_PARTS + 1), 413, "more than 32 parts"),
        (many_parts(18_000)[: 1 << 20], 413, "more than 32 parts"),  # measured: 2.7-8 s before
        (nested(1), 400, "nested multipart"),
        (nested(3_000), 400, "nested multipart"),  # was a RecursionError (500)
        (PART, 400, "no closing boundary"),
        (b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--", 400, "without a name"),
        (b"--b\r\n" + b"X: y\r\n" * 20 + b"\r\nx\r\n--b--", 400, "more than 8 headers"),
    ],
    ids=["33 parts", "18000 parts", "nested", "nested 3000", "unclosed", "unnamed", "headers"],
)
def test_hostile_forms_are_refused_at_once(body: bytes, status: int, named: str) -> None:
    started = time.perf_counter()
    with pytest.raises(RpcError) as refused:
        decode_body(FORM, body, beacon=True)
    elapsed = time.perf_counter() - started
    assert refused.value.http_status == status
    assert named in refused.value.message
    assert elapsed < 0.25  # a linear pass over at most 1 MiB; seconds before the fix


async def test_the_worst_multipart_closes_are_quick(gw: Deployment) -> None:
    sid = (await gw.http.post("/sessions", json={"call_id": "c"})).json()["session_id"]
    started = time.perf_counter()
    too_many = await gw.http.post(
        f"/sessions/{sid}/close",
        content=many_parts(18_000)[: 1 << 20],
        headers={"content-type": FORM},
    )
    assert too_many.status_code == 413, too_many.text  # a limit: still refused
    assert (await gw.launcher.get_session(sid)).state.name == "RUNNING"
    # Nested multipart is unreadable, and an unreadable beacon closes (issue 13).
    deep = await gw.http.post(
        f"/sessions/{sid}/close", content=nested(3_000), headers={"content-type": FORM}
    )
    assert deep.status_code == 200, deep.text
    assert (await gw.launcher.get_session(sid)).state.name == "ENDED"
    assert time.perf_counter() - started < 2.0


async def test_another_origin_cannot_close_or_start_by_default(gw: Deployment) -> None:
    sid = (await gw.http.post("/sessions", json={"call_id": "c"})).json()["session_id"]
    evil = {"origin": "https://evil.example"}
    beacon = await gw.http.post(
        f"/sessions/{sid}/close", content=b"{}", headers={**evil, "content-type": "text/plain"}
    )
    assert beacon.status_code == 403, beacon.text
    assert beacon.json()["code"] == 7
    assert "https://evil.example" in beacon.json()["message"]
    for request in (
        gw.http.post("/sessions", json={"call_id": "d"}, headers=evil),
        gw.http.delete(f"/sessions/{sid}", headers=evil),
        gw.http.post(f"/sessions/{sid}/close", headers={"origin": "null"}),
    ):
        assert (await request).status_code == 403
    assert gw.launcher.stats().started == 1
    assert (await gw.launcher.get_session(sid)).state.name == "RUNNING"
    # Reads carry no state change: the browser keeps their answers from the page.
    assert (await gw.http.get(f"/sessions/{sid}", headers=evil)).status_code == 200
    # The page's own origin closes (the demo page's beacon).
    own = await gw.http.post(
        f"/sessions/{sid}/close",
        content=b"",
        headers={"origin": gw.url, "content-type": "text/plain"},
    )
    assert own.status_code == 200, own.text


async def test_a_configured_origin_may_start_and_close(agents: Agents, kind: str) -> None:
    options = ServeOptions(api_token=None, cors_allow_origins=("https://app.example",))
    async with deploy(kind, agents.launcher(), options) as gw:
        app = {"origin": "https://app.example"}
        started = await gw.http.post("/sessions", json={"call_id": "c"}, headers=app)
        assert started.status_code == 201, started.text
        sid = started.json()["session_id"]
        stranger = await gw.http.post(
            f"/sessions/{sid}/close", headers={"origin": "https://evil.example"}
        )
        assert stranger.status_code == 403
        closed = await gw.http.post(f"/sessions/{sid}/close", headers=app)
        assert closed.status_code == 200
