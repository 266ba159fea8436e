"""The sessions' own timer heap (core/timers.py): loop-timer semantics, one loop timer."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from agentplane.core import timers as timers_module
from agentplane.core.timers import MAX_PER_ITERATION, SessionTimers
from tests.support import VirtualClockLoop

NAME: contextvars.ContextVar[str] = contextvars.ContextVar("name", default="")


async def test_timers_run_in_order_at_their_time(clock: VirtualClockLoop) -> None:
    loop = asyncio.get_running_loop()
    timers = SessionTimers(loop)
    ran: list[tuple[str, float]] = []
    began = loop.time()
    for name, delay in (("c", 30.0), ("a", 10.0), ("b", 20.0)):
        timers.call_later(delay, lambda n: ran.append((n, loop.time() - began)), name)
    await clock.advance(15)
    assert ran == [("a", 10.0)]
    await clock.advance(20)
    assert ran == [("a", 10.0), ("b", 20.0), ("c", 30.0)]
    assert len(timers) == 0


async def test_one_loop_timer_holds_them_all(clock: VirtualClockLoop) -> None:
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    timers = SessionTimers(loop)
    handles = [timers.call_later(60.0 + i, lambda: None) for i in range(1_000)]
    assert len(loop._scheduled) == before + 1  # type: ignore[attr-defined]
    assert all(isinstance(h, asyncio.Handle) for h in handles)
    assert handles[5].when() == loop.time() + 65.0


async def test_a_cancelled_timer_never_runs_and_is_dropped(clock: VirtualClockLoop) -> None:
    loop = asyncio.get_running_loop()
    timers = SessionTimers(loop)
    ran: list[int] = []
    handles = [timers.call_later(10.0, ran.append, i) for i in range(400)]
    kept = [i for i in range(400) if i % 4 == 0]
    for i, handle in enumerate(handles):
        if i % 4:
            handle.cancel()
            assert handle.cancelled()
    # Once over half were cancelled, the heap dropped them.
    assert len(timers) < 200
    assert len(timers) < len(kept) + timers_module.MIN_CANCELLED_PURGE
    await clock.advance(11)
    assert sorted(ran) == kept
    assert len(timers) == 0
    handles[0].cancel()  # after it ran: nothing happens


async def test_a_wave_of_due_timers_runs_in_bounded_slices(clock: VirtualClockLoop) -> None:
    loop = asyncio.get_running_loop()
    timers = SessionTimers(loop)
    count = 3 * MAX_PER_ITERATION + 7
    ran: list[int] = []
    slices: list[int] = []
    original = SessionTimers._fire

    def counting_fire(self: SessionTimers) -> None:
        before = len(ran)
        original(self)
        slices.append(len(ran) - before)

    SessionTimers._fire = counting_fire  # type: ignore[method-assign]
    try:
        for i in range(count):
            timers.call_later(5.0, ran.append, i)
        await clock.advance(6)  # returns once nothing is due or ready
    finally:
        SessionTimers._fire = original  # type: ignore[method-assign]
    assert sorted(ran) == list(range(count))  # every one (ties: any order, as the loop)
    assert max(slices) == MAX_PER_ITERATION
    assert sum(slices) == count


async def test_a_callback_runs_in_the_context_it_was_armed_in(clock: VirtualClockLoop) -> None:
    timers = SessionTimers(asyncio.get_running_loop())
    seen: list[str] = []
    NAME.set("armed")
    timers.call_later(1.0, lambda: seen.append(NAME.get()))
    NAME.set("later")
    await clock.advance(2)
    assert seen == ["armed"]


async def test_an_exception_goes_to_the_loop_handler(clock: VirtualClockLoop) -> None:
    loop = asyncio.get_running_loop()
    timers = SessionTimers(loop)
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    timers.call_later(1.0, boom)
    timers.call_later(1.0, ran.append, "next")
    await clock.advance(2)
    assert isinstance(reported[0]["exception"], RuntimeError)
    assert ran == ["next"]  # the others still run
    loop.set_exception_handler(None)
