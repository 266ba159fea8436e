"""``agentplane sessions list | get | start | close | metrics | watch``: a gRPC client CLI.

Each command makes its calls with the generated betterproto2 client over a
grpclib channel to ``--server``, prints a table (``-o table``, the default)
or protojson (``-o json``: one object per command, one per line for
``watch``), and exits with the call's status: 0 when it succeeded, else
``64 + code`` (failures.py) with one line on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from agentplane.clients.betterproto import (
    CloseRequest,
    EndReason,
    GetRequest,
    ListSessionsRequest,
    ListSessionsResponse,
    MetricsRequest,
    Session,
    SessionServiceStub,
    SessionState,
    StartRequest,
    StreamEventsResponse,
    google,
)

from . import render
from .connection import DEFAULT_SERVER, Connection, TlsFiles, parse_server
from .failures import EXIT_OFFSET, Failure, failure
from .times import parse_instant
from .watching import Backoff, Position, watch

T = TypeVar("T")

#: Exit code of a unary command interrupted by Ctrl-C (the shell's 128 + SIGINT).
INTERRUPTED = 130

EXIT_CODES_HELP = (
    f"Exit status: 0 on success; {EXIT_OFFSET} + the gRPC status code when a call fails "
    f"(INVALID_ARGUMENT {EXIT_OFFSET + 3}, NOT_FOUND {EXIT_OFFSET + 5}, UNAUTHENTICATED "
    f"{EXIT_OFFSET + 16}, UNAVAILABLE {EXIT_OFFSET + 14} also when nothing listens); "
    "2 for a usage error."
)


@dataclass(frozen=True)
class Invocation:
    """What every command gets: where to connect, and how to print."""

    connection: Connection
    output: str  # "table" or "json"

    @property
    def json(self) -> bool:
        return self.output == "json"

    def run(self, call: Callable[[SessionServiceStub], Awaitable[T]]) -> T:
        """Run ``call`` with a connected stub; a failed call exits with its status."""

        async def main() -> T:
            channel = self.connection.channel()
            try:
                return await call(self.connection.stub(channel))
            finally:
                channel.close()

        try:
            return asyncio.run(main())
        except KeyboardInterrupt:
            sys.exit(INTERRUPTED)
        except Exception as error:
            fail(error, self.connection)


def fail(error: BaseException, connection: Connection) -> NoReturn:
    """Print why ``error`` failed the command, and exit with its status (or re-raise)."""
    found = error if isinstance(error, Failure) else failure(error, connection.address)
    if found is None:
        raise error
    click.echo(found.line(), err=True)
    sys.exit(found.exit_code)


def _tls(
    tls: bool, ca: Path | None, cert: Path | None, key: Path | None, server_name: str | None
) -> TlsFiles | None:
    if key is not None and cert is None:
        raise click.UsageError("--tls-key needs --tls-cert")
    if not (tls or ca or cert):
        if server_name:
            raise click.UsageError("--tls-server-name needs TLS (--tls or --tls-ca)")
        return None
    files = TlsFiles(ca=ca, cert=cert, key=key, server_name=server_name)
    try:
        files.context()  # unreadable or mismatched files are a usage error, before any call
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        raise click.UsageError(f"cannot use the TLS files: {error}") from None
    return files


def connected(command: Callable[..., None]) -> Callable[..., None]:
    """Add the connection and output options to ``command``; it gets an Invocation first."""

    @functools.wraps(command)
    def wrapper(
        server: str,
        token: str | None,
        timeout: float,
        tls: bool,
        tls_ca: Path | None,
        tls_cert: Path | None,
        tls_key: Path | None,
        tls_server_name: str | None,
        output: str,
        **kwargs: Any,
    ) -> None:
        try:
            host, port = parse_server(server)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--server") from None
        connection = Connection(
            host,
            port,
            token=token or None,
            timeout=timeout or None,
            tls=_tls(tls, tls_ca, tls_cert, tls_key, tls_server_name),
        )
        command(Invocation(connection, output), **kwargs)

    existing = click.Path(exists=True, dir_okay=False, path_type=Path)
    options = [
        click.option(
            "--server", envvar="AGENTPLANE_SERVER", default=DEFAULT_SERVER, show_default=True,
            metavar="HOST:PORT", help="The agentplane gRPC server (env AGENTPLANE_SERVER).",
        ),
        click.option(
            "--token", envvar="AGENTPLANE_API_TOKEN", default=None, show_default=False,
            help="API token, sent as 'authorization: Bearer TOKEN' (env AGENTPLANE_API_TOKEN).",
        ),
        click.option(
            "--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0),
            help="Deadline of each call in seconds (watch: of connecting); 0 for none.",
        ),
        click.option("--tls", is_flag=True, help="Use TLS, trusting the system's CAs."),
        click.option(
            "--tls-ca", type=existing, metavar="PATH",
            help="Use TLS, trusting the CA certificates in PATH (PEM).",
        ),
        click.option(
            "--tls-cert", type=existing, metavar="PATH",
            help="Client certificate (PEM) for mutual TLS; turns TLS on.",
        ),
        click.option(
            "--tls-key", type=existing, metavar="PATH",
            help="The client certificate's key (PEM), unless it is in --tls-cert's file.",
        ),
        click.option(
            "--tls-server-name", metavar="NAME",
            help="The name the server's certificate must carry (default: the --server host).",
        ),
        click.option(
            "-o", "--output", type=click.Choice(["table", "json"]), default="table",
            show_default=True, help="table for people; json (protojson) for scripts.",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


class _Instant(click.ParamType):  # type: ignore[type-arg]  # generic in newer click only
    """RFC 3339, or a duration back from now (30m, 1h, 2d)."""

    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime.datetime:
        if isinstance(value, datetime.datetime):
            return value
        try:
            return parse_instant(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


INSTANT = _Instant()
STATES = [s.name.lower() for s in SessionState if s is not SessionState.UNSPECIFIED]
REASONS = [r.name.lower() for r in EndReason if r is not EndReason.UNSPECIFIED]


@click.group(
    "sessions",
    help="Talk to an agentplane server over gRPC: list, read, start, close and watch sessions.",
    epilog=EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
def sessions() -> None:
    pass


def _print_session(invocation: Invocation, session: Session | None) -> None:
    assert session is not None, "the server answered no session"
    if invocation.json:
        click.echo(render.to_json(render.message_dict(session)))
    else:
        click.echo(render.session_details(session))


@sessions.command("list", epilog=EXIT_CODES_HELP)
@click.option("--call", "call_id", default="", help="Only the sessions of this call.")
@click.option(
    "--state", "states", multiple=True, type=click.Choice(STATES),
    help="Only sessions in this state (repeat it for any of several).",
)  # fmt: skip
@click.option(
    "--end-reason", "end_reasons", multiple=True, type=click.Choice(REASONS),
    help="Only sessions that ended for this reason (repeat it for any of several).",
)  # fmt: skip
@click.option("--created-by", default="", help="Only sessions started by this user.")
@click.option("--since", type=INSTANT, help="Started at or after TIME (RFC 3339, or 1h: ago).")
@click.option("--until", type=INSTANT, help="Started before TIME.")
@click.option("--ended-since", type=INSTANT, help="Ended at or after TIME.")
@click.option("--ended-until", type=INSTANT, help="Ended before TIME.")
@click.option("--oldest-first", is_flag=True, help="Oldest first (default: newest first).")
@click.option(
    "--limit", type=click.IntRange(min=1),
    help="At most N sessions, across as many pages as it takes (default: all).",
)  # fmt: skip
@click.option(
    "--page-size", type=click.IntRange(1, 1000),
    help="Sessions asked for per call (default: the server's, 50).",
)  # fmt: skip
@click.option(
    "--page-token", default="",
    help="Continue from this next_page_token (with the same filters).",
)  # fmt: skip
@connected
def list_command(
    invocation: Invocation,
    call_id: str,
    states: tuple[str, ...],
    end_reasons: tuple[str, ...],
    created_by: str,
    since: datetime.datetime | None,
    until: datetime.datetime | None,
    ended_since: datetime.datetime | None,
    ended_until: datetime.datetime | None,
    oldest_first: bool,
    limit: int | None,
    page_size: int | None,
    page_token: str,
) -> None:
    """List sessions (running, and ended within the server's retention), newest first.

    \b
    agentplane sessions list --call my-call --state running
    agentplane sessions list --end-reason error --ended-since 1h
    agentplane sessions list --limit 500 -o json | jq -r '.sessions[].session_id'

    With --limit, the JSON's next_page_token continues where the list stopped.
    """
    template = ListSessionsRequest(
        call_id=call_id,
        states=[SessionState[s.upper()] for s in states],
        end_reasons=[EndReason[r.upper()] for r in end_reasons],
        created_by=created_by,
        started_after=since,
        started_before=until,
        ended_after=ended_since,
        ended_before=ended_until,
        order_by="session_started_at" if oldest_first else "",
    )

    async def pages(stub: SessionServiceStub) -> ListSessionsResponse:
        found: list[Session] = []
        token = page_token
        while True:
            size = page_size or 0  # 0: the server's default
            if limit is not None:
                # Never more than wanted: the page's token then continues exactly there.
                size = min(size or 50, limit - len(found))
            request = ListSessionsRequest.from_dict(template.to_dict())
            request.page_size, request.page_token = size, token
            page = await stub.list_sessions(request)
            found += page.sessions
            token = page.next_page_token
            if not token or (limit is not None and len(found) >= limit):
                return ListSessionsResponse(sessions=found, next_page_token=token)

    listed = invocation.run(pages)
    if invocation.json:
        click.echo(render.to_json(render.message_dict(listed)))
        return
    click.echo(render.sessions_table(listed.sessions))
    if listed.next_page_token:
        click.echo(f"(more: --page-token {listed.next_page_token})", err=True)


@sessions.command("get", epilog=EXIT_CODES_HELP)
@click.argument("session_id")
@click.option("--call", "call_id", default="", help="The session must belong to this call.")
@connected
def get_command(invocation: Invocation, session_id: str, call_id: str) -> None:
    """Show a session: running, or ended within the server's retention."""
    got = invocation.run(lambda stub: stub.get(GetRequest(session_id=session_id, call_id=call_id)))
    _print_session(invocation, got.session)


@sessions.command("close", epilog=EXIT_CODES_HELP)
@click.argument("session_id")
@click.option("--call", "call_id", default="", help="The session must belong to this call.")
@connected
def close_command(invocation: Invocation, session_id: str, call_id: str) -> None:
    """End a session; show it as it ended (closing an ended session is no error)."""
    closed = invocation.run(
        lambda stub: stub.close(CloseRequest(session_id=session_id, call_id=call_id))
    )
    _print_session(invocation, closed.session)


@sessions.command("metrics", epilog=EXIT_CODES_HELP)
@click.argument("session_id")
@click.option("--call", "call_id", default="", help="The session must belong to this call.")
@connected
def metrics_command(invocation: Invocation, session_id: str, call_id: str) -> None:
    """Show a session's live metrics (NaN: no value yet)."""
    metrics = invocation.run(
        lambda stub: stub.metrics(MetricsRequest(session_id=session_id, call_id=call_id))
    )
    if invocation.json:
        click.echo(render.to_json(render.message_dict(metrics)))
    else:
        click.echo(render.metrics_details(metrics))


def _metadata(pairs: tuple[str, ...], as_json: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if as_json is not None:
        try:
            loaded = json.loads(as_json)
        except ValueError as error:
            raise click.BadParameter(f"not JSON: {error}", param_hint="--metadata-json") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("expected a JSON object", param_hint="--metadata-json")
        metadata.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--metadata")
        metadata[key] = value
    return metadata


@sessions.command("start", epilog=EXIT_CODES_HELP)
@click.argument("call_id")
@click.option("--call-type", default="", help="The call type (server default: default).")
@click.option(
    "--metadata", "pairs", multiple=True, metavar="KEY=VALUE",
    help="Metadata for the agent factory, a string value (repeat it).",
)  # fmt: skip
@click.option(
    "--metadata-json", metavar="JSON",
    help="Metadata as a JSON object (typed values); --metadata keys override it.",
)  # fmt: skip
@click.option("--idempotency-key", default="", help="Makes the Start safe to retry.")
@connected
def start_command(
    invocation: Invocation,
    call_id: str,
    call_type: str,
    pairs: tuple[str, ...],
    metadata_json: str | None,
    idempotency_key: str,
) -> None:
    """Start an agent into CALL_ID; answers once the agent is in the call."""
    metadata = _metadata(pairs, metadata_json)
    request = StartRequest(
        call_id=call_id,
        call_type=call_type,
        metadata=google.protobuf.Struct.from_dict(metadata) if metadata else None,
        idempotency_key=idempotency_key,
    )
    started = invocation.run(lambda stub: stub.start(request))
    if invocation.json:
        click.echo(render.to_json(render.message_dict(started)))
    else:
        click.echo(render.started_details(started))


@sessions.command("watch", epilog=EXIT_CODES_HELP)
@click.argument("session_id", required=False, default="")
@click.option(
    "--after-cursor", type=click.IntRange(min=0),
    help="Resume after this cursor (0: everything the server still holds).",
)  # fmt: skip
@click.option("--epoch", default="", help="The epoch --after-cursor was read in.")
@connected
def watch_command(
    invocation: Invocation, session_id: str, after_cursor: int | None, epoch: str
) -> None:
    """Follow events live: of SESSION_ID until it ends, or of every session.

    One line per event (-o json: one JSON object per line). When the connection
    drops, it reconnects with backoff and resumes after the last cursor and
    epoch seen, so nothing is missed or repeated; events the server no longer
    held show as a GAP line (and a warning on stderr). Connection notes go to
    stderr. Ctrl-C stops the watch with status 0.
    """
    if epoch and after_cursor is None:
        raise click.UsageError("--epoch goes with --after-cursor")
    position = Position(after_cursor, epoch)
    following = watch(
        invocation.connection,
        session_id,
        position,
        functools.partial(_print_event, invocation),
        _note,
        Backoff(),
    )
    try:
        interrupted = asyncio.run(_until_interrupted(following))
    except KeyboardInterrupt:  # before the loop took SIGINT over
        interrupted = True
    except Exception as error:
        fail(error, invocation.connection)
    if interrupted:
        resume = f"--after-cursor {position.cursor}" + (
            f" --epoch {position.epoch}" if position.epoch else ""
        )
        _note("stopped" + (f"; resume with {resume}" if position.cursor is not None else ""))


async def _until_interrupted(work: Coroutine[Any, Any, None]) -> bool:
    """Run ``work`` until it ends (False) or SIGINT (Ctrl-C) cancels it (True)."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    # Not in a thread other than the main one (tests), nor on Windows: Ctrl-C is then
    # asyncio.run's KeyboardInterrupt.
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        await task
    except asyncio.CancelledError:
        if not interrupted:
            raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    return interrupted


def _note(text: str) -> None:
    click.echo(f"agentplane: {text}", err=True)


def _print_event(invocation: Invocation, event: StreamEventsResponse) -> None:
    if event.gap is not None:
        _note("gap: " + render.gap_text(event))
    if invocation.json:
        click.echo(render.to_json(render.message_dict(event)))
    else:
        click.echo(render.event_line(event))
