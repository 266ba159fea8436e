"""An event loop whose clock moves only when the test says so.

The core keeps every timer and duration on the loop's clock (``loop.time()``,
``call_later``), so on this loop an idle timeout, a max duration, a metrics
interval or a retention window passes in no real time, and always at the same
point: ``await clock.advance(0.2)`` fires every timer due within those 0.2 s,
in order, each at its own instant, and returns once the loop has nothing
left to run. Nothing else moves the clock: ``asyncio.sleep(1)`` or
``wait_for(..., 1)`` on this loop wait until the test advances past them.

A test gets it by asking for the ``clock`` fixture (tests/launcher/conftest.py).
"""

from __future__ import annotations

import asyncio
import selectors
import time
from typing import Any

# Where the virtual clock starts (not 0: a timestamp of 0.0 must not look unset).
START = 1_000.0
# Real seconds the loop may sit with nothing to do before the test is failed:
# on a virtual clock that means it awaits something only real time would bring.
STALL_LIMIT = 10.0
# How far the clock ticks when timers keep coming due at one instant (see settle()),
# and after how many loop rounds of that.
TICK = 1e-9
TICK_AFTER = 50


class _StallGuard(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The loop's selector, failing a loop that idles on a clock nobody advances."""

    def __init__(self, limit: float) -> None:
        super().__init__()
        self.limit = limit
        self._idle_since: float | None = None

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is not None and timeout <= 0:
            self._idle_since = None  # callbacks are ready: the loop is working
            return super().select(timeout)
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        left = self._idle_since + self.limit - now
        events = super().select(max(0.0, min(left, 0.5 if timeout is None else timeout)))
        if events:
            self._idle_since = None
        elif time.monotonic() - self._idle_since >= self.limit:
            self._idle_since = None  # a fresh allowance for the teardown
            raise RuntimeError(
                f"the virtual-clock loop sat idle for {self.limit:.0f} s of real time: the "
                "test awaits something that only a clock advance would bring "
                "(await clock.advance(seconds))"
            )
        return list(events)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock (see the module docstring)."""

    def __init__(self, stall_limit: float = STALL_LIMIT) -> None:
        super().__init__(selector=_StallGuard(stall_limit))
        self._now = START

    def time(self) -> float:
        return self._now

    async def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead, firing each timer due on the way at its time."""
        if seconds < 0:
            raise ValueError("the clock never goes back")
        target = self._now + seconds
        await self.settle()
        while (due := self._next_due()) is not None and due <= target:
            self._now = max(self._now, due)
            await self.settle()
        self._now = max(self._now, target)
        await self.settle()

    async def settle(self, max_rounds: int = 10_000) -> None:
        """Return once nothing is ready to run at the current time."""
        due_rounds = 0
        for _ in range(max_rounds):
            await asyncio.sleep(0)
            ready = self._ready  # type: ignore[attr-defined]
            # Our own step was the last of its batch, and no timer is due now:
            # nothing runs again until the clock moves (or I/O arrives).
            if not ready and not self._due_now():
                return
            timers_firing = self._due_now() or any(
                isinstance(handle, asyncio.TimerHandle) for handle in ready
            )
            due_rounds = due_rounds + 1 if timers_firing else 0
            if due_rounds >= TICK_AFTER:
                # Timers keep coming due at this very instant: code re-arming for a
                # float remainder (``timeout - (now - since)`` can be 1e-14 s short)
                # waits for the clock to tick, which a real clock always does.
                self._now += TICK
                due_rounds = 0
        raise RuntimeError(f"the loop was still busy after {max_rounds} rounds")

    def _timers(self) -> list[asyncio.TimerHandle]:
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        return [handle for handle in scheduled if not handle.cancelled()]

    def _next_due(self) -> float | None:
        return min((handle.when() for handle in self._timers()), default=None)

    def _due_now(self) -> bool:
        due = self._next_due()
        return due is not None and due <= self._now


def new_virtual_clock_loop() -> VirtualClockLoop:
    return VirtualClockLoop()
