"""A streamed response's chunks written at once, with no ASGI message (``LIVE_BODY``).

An event stream's watcher that has caught up is handed each event in the
event log's delivery pass, which must never wait (``EventLog.watch(live=)``).
Through ASGI every chunk is a coroutine chain (the app's ``send``, each
middleware's, uvicorn's) run by a task woken for it; here the server offers
the gateway ``scope["extensions"][LIVE_BODY]["open"]``, which, once the
response head went out, returns a writer of body chunks framed exactly as
uvicorn frames them (HTTP/1.1 chunked encoding). It declines (False) when
uvicorn would have to wait (the transport is over its high-water mark) or
has finished the response; the stream then sends through ASGI as before.

Only a plain chunked response gets a writer: not a HEAD, not one with a
Content-Length, not one whose head a middleware gave a Content-Encoding
(its body would have to be encoded by that middleware).

It reads uvicorn 0.54's request cycle (``response_started``,
``response_complete``, ``chunked_encoding``, ``disconnected``) and flow
control (``write_paused``); ``tests/http/test_live_body.py`` covers them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl

from .writes import JoinedWrites

# uvicorn writes header names lower-cased, each line after a CRLF.
_ENCODED = b"\r\ncontent-encoding:"


class LiveChunks:
    """Writes one response's body chunks at once, or declines (False)."""

    __slots__ = ("_cycle", "_flow", "_transport")

    def __init__(self, cycle: Any, flow: FlowControl, transport: JoinedWrites) -> None:
        self._cycle = cycle
        self._flow = flow
        self._transport = transport

    def __call__(self, chunk: bytes) -> bool:
        cycle = self._cycle
        if (
            cycle.disconnected
            or cycle.response_complete
            or self._flow.write_paused
            or self._transport.is_closing()
        ):
            return False
        if chunk:
            self._transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        return True


def open_live_chunks(
    cycle: Any, flow: FlowControl, writes: JoinedWrites
) -> Callable[[bytes], bool] | None:
    """A writer of ``cycle``'s body chunks, if its response is a plain chunked one under way."""
    if (
        cycle is None
        or not cycle.response_started
        or cycle.response_complete
        or not cycle.chunked_encoding
        or cycle.scope["method"] == "HEAD"
        or _ENCODED in writes.head
    ):
        return None
    return LiveChunks(cycle, flow, writes)
