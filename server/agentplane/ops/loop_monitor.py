"""Event-loop lag, and who blocked the loop.

Everything on a node shares one event loop: an agent that computes for 200 ms
without awaiting delays every other session, every RPC and both health checks
by as much. Two cheap probes make that visible:

- ``LoopMonitor`` (on the loop): a timer that should fire every ``interval``
  seconds records how late it fired, into ``agentplane_event_loop_lag_seconds``.
- a watchdog thread: when the loop has not run that timer for ``block_after``
  seconds, it looks at the loop thread's stack, finds the task running there
  and logs one warning naming it (a session's task is named after its session)
  and the line it is on. It never touches the loop; it only reads.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

logger = logging.getLogger("agentplane.loop")

INTERVAL = 0.25
BLOCK_AFTER = 1.0


class LoopMonitor:
    """Measures the loop's lag; a watchdog names whatever blocks it.

    Example::

        monitor = LoopMonitor(observe_lag=histogram.observe)
        monitor.start()          # on the running loop
        ...
        await monitor.aclose()
    """

    def __init__(
        self,
        observe_lag: Callable[[float], None],
        *,
        interval: float = INTERVAL,
        block_after: float = BLOCK_AFTER,
        on_blocked: Callable[[float, str], None] | None = None,
    ) -> None:
        self._observe_lag = observe_lag
        self._interval = interval
        self._block_after = block_after
        self._on_blocked = on_blocked
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        # Written by the loop, read by the watchdog (a float store is atomic).
        self._last_beat = time.monotonic()
        self._loop_thread = 0
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._last_beat = time.monotonic()
        self._schedule(loop)
        self._watchdog = threading.Thread(
            target=self._watch, name="agentplane-loop-watchdog", daemon=True
        )
        self._watchdog.start()

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = loop.time() + self._interval
        self._timer = loop.call_at(self._due, self._beat)

    def _beat(self) -> None:
        loop = self._loop
        assert loop is not None
        self._last_beat = time.monotonic()
        self._observe_lag(max(loop.time() - self._due, 0.0))
        self._schedule(loop)

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stop.set()
        if self._watchdog is not None:
            await asyncio.to_thread(self._watchdog.join, 5.0)
            self._watchdog = None

    # ------------------------------------------------------- watchdog thread

    def _watch(self) -> None:
        reported_beat = 0.0
        while not self._stop.wait(self._interval):
            beat = self._last_beat
            stalled = time.monotonic() - beat - self._interval
            if stalled < self._block_after or beat == reported_beat:
                continue
            reported_beat = beat  # one warning per stall
            culprit = self._culprit()
            logger.warning("event loop blocked for %.1f s so far by %s", stalled, culprit)
            if self._on_blocked is not None:
                self._on_blocked(stalled, culprit)

    def _culprit(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "an unknown caller"
        where = _location(frame)
        task = self._task_running(frame)
        if task is None:
            return f"a callback at {where}"
        name = task.get_name()
        session = _session_of(name)
        return f"task {name}{f' (session {session})' if session else ''} at {where}"

    def _task_running(self, frame: FrameType) -> asyncio.Task[object] | None:
        """The task whose coroutine is on the loop thread's stack, if any."""
        loop = self._loop
        if loop is None:
            return None
        frames: set[int] = set()
        current: FrameType | None = frame
        while current is not None:
            frames.add(id(current))
            current = current.f_back
        for _ in range(3):  # the loop may change the task set under us: retry
            try:
                tasks = list(asyncio.all_tasks(loop))
                break
            except RuntimeError:
                continue
        else:
            return None
        for task in tasks:
            coro = task.get_coro()
            coro_frame = getattr(coro, "cr_frame", None)
            if coro_frame is not None and id(coro_frame) in frames:
                return task
        return None


def _location(frame: FrameType) -> str:
    code = frame.f_code
    return f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"


def _session_of(task_name: str) -> str:
    for prefix in ("agentplane-session-", "agentplane-create-", "agentplane-end-"):
        if task_name.startswith(prefix):
            return task_name[len(prefix) :]
    return ""
