"""A response's head and body in one socket send.

uvicorn writes a response head to the transport when the app sends
``http.response.start``, and the body when it sends ``http.response.body``;
asyncio sends each write at once (``TCP_NODELAY``). A JSON answer was two
system calls and two packets, and the client woke twice. ``JoinedWrites``
holds a response's first write (its head; ``hold_next()`` marks where a
response begins) until its body: the body's first write goes out with it in
one send. A head whose body is framed by Content-Length waits for that write,
or for the response's end (``flush()``: an empty body, a HEAD); any other
first write (a stream's head, whose first event comes later) is sent at the
end of the loop pass (``call_soon``) if nothing joined it, so nothing waits
for a timer or for another connection. Later writes of a response (a
stream's events) go straight out: a fan-out to many streams pays nothing for
this. Bytes keep their order; closing sends what is held first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class JoinedWrites:
    """``transport`` with a response's head joined to its body; everything else passes through."""

    __slots__ = ("_body_follows", "_held", "_hold", "_loop", "_transport", "head")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        body_follows: Callable[[], bool] = lambda: False,
    ) -> None:
        """``body_follows()``, asked when a head is held: True when that head frames
        its body by Content-Length, so the body's write, or ``flush()`` at the
        response's end, is sure to send it (no end-of-pass callback needed)."""
        self._transport = transport
        self._loop = loop
        self._body_follows = body_follows
        self._hold = False
        self._held: bytes | None = None
        # The head of the latest response (its first write): what went out, as written.
        self.head = b""

    def hold_next(self) -> None:
        """A response begins: hold its first write (the head) for what follows it."""
        self._hold = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif self._hold:
            self._hold = False
            self._held = self.head = bytes(data)
            if not self._body_follows():
                self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Send what is held now."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, pause_reading, ...: the transport's own.
        return getattr(self._transport, name)
