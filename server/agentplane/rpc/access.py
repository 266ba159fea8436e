"""The gRPC port's access log and request ids, from grpclib's server events.

``install(server)`` listens to three of grpclib's events on ``server``:

- ``RecvRequest``: takes the caller's ``x-request-id`` (or makes one), sets
  ``request_id_var`` for the call's task, and wraps the method so a call that
  ends without trailers (cancelled by the client, or by its deadline) is still
  logged;
- ``SendInitialMetadata``: returns the id to the caller;
- ``SendTrailingMetadata``: returns the id in the trailers of a trailers-only
  answer (an error before any message), and logs the call with the status sent.

One line per call on ``agentplane.access`` (INFO), when the call ends (a
stream when it closes)::

    gRPC /agentplane.v1.SessionService/Get OK 1.2 ms peer=127.0.0.1:51234

with the fields of the line on the record for the formatter, and the
request id from ``request_id_var``, set in the call's task
(``agentplane.server.logs``).

The call's own state (method, peer, deadline, whether it was logged) is kept
by the call's task (grpclib runs each call in one), not in a context
variable: every task a call starts copies its context, and a session started
by a Start outlives the call. Its task keeps the request id (its log lines
name the Start that made it) but not the access line's state, ~0.5 KiB per
held session that it kept before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from grpclib.const import Status
from grpclib.events import RecvRequest, SendInitialMetadata, SendTrailingMetadata, listen
from grpclib.exceptions import StreamTerminatedError
from grpclib.server import Server

from agentplane.net import ACCESS_LOGGER, REQUEST_ID_HEADER, accept_request_id, request_id_var

access_log = logging.getLogger(ACCESS_LOGGER)


class _Call:
    __slots__ = ("deadline", "initial_sent", "logged", "method", "peer", "request_id", "started")

    def __init__(self, method: str, peer: str | None, request_id: str, deadline: Any) -> None:
        self.method = method
        self.peer = peer
        self.request_id = request_id
        self.deadline = deadline
        self.started = time.perf_counter()
        self.initial_sent = False
        self.logged = False


# The call each call's task is serving; an entry goes when its task is done.
_calls: dict[asyncio.Task[Any], _Call] = {}


def _current_call() -> _Call | None:
    task = asyncio.current_task()
    return None if task is None else _calls.get(task)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return None  # binary metadata is never an id
    return value if isinstance(value, str) else None


def _log(call: _Call, status: Status) -> None:
    call.logged = True
    if not access_log.isEnabledFor(logging.INFO):
        return
    duration_ms = (time.perf_counter() - call.started) * 1000
    access_log.info(
        "gRPC %s %s %.1f ms peer=%s",
        call.method,
        status.name,
        duration_ms,
        call.peer or "-",
        extra={
            "protocol": "grpc",
            "method": call.method,
            "status": status.name,
            "duration_ms": round(duration_ms, 3),
            "peer": call.peer,
        },
    )


async def _on_request(event: RecvRequest) -> None:
    given = event.metadata.get(REQUEST_ID_HEADER) if event.metadata is not None else None
    address = event.peer.addr() if event.peer is not None else None
    call = _Call(
        event.method_name,
        f"{address[0]}:{address[1]}" if address else None,
        accept_request_id(_text(given)),
        event.deadline,
    )
    # Set in the call's own task (grpclib runs each call in one): every line
    # logged while it is served names the id.
    request_id_var.set(call.request_id)
    task = asyncio.current_task()
    if task is not None:
        if task not in _calls:
            task.add_done_callback(_calls.pop)
        _calls[task] = call
    method = event.method_func

    async def logged(stream: Any) -> None:
        try:
            await method(stream)
        except (asyncio.CancelledError, StreamTerminatedError):
            # No trailers follow: the client left, or the deadline passed.
            if not call.logged:
                expired = call.deadline is not None and call.deadline.time_remaining() <= 0
                _log(call, Status.DEADLINE_EXCEEDED if expired else Status.CANCELLED)
            raise

    event.method_func = logged


async def _on_initial_metadata(event: SendInitialMetadata) -> None:
    call = _current_call()
    if call is not None:
        call.initial_sent = True
        event.metadata[REQUEST_ID_HEADER] = call.request_id


async def _on_trailing_metadata(event: SendTrailingMetadata) -> None:
    call = _current_call()
    if call is None:
        return
    if not call.initial_sent:  # trailers-only: the id goes with them
        event.metadata[REQUEST_ID_HEADER] = call.request_id
    if not call.logged:
        _log(call, event.status)


def install(server: Server) -> None:
    """Request ids and the access log on every call ``server`` serves."""
    listen(server, RecvRequest, _on_request)
    listen(server, SendInitialMetadata, _on_initial_metadata)
    listen(server, SendTrailingMetadata, _on_trailing_metadata)
