"""Every session's timers behind one event-loop timer.

With 10,000 sessions held, each session's idle timer sat in the event loop's
own timer heap. The loop drops a cancelled timer early only once cancelled
ones are half of that heap, so with 10,000 live timers every short timer
cancelled meanwhile (uvicorn re-arms a keep-alive timer per request) stayed
for its whole delay: thousands of dead handles that survived into the
collector's older generations, and a purge that rebuilt the 20,000-entry heap
in one loop iteration (25 ms on a busy 2-core VM; bench/held_stall.py). Here
the sessions' timers have their own heap, and the loop holds one timer for
its earliest: the loop's heap stays small, so it drops cancelled timers as
designed.

The handles are ``asyncio.Handle`` with a ``when()``, as the loop's timer
handles: the callback runs in the context current when it was armed, an
exception goes to the loop's exception handler, and ``cancel()``,
``cancelled()`` and ``when()`` answer as the loop's do. They touch no loop
internals (``asyncio.TimerHandle.cancel`` calls one that only the stdlib loop
has), so they work on any loop, uvloop's included. A
wave of timers due together runs at most ``MAX_PER_ITERATION`` per loop
iteration, so other callbacks (a Get) wait for a slice of it, not all of it.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import weakref
from collections.abc import Callable
from typing import Any

# Timers run per loop iteration at most (~3 µs each): a bounded slice.
MAX_PER_ITERATION = 200
# Drop cancelled timers from the heap once they are this many and more than
# half of it (the loop's own rule), so churn cannot grow it.
MIN_CANCELLED_PURGE = 100


class SessionTimer(asyncio.Handle):
    """A handle due at ``when()`` whose cancel() tells the queue that holds it."""

    __slots__ = ("_queue", "_when")

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        queue: SessionTimers,
    ) -> None:
        super().__init__(callback, args, loop)
        self._when = when
        self._queue: SessionTimers | None = queue

    def when(self) -> float:
        """The loop time this timer is due at."""
        return self._when

    def __lt__(self, other: SessionTimer) -> bool:  # heap order
        return self._when < other._when

    def cancel(self) -> None:
        queue, self._queue = self._queue, None
        counted = queue is not None and not self.cancelled()
        super().cancel()  # first: a purge it triggers drops this one too
        if counted:
            assert queue is not None
            queue._cancelled_one()


class SessionTimers:
    """``call_later`` / ``call_at`` on the loop's clock, held off the loop's heap."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[SessionTimer] = []
        self._cancelled = 0
        self._armed: asyncio.TimerHandle | None = None
        self._armed_for = math.inf
        # As the loop: a timer due within the clock's resolution is due now.
        self._resolution: float = getattr(loop, "_clock_resolution", 0.0)

    def __len__(self) -> int:
        """Timers waiting, cancelled ones not yet dropped included."""
        return len(self._heap)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> SessionTimer:
        return self.call_at(self._loop.time() + delay, callback, *args)

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> SessionTimer:
        timer = SessionTimer(when, callback, args, self._loop, self)
        heapq.heappush(self._heap, timer)
        if when < self._armed_for:
            self._arm(when)
        return timer

    def _arm(self, when: float) -> None:
        if self._armed is not None:
            self._armed.cancel()
        self._armed_for = when
        self._armed = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._armed, self._armed_for = None, math.inf
        heap = self._heap
        end = self._loop.time() + self._resolution
        ran = 0
        while heap and ran < MAX_PER_ITERATION:
            timer = heap[0]
            if timer.cancelled():
                heapq.heappop(heap)
                self._cancelled -= 1
                continue
            if timer.when() >= end:
                break
            heapq.heappop(heap)
            timer._queue = None  # ran: a later cancel() is the caller's no-op
            timer._run()
            ran += 1
        if heap:
            # More due than one slice: the rest next iteration, after what waits.
            self._arm(heap[0].when())

    def _cancelled_one(self) -> None:
        self._cancelled += 1
        if self._cancelled > MIN_CANCELLED_PURGE and 2 * self._cancelled > len(self._heap):
            self._heap = [t for t in self._heap if not t.cancelled()]
            heapq.heapify(self._heap)
            self._cancelled = 0


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SessionTimers] = (
    weakref.WeakKeyDictionary()
)


def session_timers(loop: asyncio.AbstractEventLoop) -> SessionTimers:
    """The one SessionTimers of ``loop`` (made on first use)."""
    timers = _BY_LOOP.get(loop)
    if timers is None:
        timers = _BY_LOOP[loop] = SessionTimers(loop)
    return timers
