"""``agentplane sessions ...`` against a real server: every command in both formats, filters, pages, exit codes."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from agentplane.server import AgentLauncher, ServeOptions
from agentplane.service.auth import RequestContext
from agentplane.testing import Served, serving, wait_until

from .support import cli, create_agent, join_call, on

TOKEN = "cli-token"


async def ops_user(ctx: RequestContext) -> str:
    return "ops"


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    launcher = AgentLauncher(create_agent, join_call, max_sessions_per_call=10)
    options = ServeOptions(api_token=None, get_current_user=ops_user)
    async with serving(launcher, options, http=False) as served:
        yield served


async def start(served: Served, call_id: str, *extra: str) -> str:
    ran = await cli("sessions", "start", call_id, *extra, "-o", "json", *on(served.grpc_port))
    assert ran.code == 0, ran.err
    session_id: str = ran.json()["session_id"]
    return session_id


async def test_start_get_metrics_close_print_tables(served: Served) -> None:
    ran = await cli(
        "sessions", "start", "call-1", "--call-type", "demo", "--metadata", "voice=alloy",
        "--metadata-json", '{"speed": 1.5}', *on(served.grpc_port),
    )  # fmt: skip
    assert ran.code == 0, ran.err
    fields = dict(line.split(None, 1) for line in ran.out.splitlines())
    session_id = fields["session_id"]
    assert fields["call_id"] == "call-1"
    assert fields["started"].endswith("Z")

    got = await cli("sessions", "get", session_id, *on(served.grpc_port))
    assert got.code == 0, got.err
    assert "state       running" in got.out
    assert "call_type   demo" in got.out
    assert 'metadata    {"speed":1.5,"voice":"alloy"}' in got.out
    assert "created_by  ops" in got.out

    await wait_until(lambda: served.launcher.stats().in_flight == 1)
    metrics = await cli("sessions", "metrics", session_id, *on(served.grpc_port))
    assert metrics.code == 0, metrics.err
    assert "METRIC" in metrics.out
    assert any(line.split() == ["frames__total", "3"] for line in metrics.out.splitlines())

    closed = await cli("sessions", "close", session_id, *on(served.grpc_port))
    assert closed.code == 0, closed.err
    assert "state       ended" in closed.out
    assert "end_reason  closed_by_request" in closed.out


async def test_start_get_metrics_close_print_protojson(served: Served) -> None:
    ran = await cli(
        "sessions", "start", "call-1", "--metadata-json", '{"n": 2}', "--idempotency-key", "k1",
        "-o", "json", *on(served.grpc_port),
    )  # fmt: skip
    assert ran.code == 0, ran.err
    started = ran.json()
    assert {"session_id", "call_id", "session_started_at"} <= set(started)
    assert started["call_id"] == "call-1"
    session_id = started["session_id"]

    again = await cli(
        "sessions", "start", "call-1", "--idempotency-key", "k1", "-o", "json",
        *on(served.grpc_port),
    )  # fmt: skip
    assert again.json()["session_id"] == session_id

    got = (await cli("sessions", "get", session_id, "-o", "json", *on(served.grpc_port))).json()
    assert got["session_id"] == session_id
    assert got["state"] == "SESSION_STATE_RUNNING"
    assert got["end_reason"] == "END_REASON_UNSPECIFIED"
    assert got["metadata"] == {"n": 2}
    assert got["created_by"] == "ops"
    assert "ended_at" not in got  # absent, as protojson leaves it

    metrics = await cli("sessions", "metrics", session_id, "-o", "json", *on(served.grpc_port))
    assert metrics.json()["metrics"]["frames__total"] == 3.0
    assert metrics.json()["session_id"] == session_id

    closed = await cli("sessions", "close", session_id, "-o", "json", *on(served.grpc_port))
    session = closed.json()
    assert session["state"] == "SESSION_STATE_ENDED"
    assert session["end_reason"] == "END_REASON_CLOSED_BY_REQUEST"
    assert session["ended_at"].endswith("Z")
    assert closed.out.count("\n") == 1  # one object, one line


async def test_list_filters(served: Served) -> None:
    port = served.grpc_port
    ann = [await start(served, "call-a") for _ in range(3)]
    failed = await start(served, "call-b", "--metadata", "fail=yes")

    async def ended() -> bool:
        return (await served.launcher.get_session(failed)).end_reason is not None

    await wait_until(ended)
    closed = await cli("sessions", "close", ann[0], *on(port))
    assert closed.code == 0, closed.err

    async def ids(*args: str) -> list[str]:
        ran = await cli("sessions", "list", "-o", "json", *args, *on(port))
        assert ran.code == 0, ran.err
        return [s["session_id"] for s in ran.json()["sessions"]]

    assert await ids() == [failed, *ann[::-1]]
    assert await ids("--oldest-first") == [*ann, failed]
    assert await ids("--call", "call-a") == ann[::-1]
    assert await ids("--state", "running") == ann[:0:-1]
    assert await ids("--state", "running", "--state", "ended") == [failed, *ann[::-1]]
    assert await ids("--end-reason", "error", "--ended-since", "1h") == [failed]
    assert await ids("--end-reason", "closed_by_request", "--end-reason", "error") == [
        failed,
        ann[0],
    ]
    assert await ids("--ended-until", "1h") == []
    assert await ids("--since", "1h", "--call", "call-b") == [failed]
    assert await ids("--until", "2000-01-01T00:00:00Z") == []
    assert await ids("--since", "2000-01-01T00:00:00+02:00", "--until", "2999-01-01") == [
        failed,
        *ann[::-1],
    ]
    assert await ids("--created-by", "ops") == [failed, *ann[::-1]]
    assert await ids("--created-by", "someone-else") == []

    table = await cli("sessions", "list", *on(port))
    assert table.code == 0, table.err
    header, *rows = table.out.splitlines()
    assert header.split("  ")[0] == "SESSION"
    for column in ("CALL", "STATE", "END REASON", "STARTED", "ENDED / AGE", "CREATED BY"):
        assert column in header
    assert [row.split()[0] for row in rows] == [failed, *ann[::-1]]
    failed_row = rows[0].split()
    assert failed_row[1:4] == ["call-b", "ended", "error"]
    assert failed_row[-1] == "ops"
    running_row = rows[1].split()
    assert running_row[2:4] == ["running", "-"]
    assert "up" in running_row
    # Aligned: every column starts at the same offset on every line.
    assert {line.index("call-") for line in rows} == {header.index("CALL")}
    assert {line.index("ops") for line in rows} == {header.index("CREATED BY")}


async def test_limit_follows_pages_and_page_token_continues(served: Served) -> None:
    port = served.grpc_port
    made = [await start(served, "call-p") for _ in range(7)]
    newest_first = made[::-1]

    ran = await cli("sessions", "list", "--page-size", "2", "--limit", "5", "-o", "json", *on(port))
    assert ran.code == 0, ran.err
    first = ran.json()
    assert [s["session_id"] for s in first["sessions"]] == newest_first[:5]
    assert first["next_page_token"]

    rest = await cli(
        "sessions", "list", "--page-size", "2", "--page-token", first["next_page_token"],
        "-o", "json", *on(port),
    )  # fmt: skip
    assert rest.code == 0, rest.err
    assert [s["session_id"] for s in rest.json()["sessions"]] == newest_first[5:]
    assert rest.json()["next_page_token"] == ""

    everything = await cli("sessions", "list", "--page-size", "3", "-o", "json", *on(port))
    assert [s["session_id"] for s in everything.json()["sessions"]] == newest_first

    table = await cli("sessions", "list", "--limit", "2", "--oldest-first", *on(port))
    assert [row.split()[0] for row in table.out.splitlines()[1:]] == made[:2]
    assert "--page-token " in table.err  # where to continue, on stderr


async def test_not_found_and_invalid_argument_exit_with_their_status(served: Served) -> None:
    port = served.grpc_port
    missing = await cli("sessions", "get", "no-such-session", *on(port))
    assert missing.code == 64 + 5
    assert missing.out == ""
    assert missing.err.startswith("error: NOT_FOUND: ")
    assert "reason SESSION_NOT_FOUND" in missing.err
    assert missing.err.count("\n") == 1

    for args in (
        ["start", "bad call!"],
        ["list", "--page-token", "not a token"],
        ["list", "--since", "1h", "--until", "2h"],
    ):
        bad = await cli("sessions", *args, *on(port))
        assert bad.code == 64 + 3, (args, bad.err)
        assert bad.err.startswith("error: INVALID_ARGUMENT: "), bad.err

    json_missing = await cli("sessions", "metrics", "nope", "-o", "json", *on(port))
    assert json_missing.code == 69
    assert json_missing.out == ""


async def test_unauthenticated_without_the_token() -> None:
    launcher = AgentLauncher(create_agent, join_call)
    async with serving(launcher, ServeOptions(api_token=TOKEN), http=False) as served:
        port = served.grpc_port
        refused = await cli("sessions", "list", *on(port))
        assert refused.code == 64 + 16
        assert refused.err.startswith("error: UNAUTHENTICATED: ")
        assert "--token" in refused.err

        wrong = await cli("sessions", "list", "--token", "wrong", *on(port))
        assert wrong.code == 80

        assert (await cli("sessions", "list", "--token", TOKEN, *on(port))).code == 0
        from_env = await cli("sessions", "list", *on(port), env={"AGENTPLANE_API_TOKEN": TOKEN})
        assert from_env.code == 0, from_env.err
        started = await cli(
            "sessions", "start", "call-t", "-o", "json", env={
                "AGENTPLANE_API_TOKEN": TOKEN, "AGENTPLANE_SERVER": f"127.0.0.1:{port}"
            },
        )  # fmt: skip
        assert started.code == 0, started.err
        assert started.json()["close_token"]  # auth is on: Start hands out a close token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_nothing_listening_is_unavailable_with_a_hint() -> None:
    port = free_port()
    for command in (["list"], ["get", "x"], ["watch"], ["start", "c"]):
        ran = await cli("sessions", *command, *on(port))
        assert ran.code == 64 + 14, (command, ran.err)
        assert ran.err.startswith("error: UNAVAILABLE: cannot connect: "), ran.err
        assert f"check --server (or AGENTPLANE_SERVER): 127.0.0.1:{port}" in ran.err


async def test_usage_errors_and_help() -> None:
    for args in (
        ["list", "--since", "yesterday"],
        ["list", "--state", "sleeping"],
        ["start", "c", "--metadata", "novalue"],
        ["start", "c", "--metadata-json", "[1]"],
        ["list", "--server", "no-port"],
        ["list", "--tls-key", __file__],
        ["watch", "--epoch", "e"],
    ):
        ran = await cli("sessions", *args)
        assert ran.code == 2, (args, ran.out, ran.err)
    for args in (
        ["-h"],
        ["sessions", "-h"],
        ["sessions", "list", "-h"],
        ["sessions", "watch", "-h"],
    ):
        ran = await cli(*args)
        assert ran.code == 0
        assert "Usage:" in ran.out
    assert "64 + the gRPC status code" in (await cli("sessions", "-h")).out
