"""Running the server's event loop to the end, and ending the process even when agents will not.

``asyncio.run`` cancels every task left when its coroutine returns and then
waits for them without a bound: one agent that swallows cancellation keeps a
drained server alive forever. ``run_to_exit`` gives the leftovers
``FINAL_GRACE`` seconds, names the ones that ignored it, and leaves them
behind; the process then exits with its code at once (``os._exit``), so
neither those tasks nor a thread stuck in agent code can hold it.

Bound on the whole stop after SIGTERM: ``drain_timeout`` + 2 * ``stop_timeout``
(cancel ``join_call``, then ``close()`` the agent) + ``SERVER_CLOSE_TIMEOUT``
for each listener (HTTP, gRPC) + ``FINAL_GRACE``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger("agentplane.runner")

# How long tasks still running after the server stopped get to finish.
FINAL_GRACE = 5.0


def run_to_exit(main: Coroutine[Any, Any, int | None], *, debug: bool = False) -> int:
    """Run ``main`` on a new loop; return its exit code, or end the process if anything hangs."""
    loop = asyncio.new_event_loop()
    loop.set_debug(debug)
    asyncio.set_event_loop(loop)
    code = 1
    stuck: list[str] = []
    try:
        code = loop.run_until_complete(main) or 0
    finally:
        try:
            stuck = _finish_leftovers(loop)
        finally:
            asyncio.set_event_loop(None)
            if not stuck:
                loop.close()
    if stuck:
        logger.error(
            "%d task(s) ignored cancellation for %.0f s and were left behind: %s",
            len(stuck),
            FINAL_GRACE,
            ", ".join(stuck),
        )
        # Nothing else can end them: exit without waiting for them (or for a
        # worker thread stuck in agent code), after flushing what was said.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _finish_leftovers(loop: asyncio.AbstractEventLoop) -> list[str]:
    """Cancel what still runs, wait up to FINAL_GRACE; the names of what did not end."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    pending: set[asyncio.Task[Any]] = set()
    if tasks:
        _, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=FINAL_GRACE))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception in a task at shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )
    if pending:
        return sorted(task.get_name() for task in pending)
    closing = asyncio.gather(loop.shutdown_asyncgens(), loop.shutdown_default_executor())
    _, late = loop.run_until_complete(asyncio.wait({closing}, timeout=FINAL_GRACE))
    if late:
        return ["the default executor (a worker thread is still busy)"]
    return []
