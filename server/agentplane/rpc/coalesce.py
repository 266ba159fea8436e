"""Consecutive writes to one gRPC connection sent as one socket write.

grpclib writes h2's output to the transport after every frame it builds, and
asyncio's socket transport sends each write at once: an event handed to the 25
watchers of one connection cost up to 25 ``send`` system calls, the largest
single cost of the fan-out (issue 16). Here writes wait only while the same
connection keeps writing: the first write to another connection of the port
(``WriteBatch``) sends what the previous one gathered, and the end of the
loop pass (``call_soon``) sends the rest. Nothing waits for a timer or for
other connections' work, so a watcher's message goes out as soon as the run
of writes it belongs to ends; bytes keep their order per connection; closing
sends what is pending first.
"""

from __future__ import annotations

import asyncio
from typing import Any


class WriteBatch:
    """The one connection of a port whose writes are being gathered."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: CoalescingTransport | None = None

    def switch_to(self, transport: CoalescingTransport) -> None:
        current = self.current
        if current is not transport:
            if current is not None:
                current.flush()
            self.current = transport


class CoalescingTransport:
    """``transport`` with consecutive writes joined; everything else passes through."""

    def __init__(self, transport: asyncio.Transport, batch: WriteBatch) -> None:
        self._transport = transport
        self._batch = batch
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._batch.switch_to(self)
        if not self._pending:
            # The end of this pass sends whatever no other write sent first.
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Send what is pending now."""
        if self._batch.current is self:
            self._batch.current = None
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        if self._batch.current is self:
            self._batch.current = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, pause_reading, ...: the transport's own.
        return getattr(self._transport, name)
