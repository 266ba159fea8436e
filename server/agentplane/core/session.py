"""A running session: its agent task, its timers, and what it reports.

The launcher admits sessions and ends them; everything that happens *during*
a session happens here: the ``join_call`` task, the max-duration and idle
timers, the idle policy (ask the agent, or count the participants the agent
reports), and coalescing metric reports into ``metrics_updated`` events. An
agent its adapter took on (``AdaptedAgent``, see ``agentplane.core.agent``) is
asked through the adapter, and its collector is read every metrics interval
while anyone watches the session's events, so its figures reach watchers live.

Every timer runs on the event loop's clock (one loop timer for all sessions'
timers, ``timers.py``, and ``loop.time()``), so a test loop with a virtual
clock drives them all.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import agent as agent_contract
from .agent import AdaptedAgent, JoinCall
from .context import SessionContext, bind_current
from .errors import failure_message, new_error_id
from .events import EventLog
from .metrics import SessionMetrics
from .models import EndReason, EventKind, SessionRecord
from .timers import SessionTimer, session_timers

logger = logging.getLogger("agentplane.launcher")

# A timer set for ``t`` runs at ``t`` give or take float rounding: "due" means
# within this much, or the check re-arms itself for 1e-14 s (forever, on a
# virtual clock).
CLOCK_SLACK = 1e-6
# The shortest period at which an adapted agent's collector is read while
# watched (a metrics_event_interval of 0 flushes reports at once, but a
# collector read every loop iteration would spin).
MIN_COLLECTOR_PERIOD = 0.02


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """The launcher's per-session settings (None: no such limit)."""

    idle_timeout: float | None
    max_duration: float | None
    metrics_interval: float
    # Whether error_message carries join_call's exception text (else its type).
    expose_error_details: bool = False


# Called once, when the session begins to end: the launcher's ending sequence.
EndSession = Callable[["LiveSession", EndReason, str], None]


class LiveSession:
    """Node-local state of a running (or starting) session; dropped when it ends."""

    __slots__ = (
        "_end",
        "_events",
        "_loop",
        "_policy",
        "_timers",
        "adapted",
        "agent",
        "alone_since",
        "collector_timer",
        "context",
        "ended",
        "ending",
        "idle_timer",
        "max_duration_timer",
        "metrics",
        "metrics_timer",
        "participants",
        "published",
        "record",
        "reporting",
        "started",
        "task",
    )

    def __init__(
        self,
        record: SessionRecord,
        policy: SessionPolicy,
        events: EventLog,
        end: EndSession,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.record = record
        self._policy = policy
        self._events = events
        self._end = end
        self._loop = loop
        # Off the loop's own timer heap (see timers.py): one loop timer for all.
        self._timers = session_timers(loop)
        self.metrics = SessionMetrics()
        self.agent: Any = None
        # Set by the launcher when its agent adapter took the agent on.
        self.adapted: AdaptedAgent | None = None
        self.task: asyncio.Task[None] | None = None
        # Resolved once Start finished (or failed): idempotent retries wait on it.
        self.started: asyncio.Future[None] | None = loop.create_future()
        # Resolved with the final record once the session ended (made on demand).
        self.ended: asyncio.Future[SessionRecord] | None = None
        self.ending = False
        # Reports count from join_call on (create_agent may see the context too).
        self.reporting = False
        self.context = SessionContext(self)
        self.participants: set[str] | None = None
        self.alone_since: float | None = None
        self.max_duration_timer: SessionTimer | None = None
        self.idle_timer: SessionTimer | None = None
        self.metrics_timer: SessionTimer | None = None
        self.collector_timer: SessionTimer | None = None
        # The last metrics published (as compared), so an unchanged read publishes nothing.
        self.published: tuple[tuple[str, float | None], ...] | None = None

    @property
    def session_id(self) -> str:
        return self.record.session_id

    # ------------------------------------------------------------ lifecycle

    def run(self, agent: Any, join_call: JoinCall, pass_session: bool) -> None:
        """Start ``join_call`` in the session's own task and arm its timers."""
        self.agent = agent
        self.reporting = True
        self.task = self._loop.create_task(
            self._join(join_call, pass_session), name=f"agentplane-session-{self.session_id}"
        )
        self._arm_timers()

    async def _join(self, join_call: JoinCall, pass_session: bool) -> None:
        bind_current(self.context)
        record = self.record
        try:
            if pass_session:
                await join_call(self.agent, record.call_type, record.call_id, session=self.context)
            else:
                await join_call(self.agent, record.call_type, record.call_id)
        except asyncio.CancelledError:
            if not self.ending:
                # Cancelled by someone other than the launcher (the loop
                # shutting down): still end the session properly.
                self.end(EndReason.SHUTDOWN)
            raise
        except Exception as exc:
            error_id = new_error_id()
            logger.exception(
                "join_call failed for session %s (error %s)", self.session_id, error_id
            )
            expose = self._policy.expose_error_details
            self.end(
                EndReason.ERROR,
                failure_message("join_call raised", exc, error_id, expose=expose),
            )
        else:
            self.end(EndReason.COMPLETED)

    def end(self, reason: EndReason, error: str = "") -> None:
        """Begin ending the session, once; later calls are no-ops."""
        if self.ending:
            return
        self.ending = True
        self._disarm_timers()
        self._end(self, reason, error)

    async def stop(self, grace: float) -> bool:
        """Cancel ``join_call`` and wait up to ``grace`` seconds for it to finish.

        Returns False when the task ignored cancellation and still runs.
        """
        task = self.task
        if task is None or task.done():
            return True
        task.cancel()
        deadline = self._loop.time() + grace
        # A join_call that lets the cancellation through is done one pass of
        # the loop later: it needs no timer (a heap entry among every
        # session's) and no waiter.
        await asyncio.sleep(0)
        if task.done():
            return True
        done, _ = await asyncio.wait({task}, timeout=deadline - self._loop.time())
        return bool(done)

    def ended_future(self) -> asyncio.Future[SessionRecord]:
        """The future the launcher resolves with the final record."""
        if self.ended is None:
            self.ended = self._loop.create_future()
        return self.ended

    # --------------------------------------------------------------- timers

    def _arm_timers(self) -> None:
        policy = self._policy
        if policy.max_duration is not None:
            self.max_duration_timer = self._timers.call_later(
                policy.max_duration, self.end, EndReason.MAX_DURATION
            )
        if self.adapted is not None:
            self.collector_timer = self._timers.call_later(
                self._collector_period(), self._read_watched_collector
            )
        if policy.idle_timeout is not None:
            if self._asks_agent_idle():
                self.idle_timer = self._timers.call_later(
                    policy.idle_timeout, self._check_agent_idle
                )
            else:
                # Nobody but the agent is on the call until someone joins.
                self.alone_since = self._loop.time()
                self.idle_timer = self._timers.call_later(policy.idle_timeout, self._check_presence)

    def _disarm_timers(self) -> None:
        timers = (
            self.max_duration_timer,
            self.idle_timer,
            self.metrics_timer,
            self.collector_timer,
        )
        for handle in timers:
            if handle is not None:
                handle.cancel()
        self.max_duration_timer = self.idle_timer = self.metrics_timer = None
        self.collector_timer = None

    def _asks_agent_idle(self) -> bool:
        return self.adapted is not None or agent_contract.has_idle_for(self.agent)

    def _check_agent_idle(self) -> None:
        """Ask the agent how long it has been alone; re-check when it could expire."""
        timeout = self._policy.idle_timeout
        assert timeout is not None
        self.idle_timer = None
        if self.ending:
            return
        source = self.adapted if self.adapted is not None else self.agent
        idle = agent_contract.idle_for(source, self.session_id)
        if idle >= timeout - CLOCK_SLACK:
            self.end(EndReason.IDLE_TIMEOUT)
            return
        self.idle_timer = self._timers.call_later(timeout - idle, self._check_agent_idle)

    def _check_presence(self) -> None:
        timeout = self._policy.idle_timeout
        assert timeout is not None
        self.idle_timer = None
        if self.ending or self.alone_since is None:
            return
        alone_for = self._loop.time() - self.alone_since
        if alone_for >= timeout - CLOCK_SLACK:
            self.end(EndReason.IDLE_TIMEOUT)
            return
        self.idle_timer = self._timers.call_later(timeout - alone_for, self._check_presence)

    # ------------------------------------------- reports (from SessionContext)

    @property
    def accepts_reports(self) -> bool:
        """True from join_call's start until the session begins to end."""
        return self.reporting and not self.ending

    def participant_joined(self, participant_id: str) -> None:
        if not self.accepts_reports:
            return
        if self.participants is None:
            self.participants = set()
        self.participants.add(participant_id)
        self.alone_since = None
        self._presence_changed()

    def participant_left(self, participant_id: str) -> None:
        if not self.accepts_reports:
            return
        if self.participants is not None:
            self.participants.discard(participant_id)
        if not self.participants and self.alone_since is None:
            self.alone_since = self._loop.time()
        self._presence_changed()

    def _presence_changed(self) -> None:
        timeout = self._policy.idle_timeout
        if timeout is None or self.ending or self._asks_agent_idle():
            return
        if self.alone_since is None:
            if self.idle_timer is not None:
                self.idle_timer.cancel()
                self.idle_timer = None
        elif self.idle_timer is None:
            remaining = timeout - (self._loop.time() - self.alone_since)
            self.idle_timer = self._timers.call_later(max(remaining, 0.0), self._check_presence)

    def observe(self, name: str, value: float) -> None:
        if not self.accepts_reports:
            return
        self.metrics.observe(name, value)
        self._metrics_changed()

    def add(self, name: str, amount: float) -> None:
        if not self.accepts_reports:
            return
        self.metrics.add(name, amount)
        self._metrics_changed()

    def emit(self, name: str, data: dict[str, Any]) -> None:
        if not self.accepts_reports:
            return
        record = self.record
        self._events.publish(
            record.session_id, record.call_id, EventKind.AGENT, {"name": name, "data": data}
        )

    def _metrics_changed(self) -> None:
        # Reports within one interval become one event.
        if self.metrics_timer is None and not self.ending:
            self.metrics_timer = self._timers.call_later(
                self._policy.metrics_interval, self._flush_metrics
            )

    def _flush_metrics(self) -> None:
        self.metrics_timer = None
        if self.ending:
            return
        self._publish_metrics(self.current_metrics())

    def _publish_metrics(self, metrics: dict[str, float]) -> None:
        record = self.record
        if self.adapted is not None:
            self.published = _comparable(metrics)
        self._events.publish(
            record.session_id, record.call_id, EventKind.METRICS_UPDATED, {"metrics": metrics}
        )

    def _collector_period(self) -> float:
        return max(self._policy.metrics_interval, MIN_COLLECTOR_PERIOD)

    def _read_watched_collector(self) -> None:
        """While anyone watches, publish the adapted agent's figures when they changed."""
        self.collector_timer = None
        if self.ending:
            return
        if self._events.watched(self.session_id):
            metrics = self.current_metrics()
            if _comparable(metrics) != self.published:
                if self.metrics_timer is not None:
                    # This event carries the pending reports too.
                    self.metrics_timer.cancel()
                    self.metrics_timer = None
                self._publish_metrics(metrics)
        self.collector_timer = self._timers.call_later(
            self._collector_period(), self._read_watched_collector
        )

    # ---------------------------------------------------------------- reads

    def read_collector(self) -> None:
        """Adopt figures from the agent's own metrics collector, where it has one."""
        if self.adapted is not None:
            declared = agent_contract.adapted_metrics(self.adapted, self.session_id)
            if declared is not None:
                self.metrics.merge_declared(declared)
            return
        values = agent_contract.collector_values(self.agent, self.session_id)
        if values is not None:
            self.metrics.merge_external(values)

    def current_metrics(self) -> dict[str, float]:
        self.read_collector()
        return self.metrics.snapshot()


def _comparable(metrics: Mapping[str, float]) -> tuple[tuple[str, float | None], ...]:
    """``metrics`` in a form that compares equal when the figures are (NaN as None)."""
    return tuple(
        sorted((key, None if math.isnan(value) else value) for key, value in metrics.items())
    )
