"""Keep CPython's full garbage collections from stalling a server that holds sessions.

A full (generation 2) collection walks every container object of the
process while the event loop waits. Held sessions are long-lived containers
(a task, its coroutine, records, timers: ~24 objects each), so with CPython's
own policy the pause grows with the sessions held: ~150 ms at 10,000 held on
a 2-core VM, each time the old generation has grown by a quarter
(bench/results/). CPython 3.11 cannot collect incrementally, so the only way
to keep the loop responsive is to keep objects known to be alive out of the
full passes. ``HeldHeapGc`` does that with the permanent generation:

* once the server is ready, it collects and freezes the start-up heap
  (modules, descriptors, the agent's warm-up state), which never dies;
* after every full pass, it freezes what survived: it was alive a moment
  ago, so the next full pass walks only what was promoted since; and it
  runs such a pass every second itself, so that is never more than a
  second's worth of objects (a burst of 3,000 Starts is ~70,000);
* frozen objects are never collected, so a frozen cycle that dies later
  (an ended agent's, typically) would be kept. The policy thaws (unfreeze,
  one full pass, freeze again) when the sessions that were frozen and have
  ended since the last thaw reach a quarter of those held then (at least
  1,000), and at least every 5 minutes while anything new was frozen. That
  pass walks the whole heap, as CPython's own would, but it is tied to
  sessions ending instead of to every quarter of heap growth, so a server
  whose sessions are held has no long pauses at all.

Objects freed by reference counting (most of them) are freed at once,
frozen or not; only garbage in reference cycles waits for a thaw.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from agentplane.core import SessionRecord

logger = logging.getLogger("agentplane.gc")

# Thaw when this fraction of the sessions held at the last thaw has ended
# since: CPython's own trigger is a quarter of heap growth, and an ended
# session is what turns held objects into garbage.
THAW_ENDED_FRACTION = 0.25
THAW_MIN_ENDED = 1_000
# ... and at least this often (seconds) while anything new was frozen.
THAW_INTERVAL = 300.0
# A full pass walks what was promoted since the last one: run one every
# second, so that is one second's worth. (At 5 s, before the sessions' timers
# left the loop's heap, a Get loop with 10,000 held made passes of ~10,000
# objects: 10-25 ms on a busy 2-core VM; bench/held_stall.py.) Each object is
# walked once either way.
CHECK_INTERVAL = 1.0
# Generation 1 every 3 young passes instead of 11: the same objects walked,
# in passes a quarter the size (CPython's thresholds are 700, 10, 10).
YOUNG_THRESHOLDS = (700, 2)


def _reset_full_pass_trigger() -> None:
    """Run a (near empty) full pass right after a freeze.

    CPython starts a full pass once the objects promoted since the last one
    exceed a quarter of the old generation *as that pass left it*; after a
    freeze that figure is stale (the whole heap), and the next pass would wait
    for, and then walk, a quarter of the heap's worth of new objects. A pass
    over the empty old generation sets it to zero, so passes stay frequent and
    small from then on (each is followed by a freeze of its survivors).
    """
    gc.collect()


class GcPauses:
    """Times every collection through ``gc.callbacks``.

    ``observe(generation, seconds)`` is called after each pass; install() and
    remove() bracket the server's life (the callback list is process-wide).
    """

    def __init__(self, observe: Callable[[int, float], None]) -> None:
        self._observe = observe
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self._observe(info["generation"], time.perf_counter() - self._began)

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


class HeldHeapGc:
    """The freeze/thaw policy above, for the life of one server.

    A ``LauncherHooks`` implementation: ``session_ended`` counts the sessions
    that were alive at the last freeze (only those can leave frozen garbage).
    ``held()`` answers the sessions running now. ``start()`` once ready,
    ``aclose()`` on stop (it hands every frozen object back to the collector).
    """

    def __init__(
        self,
        held: Callable[[], int],
        *,
        thaw_ended_fraction: float = THAW_ENDED_FRACTION,
        thaw_min_ended: int = THAW_MIN_ENDED,
        thaw_interval: float = THAW_INTERVAL,
        check_interval: float = CHECK_INTERVAL,
        young_thresholds: tuple[int, int] | None = YOUNG_THRESHOLDS,
    ) -> None:
        self._held = held
        self._fraction = thaw_ended_fraction
        self._min_ended = thaw_min_ended
        self._thaw_interval = thaw_interval
        self._check_interval = check_interval
        self._young_thresholds = young_thresholds
        self._saved_thresholds: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._frozen_at = 0.0  # wall clock, as SessionRecord.started_at
        self._frozen_ended = 0
        self._held_at_thaw = 0
        self._thawed_at = 0.0
        # Whether a full pass froze anything since the last thaw. Not
        # gc.get_freeze_count(): it walks the whole permanent generation.
        self._froze_since_thaw = False
        self.thaws = 0

    # ---------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._young_thresholds is not None:
            self._saved_thresholds = gc.get_threshold()
            gc.set_threshold(*self._young_thresholds, self._saved_thresholds[2])
        gc.collect()
        self._freeze()
        _reset_full_pass_trigger()
        self._mark_thaw()
        gc.callbacks.append(self._after_collection)
        self._task = asyncio.get_running_loop().create_task(
            self._watch(), name="agentplane-gc-thaw"
        )

    async def aclose(self) -> None:
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._saved_thresholds is not None:
            gc.set_threshold(*self._saved_thresholds)
            self._saved_thresholds = None
        gc.unfreeze()

    # -------------------------------------------------------------- hooks

    def session_started(self, record: SessionRecord, start_seconds: float) -> None:
        pass

    def session_ended(self, record: SessionRecord) -> None:
        if record.started_at <= self._frozen_at:
            self._frozen_ended += 1

    def admission_rejected(self, reason: str) -> None:
        pass

    # ------------------------------------------------------------- policy

    def _freeze(self) -> None:
        gc.freeze()
        self._frozen_at = time.time()

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        # Everything that survived a full pass is alive right now: keep it
        # out of the next one. (Young passes leave the old generation alone.)
        if phase == "stop" and info["generation"] == 2:
            self._freeze()
            self._froze_since_thaw = True

    def _mark_thaw(self) -> None:
        self._frozen_ended = 0
        self._held_at_thaw = self._held()
        self._thawed_at = time.monotonic()
        self._froze_since_thaw = False

    def thaw_due(self) -> bool:
        """Whether enough may have died among frozen objects to walk them all."""
        if self._frozen_ended >= max(self._min_ended, self._fraction * self._held_at_thaw):
            return True
        elapsed = time.monotonic() - self._thawed_at
        return self._froze_since_thaw and elapsed >= self._thaw_interval

    def thaw(self) -> int:
        """Collect cycles among frozen objects now (one full pass); answer how many."""
        began = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()  # _after_collection freezes the survivors again
        _reset_full_pass_trigger()
        self._mark_thaw()
        self.thaws += 1
        logger.debug(
            "gc thaw: %d unreachable, %.1f ms", found, 1000 * (time.perf_counter() - began)
        )
        return found

    def settle(self) -> None:
        """One full pass over what is not frozen yet; its survivors get frozen.

        Run every ``check_interval``: no later pass, wherever CPython's own
        trigger puts it, then has more than that interval's worth of new
        long-lived objects to walk (a burst of Starts, for instance).
        """
        gc.collect()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval)
            if self.thaw_due():
                self.thaw()
            else:
                self.settle()
