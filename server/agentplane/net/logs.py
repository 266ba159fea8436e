"""Logs a flood cannot multiply: one line per interval, with a count of what was held back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

# The message CPython's selector loop reports a failed accept() with.
ACCEPT_FAILED = "socket.accept() out of system resource"


class RateLimitedLog:
    """A line logged at most once per ``interval``, counting what it held back.

    Example::

        cap_log = RateLimitedLog(logging.getLogger("agentplane.http"), 10.0)
        cap_log.log(logging.WARNING, "connection cap of %d reached", cap)
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self._held = 0

    def log(self, level: int, message: str, *args: object) -> bool:
        """Log now unless a line went out within the interval; True when it did."""
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            self._held += 1
            return False
        held, self._held, self._last = self._held, 0, now
        suffix = f" ({held} more since the last such line)" if held else ""
        self._logger.log(level, message + suffix, *args)
        return True

    def warning(self, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, message, *args)


class BadRequestLog:
    """Warnings about bad requests, each kind at most once per ``interval``.

    A kind is the message's format string (a constant in the code), so a
    flood of one kind of bad request cannot hide another kind, and cannot
    fill the log: one line per kind per interval, with a count.
    """

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._kinds: dict[str, RateLimitedLog] = {}

    def warning(self, message: str, *args: object) -> bool:
        kind = self._kinds.get(message)
        if kind is None:
            kind = self._kinds[message] = RateLimitedLog(self._logger, self._interval)
        return kind.warning(message, *args)


class AcceptFailureLog:
    """A loop exception handler: accept() failures of one port's sockets, once per interval.

    CPython 3.11's ``_accept_connection`` reports every failed ``accept()``
    (EMFILE, ENFILE, ENOBUFS, ENOMEM) with a traceback through the loop's
    exception handler, and goes on trying up to the backlog in the same tick,
    each failure scheduling a retry a second later: out of descriptors, that
    is thousands of tracebacks a second. Failures on ``sockets`` become one
    line per interval, named after the port (``label``); anything else goes
    to the handler installed before, so each port can install its own.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: Iterable[Any],
        label: str,
        logger: logging.Logger,
        interval: float = 10.0,
    ) -> None:
        self._loop = loop
        self._fds = {sock.fileno() for sock in sockets}
        self._label = label
        self._previous = loop.get_exception_handler()
        self._log = RateLimitedLog(logger, interval)

    def install(self) -> None:
        self._loop.set_exception_handler(self)

    def remove(self) -> None:
        if self._loop.get_exception_handler() is self:
            self._loop.set_exception_handler(self._previous)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        fileno = getattr(context.get("socket"), "fileno", None)
        if context.get("message") == ACCEPT_FAILED and fileno is not None and fileno() in self._fds:
            self._log.log(
                logging.ERROR, "%s accept() failed: %r", self._label, context.get("exception")
            )
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)
