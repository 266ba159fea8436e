"""Forgetting ended sessions after the retention window, at no per-session cost.

Every session is retained for the same time, so expiry order is insertion
order: a FIFO with one timer for its head replaces a scan over all sessions.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("agentplane.launcher")


class ExpiryQueue:
    """Calls ``expire(key)`` ``ttl`` seconds after ``add(key)``.

    At most ``max_items`` keys wait; adding more expires the oldest at once,
    so memory stays bounded however fast sessions churn.
    """

    def __init__(
        self, ttl: float, max_items: int, expire: Callable[[str], Awaitable[None]]
    ) -> None:
        self._ttl = ttl
        self._max = max_items
        self._expire = expire
        self._queue: collections.deque[tuple[float, str]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        loop = asyncio.get_running_loop()
        self._queue.append((loop.time() + self._ttl, key))
        overflow = []
        while len(self._queue) > self._max:
            overflow.append(self._queue.popleft()[1])
        if overflow:
            self._run(overflow)
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and self._queue:
            self._timer = loop.call_at(self._queue[0][0], self._fire)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = []
        while self._queue and self._queue[0][0] <= now:
            due.append(self._queue.popleft()[1])
        if due:
            self._run(due)
        self._arm(loop)

    def _run(self, keys: list[str]) -> None:
        task = asyncio.get_running_loop().create_task(self._expire_all(keys))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire_all(self, keys: list[str]) -> None:
        for key in keys:
            try:
                await self._expire(key)
            except Exception:
                logger.exception("forgetting session %s failed", key)

    async def aclose(self) -> None:
        """Stop the timer and wait for expiries under way; pending keys stay."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
