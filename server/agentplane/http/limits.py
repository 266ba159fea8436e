"""Transport limits of the HTTP port: head size, head time, connection count.

uvicorn (0.54, httptools) bounds neither the size of a request head nor the
time a client may take to send it, and counts no connections until a head is
complete (``limit_concurrency`` answers 503 only then). ``GuardedProtocol``
closes those gaps in the one place every request passes, the protocol,
through three of uvicorn's own methods (``connection_made``, the parser
callbacks ``on_message_begin`` / ``on_url`` / ``on_header`` /
``on_headers_complete``, and ``send_400_response``, which uvicorn calls when a
parser callback raises), so no route has to check anything:

* a URL over ``max_url_bytes`` answers 414, a head over ``max_head_bytes`` or
  with more than ``max_headers`` fields 431, as soon as the parser hands over
  the byte that crosses the bound, or (a header value httptools still
  buffers) as soon as the bytes fed since the last complete head cross it:
  at most two reads (256 KiB each) more are ever buffered;
* a connection that has not completed a request head ``head_timeout`` seconds
  after it opened (or after the first byte of a later request) gets 408 and
  is closed (slowloris);
* a request whose body has not arrived whole ``body_timeout`` seconds after
  its head gets 408 and is closed (a body trickled in holds a connection and
  a request task otherwise; ``on_message_complete`` ends the clock);
* past ``max_connections`` open connections, a new one is answered 503 and
  closed at once, before it costs more than its socket.

The head, body and keep-alive clocks are one deadline per connection and one
loop timer that re-arms only when it fires (or when a deadline comes sooner
than it is armed for): a request moves a float, not a timer. Three timers
armed and cancelled per request (two of these, and uvicorn's keep-alive one,
whose wait ``on_response_complete`` puts on the clock) cost ~14 µs.

Example::

    HttpServer(app, "127.0.0.1", 8000, limits=HttpLimits(max_connections=200))
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from agentplane.gateway.routes import DISCONNECT_WATCH
from agentplane.gateway.streaming import LIVE_BODY
from agentplane.net import BadRequestLog, RateLimitedLog

from .live_body import open_live_chunks
from .writes import JoinedWrites

logger = logging.getLogger("agentplane.http")


def _default_max_connections() -> int:
    # Stay well inside the descriptor limit: the gRPC port, agents and log
    # files need descriptors too, and at the limit accept() fails for all.
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft // 2))


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds on what one HTTP connection may cost before the app sees a request."""

    max_url_bytes: int = 8 * 1024
    max_head_bytes: int = 32 * 1024
    max_headers: int = 100
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 0  # 0: half the process's descriptor limit (at most 4096)

    def __post_init__(self) -> None:
        for name in ("max_url_bytes", "max_head_bytes", "max_headers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if min(self.head_timeout, self.body_timeout, self.keep_alive_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_connections < 0:
            raise ValueError("max_connections must be 0 (automatic) or positive")

    def connection_cap(self) -> int:
        return self.max_connections or _default_max_connections()


class _Refused(Exception):
    """Raised in a parser callback: uvicorn then calls ``send_400_response``."""


_REASONS = {
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def _status_json(status: int, code: int, message: str) -> bytes:
    # The google.rpc.Status shape every other error of the gateway has.
    body = json.dumps({"code": code, "message": message, "details": []}).encode()
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``limits`` (set by ``guarded_protocol``)."""

    limits = HttpLimits()
    cap = 0
    bad_log = BadRequestLog(logging.getLogger("uvicorn.error"))
    # uvicorn logs each request to "uvicorn.access" only when this is set.
    log_access = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn warns once per malformed request ("Invalid HTTP request
        # received."): a cheap flood. Its warnings go out once per interval.
        self.logger = _QuietWarnings(self.logger, self.bad_log)  # type: ignore[assignment]
        # uvicorn turns its access log on when that logger has a handler; the
        # server decides instead (``HttpServer(access_log=...)``).
        self.access_log = self.log_access
        self._head_bytes = 0
        self._url_bytes = 0
        self._header_count = 0
        self._unparsed_head = 0  # bytes fed into the head in progress
        self._heads_begun = 0
        self._in_head = False
        self._refusal: tuple[int, int, str] | None = None
        # The clock: what it times ("head", "body", "idle": the keep-alive
        # wait between requests; None: nothing), until when, and the one loop
        # timer (armed for _clock_at).
        self._phase: str | None = None
        self._deadline = math.inf
        self._clock: asyncio.TimerHandle | None = None
        self._clock_at = math.inf
        # What the gateway's handlers watch for the client leaving
        # (routes.DISCONNECT_WATCH), and whether it has left.
        self._lost_watchers: set[Callable[[], None]] = set()
        self._lost = False
        # The ASGI extensions this server offers, the same for every request.
        self._live_body: dict[object, object] = {"open": self._open_live_body}
        self._disconnect_watch: dict[object, object] = {"watch": self._watch_disconnect}

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # A response's head and body leave in one send (writes.py).
        self._writes = JoinedWrites(transport, self.loop, self._body_follows)
        super().connection_made(self._writes)  # type: ignore[arg-type]
        if len(self.connections) > self.cap:
            _CAP_LOG.warning("HTTP connection cap of %d reached: refusing with 503", self.cap)
            self._refuse(503, 14, f"the server holds its maximum of {self.cap} connections")
            return
        self._start_clock("head", self.limits.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock(disarm=True)
        super().connection_lost(exc)
        self._lost = True
        watchers, self._lost_watchers = self._lost_watchers, set()
        for callback in watchers:
            callback()

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        if self._phase == "idle":
            self._stop_clock()  # bytes came: the keep-alive wait is over
        heads_begun = self._heads_begun
        super().data_received(data)
        if self._refusal is not None or not self._in_head or self.transport.is_closing():
            return
        # httptools hands a header over only once its value ends, buffering it
        # until then: count the reads that went wholly into the head in
        # progress (the read that began it is left out: one read at most).
        if heads_begun != self._heads_begun:
            self._unparsed_head = 0
            return
        self._unparsed_head += len(data)
        if self._unparsed_head > self.limits.max_head_bytes:
            self._refuse(431, 3, f"request head exceeds {self.limits.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._url_bytes = self._header_count = 0
        self._heads_begun += 1
        self._in_head = True
        if self._phase is None:  # the first head's clock runs from the connection's start
            self._start_clock("head", self.limits.head_timeout)

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        self._head_bytes += len(url)
        if self._url_bytes > self.limits.max_url_bytes:
            self._refusal = (414, 3, f"request URL exceeds {self.limits.max_url_bytes} bytes")
            raise _Refused
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.limits.max_head_bytes:
            self._refusal = (431, 3, f"request head exceeds {self.limits.max_head_bytes} bytes")
            raise _Refused
        if self._header_count > self.limits.max_headers:
            self._refusal = (431, 3, f"request has more than {self.limits.max_headers} headers")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._writes.hold_next()  # this request's answer: its head waits for its body
        self._start_clock("body", self.limits.body_timeout)
        # Stream bodies written at once, without ASGI (live_body.py); a
        # client leaving said without a task reading receive() (routes.py).
        self.scope["extensions"] = {
            LIVE_BODY: self._live_body,
            DISCONNECT_WATCH: self._disconnect_watch,
        }
        super().on_headers_complete()

    def _body_follows(self) -> bool:
        """Whether the head being written frames its body by Content-Length (writes.py)."""
        cycle = self.cycle
        # uvicorn decides the framing before it writes the head; a queued
        # (pipelined) cycle or an interim 100 Continue has not started.
        return cycle is not None and cycle.response_started and cycle.chunked_encoding is False

    def _open_live_body(self) -> Callable[[bytes], bool] | None:
        return open_live_chunks(self.cycle, self.flow, self._writes)

    def _watch_disconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """``callback()`` once if the connection is lost (soon if it is already)."""
        if self._lost:
            return self.loop.call_soon(callback).cancel  # withdrawn: never called
        self._lost_watchers.add(callback)
        return functools.partial(self._lost_watchers.discard, callback)

    def on_message_complete(self) -> None:
        self._stop_clock()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # uvicorn's (0.54), with the keep-alive wait on the connection's clock
        # rather than a timer armed per response and cancelled by the next;
        # a head still held (its body was empty) goes out now.
        self._writes.flush()
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._start_clock("idle", self.timeout_keep_alive)

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
            return
        status, code, message = self._refusal
        self._refusal = None
        self._refuse(status, code, message)

    def _refuse(self, status: int, code: int, message: str) -> None:
        self._refusal = (status, code, message)  # reads nothing more
        self._stop_clock(disarm=True)
        if not self.transport.is_closing():
            self.transport.write(_status_json(status, code, message))
            self.transport.close()

    def _start_clock(self, phase: str, timeout: float) -> None:
        self._phase = phase
        self._deadline = deadline = self.loop.time() + timeout
        if deadline < self._clock_at:  # armed for later (or not at all): re-arm
            if self._clock is not None:
                self._clock.cancel()
            self._clock_at = deadline
            self._clock = self.loop.call_at(deadline, self._clock_fired)

    def _stop_clock(self, *, disarm: bool = False) -> None:
        """No part of a request is timed; the timer stays armed unless ``disarm``."""
        self._phase = None
        self._deadline = math.inf
        if disarm and self._clock is not None:
            self._clock.cancel()
            self._clock, self._clock_at = None, math.inf

    def _clock_fired(self) -> None:
        armed_for = self._clock_at
        self._clock, self._clock_at = None, math.inf
        phase, deadline = self._phase, self._deadline
        if phase is None:
            return  # nothing is timed now: the next phase arms it again
        if deadline > armed_for:
            # A later request moved the deadline on since this was armed.
            self._clock_at = deadline
            self._clock = self.loop.call_at(deadline, self._clock_fired)
            return
        self._stop_clock()
        if phase == "head":
            self._head_timed_out()
        elif phase == "body":
            self._body_timed_out()
        else:
            self.timeout_keep_alive_handler()

    def _body_timed_out(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # the app answered already: no room for a 408
            return
        message = f"request body did not arrive whole within {self.limits.body_timeout:g} s"
        self._refuse(408, 4, message)

    def _head_timed_out(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a response is under way: no room for a 408
            return
        message = f"no complete request head within {self.limits.head_timeout:g} s"
        self._refuse(408, 4, message)


def guarded_protocol(limits: HttpLimits, *, access_log: bool = False) -> type[GuardedProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` enforcing ``limits``.

    ``access_log``: log each request to uvicorn's ``uvicorn.access`` logger.
    """
    return type(
        "GuardedProtocol",
        (GuardedProtocol,),
        {
            "limits": limits,
            "cap": limits.connection_cap(),
            "bad_log": BadRequestLog(logging.getLogger("uvicorn.error")),
            "log_access": access_log,
        },
    )


_CAP_LOG = RateLimitedLog(logger, 10.0)


class _QuietWarnings:
    """uvicorn's logger, its per-request warnings logged once per kind and interval."""

    def __init__(self, logger: logging.Logger, bad_log: BadRequestLog) -> None:
        self._logger = logger
        self._bad = bad_log

    def warning(self, message: str, *args: object) -> None:
        self._bad.warning(message, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)
