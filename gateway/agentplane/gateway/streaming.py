"""Server streams over HTTP: newline-delimited JSON, or Server-Sent Events.

By default a stream is grpc-gateway's: ``Content-Type: application/json``, one
``{"result": <message>}`` line per message, flushed as it arrives, and a
mid-stream failure as a last ``{"error": <Status>}`` line (the HTTP status is
already 200 by then).

With ``Accept: text/event-stream`` it is Server-Sent Events: each message is
``id: <cursor>`` + ``data: <message JSON>``, a failure is ``event: error`` with
the Status as data, and a comment line goes out every ``heartbeat`` seconds
so proxies keep the connection and a vanished client is noticed. The event id
is the message's ``cursor`` field; a reconnecting EventSource sends it back as
``Last-Event-ID``, which fills the request's ``after_cursor`` (see
``SSE_RESUME``), so the stream resumes where it broke off.

A client that disconnects ends the stream at once: the upstream iterator is
closed, which cancels the call.

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
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from google.protobuf.message import Message
from starlette.types import Receive, Send

from .codec import dumps, render
from .errors import RpcError, internal_error

logger = logging.getLogger(__name__)

SSE_TYPE = "text/event-stream"
# (stream message field used as the SSE event id, request field Last-Event-ID fills)
SSE_RESUME = ("cursor", "after_cursor")
DEFAULT_HEARTBEAT = 15.0


def wants_sse(accept: str) -> bool:
    return any(part.split(";")[0].strip() == SSE_TYPE for part in accept.split(","))


class RenderMemo:
    """``render(message)``, remembered for the last ``size`` message objects.

    Keyed by identity: each entry holds its message, so the ``id`` of a cached
    message cannot be reused by another object while the entry lives. A
    message yielded to a thousand streams is rendered once. Messages that are
    never shared (each proxied upstream message is its own object) are
    rendered once each, as without the memo; at most ``size`` of them are kept.
    """

    def __init__(self, render: Callable[[Message], bytes], size: int = 1024) -> None:
        self._render = render
        self.size = size
        self._entries: OrderedDict[int, tuple[Message, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __call__(self, message: Message) -> bytes:
        entry = self._entries.get(id(message))
        if entry is not None and entry[0] is message:
            return entry[1]
        chunk = self._render(message)
        self._entries[id(message)] = (message, chunk)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return chunk


def _ndjson_line(message: Message) -> bytes:
    return dumps({"result": render(message)}) + b"\n"


def _sse_frame(message: Message) -> bytes:
    id_field = SSE_RESUME[0]
    head = b""
    if id_field in message.DESCRIPTOR.fields_by_name:
        head = f"id: {getattr(message, id_field)}\n".encode()
    return head + b"data: " + dumps(render(message)) + b"\n\n"


NDJSON_LINES = RenderMemo(_ndjson_line)
SSE_FRAMES = RenderMemo(_sse_frame)


class _Format:
    content_type = "application/json"

    def message(self, message: Message) -> bytes:
        return NDJSON_LINES(message)

    def error(self, error: RpcError) -> bytes:
        return dumps({"error": error.to_dict()}) + b"\n"

    def heartbeat(self) -> bytes | None:
        return None


class _SseFormat(_Format):
    content_type = "text/event-stream; charset=utf-8"

    def message(self, message: Message) -> bytes:
        return SSE_FRAMES(message)

    def error(self, error: RpcError) -> bytes:
        return b"event: error\ndata: " + dumps(error.to_dict()) + b"\n\n"

    def heartbeat(self) -> bytes | None:
        return b": keepalive\n\n"


async def stream_response(
    messages: AsyncIterator[Message],
    receive: Receive,
    send: Send,
    *,
    sse: bool,
    heartbeat: float = DEFAULT_HEARTBEAT,
) -> None:
    """Send ``messages`` as one streamed HTTP response until either side ends."""
    fmt: _Format = _SseFormat() if sse else _Format()
    headers = [
        (b"content-type", fmt.content_type.encode()),
        (b"cache-control", b"no-cache"),
        # nginx and similar proxies would otherwise buffer the stream.
        (b"x-accel-buffering", b"no"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    lock = asyncio.Lock()

    async def write(chunk: bytes) -> None:
        async with lock:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

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
                except Exception:  # a backend should raise RpcError: a bug, logged here once
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
