"""What a server's event loop did while it was slow: loaded into the server by ``bench.held_stall``.

``python -m bench.stall_probe OUT [agentplane serve args...]`` runs ``agentplane``
as the bench does, with three records kept in memory (a diagnosis aid, not
part of the server):

- every garbage collection (``gc.callbacks``): when, how long, which generation,
  how many objects it walked and found unreachable;
- every loop iteration that kept the loop busy (outside ``select``) for more
  than ``SLOW_ITERATION`` seconds: when, how long, how many callbacks ran, the
  slowest of them (its repr) and how long the collector ran inside it;
- how long each ``select`` slept, so a gap with the loop neither busy nor
  asleep shows up as the process not being scheduled at all.

SIGUSR2 writes them as JSON to OUT (the driver asks after each window).
Clocks are ``time.monotonic()``: the same clock as the driver's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import selectors
import signal
import sys
import time
from asyncio import base_events, events
from typing import Any

SLOW_ITERATION = 0.002
KEEP = 20_000


class _Probe:
    def __init__(self, out: str) -> None:
        self.out = out
        self.gcs: list[tuple[float, float, int, int, float]] = []
        self.census: list[dict[str, Any]] = []
        self.slow: list[dict[str, Any]] = []
        self._gc_began = 0.0
        self._gc_in_iteration = 0.0
        self._worst_handle = 0.0
        self._worst_repr = ""
        self._handles = 0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.monotonic()
        cpu = time.thread_time()
        if phase == "start":
            if info["generation"] >= 1 and self.census_left > 0:
                self.census_left -= 1
                self.census.append(_census(info["generation"]))
            self._gc_began = time.monotonic()
            self._gc_cpu = time.thread_time()
            return
        took = now - self._gc_began
        self._gc_in_iteration += took
        if len(self.gcs) < KEEP:
            self.gcs.append(
                (self._gc_began, took, info["generation"], info["collected"], cpu - self._gc_cpu)
            )

    def install(self) -> None:
        gc.callbacks.insert(0, self.on_gc)
        probe = self
        run_once = base_events.BaseEventLoop._run_once  # type: ignore[attr-defined]
        handle_run = events.Handle._run
        select = selectors.EpollSelector.select

        def timed_select(self: selectors.EpollSelector, timeout: float | None = None) -> Any:
            return select(self, timeout)

        def timed_run(self: events.Handle) -> None:
            began = time.monotonic()
            handle_run(self)
            took = time.monotonic() - began
            probe._handles += 1
            if took > probe._worst_handle:
                probe._worst_handle = took
                probe._worst_repr = repr(self)[:300]

        def timed_run_once(self: asyncio.AbstractEventLoop) -> None:
            probe._gc_in_iteration = 0.0
            probe._worst_handle = 0.0
            probe._handles = 0
            probe._select_took = 0.0
            began = time.monotonic()
            cpu = time.thread_time()
            run_once(self)
            took = time.monotonic() - began - probe._select_took
            cpu = time.thread_time() - cpu
            if took > SLOW_ITERATION and len(probe.slow) < KEEP:
                probe.slow.append(
                    {
                        "at": began + probe._select_took,
                        "busy": took,
                        "cpu": cpu,
                        "handles": probe._handles,
                        "gc": probe._gc_in_iteration,
                        "worst": probe._worst_handle,
                        "worst_repr": probe._worst_repr,
                        "scheduled": len(getattr(self, "_scheduled", ())),
                    }
                )

        def select_measured(self: selectors.EpollSelector, timeout: float | None = None) -> Any:
            began = time.monotonic()
            try:
                return timed_select(self, timeout)
            finally:
                probe._select_took = time.monotonic() - began

        base_events.BaseEventLoop._run_once = timed_run_once  # type: ignore[attr-defined]
        events.Handle._run = timed_run  # type: ignore[method-assign]
        selectors.EpollSelector.select = select_measured  # type: ignore[method-assign, assignment]
        signal.signal(signal.SIGUSR2, lambda *_: self.dump())

    _select_took = 0.0
    census_left = 0
    _gc_cpu = 0.0

    def dump(self) -> None:
        with open(self.out + ".tmp", "w") as f:
            json.dump(
                {
                    "census": self.census,
                    "gcs": self.gcs,
                    "slow": self.slow,
                    "freeze": gc.get_freeze_count(),
                },
                f,
            )
        os.replace(self.out + ".tmp", self.out)
        self.gcs = []
        self.slow = []
        self.census = []
        self.census_left = int(os.environ.get("STALL_PROBE_CENSUS", "0"))


def _census(generation: int) -> dict[str, Any]:
    """What a pass of ``generation`` is about to walk: types, and the widest containers."""
    import collections

    types: collections.Counter[str] = collections.Counter()
    widest: list[tuple[int, str]] = []
    referents = 0
    objects = 0
    for g in range(generation + 1):
        for obj in gc.get_objects(generation=g):
            objects += 1
            types[type(obj).__qualname__] += 1
            if isinstance(obj, asyncio.TimerHandle):
                cb = getattr(obj, "_callback", None)
                types["timer:" + getattr(cb, "__qualname__", repr(cb))[:60]] += 1
            n = len(gc.get_referents(obj))
            referents += n
            if n > 500:
                widest.append(
                    (
                        n,
                        repr(obj)[:80]
                        if not isinstance(obj, (dict, list, set))
                        else type(obj).__name__,
                    )
                )
    widest.sort(reverse=True)
    return {
        "generation": generation,
        "at": time.monotonic(),
        "objects": objects,
        "referents": referents,
        "types": types.most_common(12),
        "widest": widest[:6],
    }


def _old_policy() -> None:
    """The GC policy as it was before bench/held_stall.py (for an A/B in one run)."""
    from agentplane.ops import gc_policy

    init = gc_policy.HeldHeapGc.__init__

    def old_init(self: gc_policy.HeldHeapGc, held: Any, **_: Any) -> None:
        init(self, held, check_interval=5.0, young_thresholds=None)

    gc_policy.HeldHeapGc.__init__ = old_init  # type: ignore[method-assign]


def _loop_timers() -> None:
    """Sessions' timers on the loop's own heap, as before core/timers.py."""
    from agentplane.core import session

    session.session_timers = lambda loop: loop  # type: ignore[attr-defined, assignment, return-value]


def main() -> None:
    out = sys.argv[1]
    # old: both as before; gc: the new GC policy alone; new (or unset): as committed.
    policy = os.environ.get("STALL_PROBE_POLICY", "new")
    if policy == "old":
        _old_policy()
    if policy in ("old", "gc"):
        _loop_timers()
    _Probe(out).install()
    sys.argv = ["agentplane", *sys.argv[2:]]
    from agentplane.server.cli import main as serve

    serve()


if __name__ == "__main__":
    main()
