"""Logs a flood cannot multiply: one line per interval, with a count of what was held back."""

from __future__ import annotations

import asyncio
import errno
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


class ListenError(RuntimeError):
    """A port could not be opened: ``port_name`` ("HTTP", "gRPC") on ``host:port``.

    ``error`` is the OSError of the bind (``errno.EADDRINUSE``: the port is in use).
    """

    def __init__(self, port_name: str, host: str, port: int, error: OSError) -> None:
        self.port_name = port_name
        self.host = host
        self.port = port
        self.error = error
        self.in_use = error.errno == errno.EADDRINUSE
        if self.in_use:
            text = f"{port_name} port {port} is already in use on {host}"
        else:
            reason = error.strerror or str(error)
            text = f"{port_name} server cannot listen on {host}:{port}: {reason}"
        super().__init__(text)


class Demoted(logging.Filter):
    """A logger filter: its records whose message starts with one of ``prefixes`` become DEBUG.

    For what a library logs at INFO about ordinary events (a client that
    cancelled its call, a server starting): shown only when the logger is
    enabled for DEBUG. Installed once per logger (``demote``).
    """

    def __init__(self, logger: logging.Logger, prefixes: Iterable[str]) -> None:
        super().__init__()
        self._logger = logger
        self.prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not isinstance(record.msg, str):
            return True
        if not record.msg.startswith(self.prefixes):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self._logger.isEnabledFor(logging.DEBUG)


def demote(logger_name: str, *prefixes: str) -> None:
    """Make ``logger_name``'s INFO lines starting with ``prefixes`` DEBUG lines (idempotent)."""
    logger = logging.getLogger(logger_name)
    for existing in logger.filters:
        if isinstance(existing, Demoted):
            existing.prefixes = tuple(dict.fromkeys((*existing.prefixes, *prefixes)))
            return
    logger.addFilter(Demoted(logger, prefixes))
