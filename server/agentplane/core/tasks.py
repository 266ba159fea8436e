"""Who owns the launcher's background tasks, and the agent tasks it had to give up on.

Every task the launcher starts besides a session's own (an ending sequence, the
undo of a failed Start, the release of a slot) belongs to ``OwnedTasks``, which
shutdown waits for. An agent task that ignored cancellation goes to
``AbandonedTasks``: it is no longer waited for, but it is counted (it still holds
its slot) until it finishes, and then its follow-up runs as an owned task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class OwnedTasks:
    """Tasks that run on their own but are awaited before shutdown completes."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait_all(self) -> None:
        """Wait for every owned task, including those spawned meanwhile."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class AbandonedTasks:
    """Agent tasks that ignored cancellation: counted until they finish, then followed up."""

    def __init__(self, owner: OwnedTasks) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def hold(
        self,
        task: asyncio.Task[Any],
        then: Callable[[], Coroutine[Any, Any, None]],
        name: str,
    ) -> None:
        """Keep ``task`` referenced and counted; run ``then()`` once it finishes."""
        self._tasks.add(task)

        def finished(_: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            self._owner.spawn(then(), name)

        task.add_done_callback(finished)
