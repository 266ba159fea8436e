"""Server streams over HTTP: newline-delimited JSON, or Server-Sent Events.

By default a stream is grpc-gateway's: ``Content-Type: application/json``, one
``{"result": <message>}`` line per message, flushed as it arrives, and a
mid-stream failure as a last ``{"error": <Status>}`` line (the HTTP status is
already 200 by then).

With ``Accept: text/event-stream`` it is Server-Sent Events: each message is
``id: <event id>`` + ``data: <message JSON>``, a failure is ``event: error``
with the Status as data, and a comment line goes out every ``heartbeat``
seconds so proxies keep the connection and a vanished client is noticed. The
event id is made of message fields (``SseResume``: by default ``cursor``); a
reconnecting EventSource sends it back as ``Last-Event-ID``, which fills the
matching request fields (``after_cursor``), so the stream resumes where it
broke off.

A client that disconnects ends the stream at once: the upstream iterator is
closed, which cancels the call.

A message may also be written by the HTTP server itself, at once, with no
ASGI message: a server that can offers the ASGI extension ``LIVE_BODY``
(the embedded server does), and a backend given ``LiveMessages`` (see
``backend.CallInfo``) hands it the messages of a watcher that has caught up;
the bytes are the same. Only a response whose head went out unencoded and
chunked is written this way (middleware that compresses a body sets its
Content-Encoding, and then every chunk goes through ``send``).

A message is rendered once for all streams: when a backend hands the same
message object to many streams (the embedded server shares each event's
message among all its watchers), every stream sends the bytes of the first
rendering (``RenderMemo``). A backend must therefore never change a message it
has yielded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Container
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from starlette.types import Receive, Scope, Send

from .codec import RenderMemo, dumps, render, set_from_strings
from .errors import RpcError, internal_error

logger = logging.getLogger(__name__)

SSE_TYPE = "text/event-stream"
DEFAULT_HEARTBEAT = 15.0
# The ASGI extension of a server that writes a streamed body's chunks at once:
# ``scope["extensions"][LIVE_BODY]["open"]()``, called once the response head
# was sent, returns ``write(chunk) -> bool`` (False: not now, use ``send``),
# or None when this response's body cannot be written so.
LIVE_BODY = "gateway.live_body"


@dataclass(frozen=True, slots=True)
class SseResume:
    """How a stream's SSE event ids are made, and read back from ``Last-Event-ID``.

    The id is the message's ``id_fields`` joined by ``separator``; a
    ``Last-Event-ID`` is split back into the request's ``request_fields``
    (same order). A cursor alone cannot say which log it came from, so an API
    whose streams restart (a new server, another node) names the log too:
    ``SseResume(("epoch", "cursor"), ("epoch", "after_cursor"))`` gives ids
    such as ``9f2c41d07ab3e815:42``. An id with fewer parts than fields (one
    made before a field was added) fills the last fields and leaves the first
    unset. Fields a message or request lacks are skipped: such a stream has
    no ids, or ignores ``Last-Event-ID``.
    """

    id_fields: tuple[str, ...] = ("cursor",)
    request_fields: tuple[str, ...] = ("after_cursor",)
    separator: str = ":"

    def __post_init__(self) -> None:
        if not self.id_fields or len(self.id_fields) != len(self.request_fields):
            raise ValueError("SseResume: id_fields and request_fields must pair one to one")

    def event_id(self, message: Message) -> str | None:
        fields = message.DESCRIPTOR.fields_by_name
        if any(name not in fields for name in self.id_fields):
            return None
        return self.separator.join(str(getattr(message, name)) for name in self.id_fields)

    def accepts(self, request_fields: Container[str]) -> bool:
        """Whether a ``Last-Event-ID`` means anything to a request of these fields."""
        return all(name in request_fields for name in self.request_fields)

    def fill(self, request: Message, last_event_id: str) -> None:
        """Set ``request``'s resume fields from ``last_event_id`` (INVALID_ARGUMENT if bad)."""
        parts = last_event_id.strip().rsplit(self.separator, len(self.request_fields) - 1)
        names = self.request_fields[len(self.request_fields) - len(parts) :]
        for name, part in zip(names, parts, strict=True):
            set_from_strings(request, name, [part], source="Last-Event-ID")


# The default: the message's ``cursor`` is the id, and fills ``after_cursor``.
CURSOR_RESUME = SseResume()


def wants_sse(accept: str) -> bool:
    return any(part.split(";")[0].strip() == SSE_TYPE for part in accept.split(","))


def _ndjson_line(message: Message) -> bytes:
    return dumps({"result": render(message)}) + b"\n"


NDJSON_LINES = RenderMemo(_ndjson_line)


class StreamFormat:
    """grpc-gateway's newline-delimited JSON: one ``{"result": ...}`` line per message."""

    content_type = "application/json"

    def message(self, message: Message) -> bytes:
        return NDJSON_LINES(message)

    def error(self, error: RpcError) -> bytes:
        return dumps({"error": error.to_dict()}) + b"\n"

    def heartbeat(self) -> bytes | None:
        return None


class SseFormat(StreamFormat):
    """Server-Sent Events, ids made by ``resume``; one memo of frames per format."""

    content_type = "text/event-stream; charset=utf-8"

    def __init__(self, resume: SseResume = CURSOR_RESUME) -> None:
        self.resume = resume
        self.frames = RenderMemo(self._frame)

    def _frame(self, message: Message) -> bytes:
        event_id = self.resume.event_id(message)
        head = b"" if event_id is None else f"id: {event_id}\n".encode()
        return head + b"data: " + dumps(render(message)) + b"\n\n"

    def message(self, message: Message) -> bytes:
        return self.frames(message)

    def error(self, error: RpcError) -> bytes:
        return b"event: error\ndata: " + dumps(error.to_dict()) + b"\n\n"

    def heartbeat(self) -> bytes | None:
        return b": keepalive\n\n"


NDJSON = StreamFormat()


class LiveMessages:
    """A stream's messages written by the HTTP server at once, when it can (``LIVE_BODY``).

    Call it with a message: True once its bytes (in ``fmt``) were written,
    False when they must go through the stream's ``send`` (the server offers
    no such writer, the response is not a plain chunked one, the connection
    cannot take more now, or the stream has not started).
    """

    __slots__ = ("_fmt", "_open", "_write")

    def __init__(self, scope: Scope, fmt: StreamFormat) -> None:
        extension = scope.get("extensions", {}).get(LIVE_BODY)
        self._open: Callable[[], Callable[[bytes], bool] | None] | None = (
            extension.get("open") if extension else None
        )
        self._fmt = fmt
        self._write: Callable[[bytes], bool] | None = None

    def start(self) -> None:
        """The response head was sent: ask the server for its writer."""
        if self._open is not None:
            self._write = self._open()

    def __call__(self, message: Message) -> bool:
        write = self._write
        return write is not None and write(self._fmt.message(message))


async def stream_response(
    messages: AsyncIterator[Message],
    receive: Receive,
    send: Send,
    *,
    fmt: StreamFormat = NDJSON,
    heartbeat: float = DEFAULT_HEARTBEAT,
    errors: Callable[[Exception], RpcError] | None = None,
    live: LiveMessages | None = None,
) -> None:
    """Send ``messages`` in ``fmt`` as one streamed HTTP response until either side ends.

    ``messages`` ends with an ``RpcError`` for a failure the caller may see;
    ``errors`` turns any other exception into one (a backend's own error
    table, applied here rather than by a generator wrapped around every
    message), else it is a bug: logged, and sent as INTERNAL. ``live`` (the
    one the backend was given, if any) starts once the head is sent.
    """
    headers = [
        (b"content-type", fmt.content_type.encode()),
        (b"cache-control", b"no-cache"),
        # nginx and similar proxies would otherwise buffer the stream.
        (b"x-accel-buffering", b"no"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if live is not None:
        live.start()
    lock = asyncio.Lock()

    async def locked_write(chunk: bytes) -> None:
        async with lock:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def sole_write(chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})

    # Heartbeats and messages share the body; without heartbeats the pump is
    # its only writer and needs no lock (every message to every watcher).
    write = sole_write if fmt.heartbeat() is None else locked_write

    async def pump() -> None:
        try:
            while True:
                # Only the messages' failures end the stream with an error; a
                # failed write is the connection's.
                try:
                    message = await anext(messages)
                except StopAsyncIteration:
                    return
                except RpcError as error:
                    await write(fmt.error(error))
                    return
                except Exception as error:
                    if errors is not None:
                        await write(fmt.error(errors(error)))
                        return
                    # A backend should raise RpcError: a bug, logged here once.
                    logger.exception("stream failed")
                    await write(fmt.error(internal_error()))
                    return
                await write(fmt.message(message))
        finally:
            await messages.aclose()  # type: ignore[attr-defined]

    async def beat() -> None:
        chunk = fmt.heartbeat()
        if chunk is None:
            await asyncio.Event().wait()  # nothing to send: just wait to be cancelled
        while True:
            await asyncio.sleep(heartbeat)
            assert chunk is not None
            await write(chunk)

    finished = await _first_of(pump, beat, lambda: _disconnected(receive))
    if finished == "pump":
        with contextlib.suppress(OSError, RuntimeError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _first_of(*jobs: Callable[[], Awaitable[Any]]) -> str:
    """Run the jobs until one finishes; cancel and await the rest. Returns its name."""
    tasks = {asyncio.ensure_future(job()): job for job in jobs}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first = next(iter(done))
    error = first.exception() if not first.cancelled() else None
    if error is not None and not isinstance(error, OSError):
        raise error
    return getattr(tasks[first], "__name__", "")
