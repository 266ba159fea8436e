"""AgentLauncher: admits, starts, ends and reports agent sessions.

This is the transport-free core. It knows nothing about gRPC or HTTP: the
servicer and the gateway call these methods and map ``LauncherError``s to
their wire statuses.

Cost model: nothing runs per idle session. Each session owns at most a few
event-loop timers (max duration, idle check, metrics coalescing), and ended
sessions expire through one FIFO with a single timer, so holding 10,000
sessions costs no CPU while they are quiet.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from .context import LiveSession, SessionContext, _current
from .errors import (
    AdmissionRejected,
    AgentStartFailed,
    Draining,
    IdempotencyConflict,
    NotReady,
    SessionNotFound,
)
from .events import DEFAULT_BUFFER, EventLog
from .expiry import ExpiryQueue
from .models import EndReason, EventKind, LauncherStats, SessionRecord, SessionState
from .registry import InMemorySessionRegistry, Limits, SessionRegistry
from .validation import validate_session_id, validate_start

logger = logging.getLogger("agentplane.launcher")

CreateAgent = Callable[..., Any]
JoinCall = Callable[..., Awaitable[None]]
Warmup = Callable[[], Awaitable[None] | None]


class LauncherHooks(Protocol):
    """Observers of the launcher (operator metrics, audit logs)."""

    def session_started(self, record: SessionRecord, start_seconds: float) -> None: ...
    def session_ended(self, record: SessionRecord) -> None: ...
    def admission_rejected(self, reason: str) -> None: ...


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _accepts_session_kwarg(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD or p.name == "session" for p in params)


class AgentLauncher:
    """Runs the user's ``create_agent`` and ``join_call`` for each session.

    Example::

        launcher = AgentLauncher(create_agent=create_agent, join_call=join_call,
                                 max_concurrent_sessions=50)
        async with launcher:
            session = await launcher.start_session("my-call")
            ...
            await launcher.close_session(session.session_id)
    """

    def __init__(
        self,
        create_agent: CreateAgent,
        join_call: JoinCall,
        *,
        max_concurrent_sessions: int | None = None,
        max_sessions_per_call: int | None = None,
        max_session_duration_seconds: float | None = None,
        agent_idle_timeout: float | None = 60.0,
        permits_per_minute: int | None = None,
        drain_timeout: float = 30.0,
        warmup: Warmup | None = None,
        create_agent_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        session_retention_seconds: float = 300.0,
        max_retained_sessions: int = 10_000,
        event_buffer_size: int = DEFAULT_BUFFER,
        metrics_event_interval: float = 1.0,
        registry: SessionRegistry | None = None,
        hooks: Sequence[LauncherHooks] = (),
    ) -> None:
        for name, value in (
            ("max_session_duration_seconds", max_session_duration_seconds),
            ("agent_idle_timeout", agent_idle_timeout),
        ):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value}")
        for name, value in (
            ("create_agent_timeout", create_agent_timeout),
            ("stop_timeout", stop_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name, value in (
            ("drain_timeout", drain_timeout),
            ("session_retention_seconds", session_retention_seconds),
            ("metrics_event_interval", metrics_event_interval),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if max_retained_sessions < 0:
            raise ValueError("max_retained_sessions must be >= 0")
        self._create_agent = create_agent
        self._join_call = join_call
        self._join_takes_session = _accepts_session_kwarg(join_call)
        self.limits = Limits(max_concurrent_sessions, max_sessions_per_call, permits_per_minute)
        self.max_session_duration = max_session_duration_seconds or None
        self.idle_timeout = agent_idle_timeout or None
        self.drain_timeout = drain_timeout
        self._warmup = warmup
        self._create_timeout = create_agent_timeout
        self._stop_timeout = stop_timeout
        self._metrics_interval = metrics_event_interval
        self._registry: SessionRegistry = registry or InMemorySessionRegistry()
        self._hooks = tuple(hooks)
        self.events = EventLog(buffer_size=event_buffer_size)
        self._retention = ExpiryQueue(
            session_retention_seconds, max_retained_sessions, self._forget
        )

        self._live: dict[str, LiveSession] = {}
        self._enders: set[asyncio.Task[None]] = set()
        self._abandoned: set[asyncio.Task[None]] = set()
        self._ready = warmup is None
        self._draining = False
        self._accepting_listeners: list[Callable[[bool], None]] = []
        self._last_accepting: bool | None = None
        self._counts: Counter[str] = Counter()
        self._ended_by_reason: Counter[str] = Counter()
        self._rejected_by_reason: Counter[str] = Counter()
        self._duration_total = 0.0

    def add_hooks(self, hooks: LauncherHooks) -> None:
        """Register an observer (operator metrics, audit log)."""
        self._hooks = (*self._hooks, hooks)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Run the optional ``warmup()``; the launcher is ready afterwards."""
        if self._warmup is not None and not self._ready:
            await _maybe_await(self._warmup())
        self._ready = True
        self._notify_accepting()

    async def __aenter__(self) -> AgentLauncher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def accepting(self) -> bool:
        """True while a Start could be admitted: ready, not draining, not full."""
        cap = self.limits.max_concurrent_sessions
        return self._ready and not self._draining and (cap is None or len(self._live) < cap)

    def add_accepting_listener(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(accepting)`` now and whenever ``accepting`` changes."""
        self._accepting_listeners.append(listener)
        if self._last_accepting is None:
            # Nothing was announced yet: what this listener is told now is
            # what every listener knows, so the next change is the first one.
            self._last_accepting = self.accepting
        self._tell(listener, self.accepting)

    @staticmethod
    def _tell(listener: Callable[[bool], None], accepting: bool) -> None:
        # Observers must not break the lifecycle (a raise here would strand a
        # half-started or half-ended session).
        try:
            listener(accepting)
        except Exception:
            logger.exception("accepting listener %r raised", listener)

    def _call_hooks(self, method: str, *args: Any) -> None:
        for hook in self._hooks:
            try:
                getattr(hook, method)(*args)
            except Exception:
                logger.exception("hook %s.%s() raised", type(hook).__name__, method)

    def _notify_accepting(self) -> None:
        now = self.accepting
        if now != self._last_accepting:
            self._last_accepting = now
            for listener in self._accepting_listeners:
                self._tell(listener, now)

    # ``timeout`` is the grace period of the sessions, not a cancel scope of
    # this call (which then ends them and returns): ASYNC109 does not apply.
    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Refuse new sessions, let running ones finish, then end the rest.

        Waits up to ``timeout`` (default ``drain_timeout``) for sessions to end
        by themselves; whatever still runs then ends with reason SHUTDOWN.
        """
        self._draining = True
        self._notify_accepting()
        budget = self.drain_timeout if timeout is None else timeout
        logger.info("draining: %d running sessions, up to %.1f s", len(self._live), budget)
        deadline = asyncio.get_running_loop().time() + budget
        while self._live:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            waiters = [self._ended_future(live) for live in self._live.values()]
            if not waiters:
                break
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        await self.shutdown()

    async def shutdown(self) -> None:
        """End every session now (reason SHUTDOWN) and release everything."""
        self._draining = True
        self._notify_accepting()
        for live in list(self._live.values()):
            if live.started is not None and not live.started.done():
                # Still in create_agent: that Start sees the drain and undoes
                # itself; the session never ran, so it must not "end".
                continue
            self._begin_end(live, EndReason.SHUTDOWN)
        if self._enders:
            await asyncio.gather(*self._enders, return_exceptions=True)
        await self._retention.aclose()
        # Watchers get the last events, then their streams end cleanly
        # (grpclib does not end open streams when its server closes).
        self.events.close()

    # ---------------------------------------------------------------- start

    async def start_session(
        self,
        call_id: str,
        call_type: str = "default",
        *,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str = "",
        created_by: str = "",
    ) -> SessionRecord:
        """Admit a session, create its agent and start ``join_call``.

        Raises InvalidArgument, Draining, NotReady, AdmissionRejected,
        IdempotencyConflict or AgentStartFailed; a failed Start leaves nothing
        behind.
        """
        call_type = call_type or "default"
        metadata = dict(metadata or {})
        validate_start(call_id, call_type, metadata, idempotency_key)
        if self._draining:
            self._count_rejection(Draining.REASON)
            raise Draining()
        if not self._ready:
            self._count_rejection(NotReady.REASON)
            raise NotReady()
        record = SessionRecord(
            session_id=str(uuid.uuid4()),
            call_id=call_id,
            call_type=call_type,
            started_at=time.time(),
            created_by=created_by,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
        try:
            existing = await self._registry.admit(record, self.limits, time.time())
        except AdmissionRejected as exc:
            self._count_rejection(exc.reason)
            raise
        if existing is not None:
            return await self._replay(existing, record)

        loop = asyncio.get_running_loop()
        # ``ended`` is created on demand (Close, drain): most sessions never need it.
        live = LiveSession(record, started=loop.create_future())
        self._live[record.session_id] = live
        self._notify_accepting()
        began = time.perf_counter()
        try:
            agent = await asyncio.wait_for(
                _maybe_await(self._create_agent(**metadata)), self._create_timeout
            )
            if self._draining:
                await self._close_agent(agent, record.session_id)
                raise Draining()
        except BaseException as exc:
            await self._abort_start(live)
            failure: BaseException = exc
            if isinstance(exc, TimeoutError):
                failure = AgentStartFailed(
                    f"create_agent did not finish within {self._create_timeout:g} s"
                )
            elif isinstance(exc, Exception) and not isinstance(exc, Draining):
                logger.exception("create_agent failed for call %s", call_id)
                failure = AgentStartFailed(f"create_agent failed: {type(exc).__name__}: {exc}")
            if live.started is not None and not live.started.done():
                if isinstance(failure, Exception):
                    live.started.set_exception(failure)
                    live.started.exception()  # retrieved: idempotent waiters may be absent
                else:
                    live.started.cancel()
            if failure is exc:
                raise
            raise failure from exc

        live.agent = agent
        record.state = SessionState.RUNNING
        await self._registry.update(record)
        self.events.open_session(record.session_id)
        context = SessionContext(self, live)
        live.task = loop.create_task(
            self._run(live, context), name=f"agentplane-session-{record.session_id}"
        )
        self._arm_timers(live)
        self._counts["started"] += 1
        self.events.publish(
            record.session_id, call_id, EventKind.STARTED, {"session": record.snapshot()}
        )
        start_seconds = time.perf_counter() - began
        self._call_hooks("session_started", record, start_seconds)
        assert live.started is not None
        live.started.set_result(None)
        # Waiters hold their own reference; a held session need not keep it.
        live.started = None
        logger.info("session %s started for call %s", record.session_id, call_id)
        return record.snapshot()

    def _count_rejection(self, reason: str) -> None:
        self._rejected_by_reason[reason] += 1
        self._call_hooks("admission_rejected", reason)

    async def _replay(self, existing: SessionRecord, asked: SessionRecord) -> SessionRecord:
        if existing.call_id != asked.call_id or existing.call_type != asked.call_type:
            raise IdempotencyConflict(
                f"idempotency key '{asked.idempotency_key}' was used for call "
                f"'{existing.call_id}' ({existing.call_type}); use a new key for another call"
            )
        live = self._live.get(existing.session_id)
        if live is not None and live.started is not None and not live.started.done():
            await self._await_start(live.started)
        return existing.snapshot()

    @staticmethod
    async def _await_start(started: asyncio.Future[None]) -> None:
        """Wait for another caller's Start; its cancellation is not ours."""
        try:
            await asyncio.shield(started)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if started.cancelled() and (task is None or not task.cancelling()):
                raise AgentStartFailed("the Start creating this session was cancelled") from None
            raise

    async def _abort_start(self, live: LiveSession) -> None:
        self._live.pop(live.record.session_id, None)
        await self._registry.forget(live.record.session_id)
        self._counts["failed_starts"] += 1
        if live.ended is not None and not live.ended.done():
            live.ended.cancel()
        self._notify_accepting()

    async def _run(self, live: LiveSession, context: SessionContext) -> None:
        _current.set(context)
        record = live.record
        try:
            if self._join_takes_session:
                await self._join_call(live.agent, record.call_type, record.call_id, session=context)
            else:
                await self._join_call(live.agent, record.call_type, record.call_id)
        except asyncio.CancelledError:
            if not live.ending:
                # Cancelled by someone other than the launcher (the loop
                # shutting down): still end the session properly.
                self._begin_end(live, EndReason.SHUTDOWN)
            raise
        except Exception as exc:
            logger.exception("join_call failed for session %s", record.session_id)
            self._begin_end(live, EndReason.ERROR, f"{type(exc).__name__}: {exc}")
        else:
            self._begin_end(live, EndReason.COMPLETED)

    # ------------------------------------------------------------------ end

    def _begin_end(self, live: LiveSession, reason: EndReason, error: str = "") -> None:
        """Start ending ``live`` once; later calls are no-ops."""
        if live.ending:
            return
        live.ending = True
        ender = asyncio.get_running_loop().create_task(
            self._finish(live, reason, error), name=f"agentplane-end-{live.record.session_id}"
        )
        self._enders.add(ender)
        ender.add_done_callback(self._enders.discard)

    async def _finish(self, live: LiveSession, reason: EndReason, error: str) -> None:
        record = live.record
        self._disarm_timers(live)
        try:
            record.state = SessionState.ENDING
            self._publish_state(record, SessionState.RUNNING, SessionState.ENDING)
            await self._registry.update(record)
            await self._stop_task(live)
            await self._close_agent(live.agent, record.session_id)
            self._read_agent_metrics(live)
        except Exception:
            logger.exception("while ending session %s", record.session_id)
        finally:
            record.final_metrics = live.metrics.snapshot()
            record.state = SessionState.ENDED
            record.end_reason = reason
            record.ended_at = time.time()
            record.error_message = error
            self._live.pop(record.session_id, None)
            live.agent = None
            live.task = None
            try:
                await self._registry.release(record)
                await self._registry.update(record)
            except Exception:
                logger.exception("registry update failed for ended session %s", record.session_id)
            self._count_end(record)
            self._publish_state(record, SessionState.ENDING, SessionState.ENDED)
            self.events.publish(
                record.session_id,
                record.call_id,
                EventKind.ENDED,
                {"session": record.snapshot(), "metrics": dict(record.final_metrics)},
            )
            self._retention.add(record.session_id)
            if live.ended is not None and not live.ended.done():
                live.ended.set_result(record.snapshot())
            self._notify_accepting()
            logger.info(
                "session %s ended: %s%s",
                record.session_id,
                reason.name.lower(),
                f" ({error})" if error else "",
            )

    async def _stop_task(self, live: LiveSession) -> None:
        task = live.task
        if task is None or task.done():
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=self._stop_timeout)
        if not done:
            # The agent swallowed cancellation. Keep a reference (so it is not
            # garbage-collected mid-flight), log it, and move on: the session
            # ends anyway and its slot is freed.
            logger.error(
                "join_call of session %s ignored cancellation for %.1f s; abandoning it",
                live.record.session_id,
                self._stop_timeout,
            )
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)

    async def _close_agent(self, agent: Any, session_id: str) -> None:
        if agent is None:
            return
        for name in ("close", "aclose", "finish"):
            closer = getattr(agent, name, None)
            if callable(closer):
                try:
                    await asyncio.wait_for(_maybe_await(closer()), self._stop_timeout)
                except TimeoutError:
                    logger.error("agent.%s() of session %s timed out", name, session_id)
                except Exception:
                    logger.exception("agent.%s() of session %s raised", name, session_id)
                return

    def _count_end(self, record: SessionRecord) -> None:
        assert record.end_reason is not None and record.ended_at is not None
        self._ended_by_reason[record.end_reason.name] += 1
        if record.end_reason is EndReason.ERROR:
            self._counts["failed"] += 1
        else:
            self._counts["completed"] += 1
        self._duration_total += record.ended_at - record.started_at
        self._call_hooks("session_ended", record)

    def _publish_state(
        self, record: SessionRecord, previous: SessionState, new: SessionState
    ) -> None:
        self.events.publish(
            record.session_id,
            record.call_id,
            EventKind.STATE_CHANGED,
            {"previous_state": previous, "state": new},
        )

    async def _forget(self, session_id: str) -> None:
        await self._registry.forget(session_id)
        self.events.forget_session(session_id)

    # --------------------------------------------------------------- timers

    def _arm_timers(self, live: LiveSession) -> None:
        loop = asyncio.get_running_loop()
        if self.max_session_duration is not None:
            live.max_duration_timer = loop.call_later(
                self.max_session_duration, self._begin_end, live, EndReason.MAX_DURATION
            )
        if self.idle_timeout is not None:
            if callable(getattr(live.agent, "idle_for", None)):
                live.idle_timer = loop.call_later(self.idle_timeout, self._check_agent_idle, live)
            else:
                # Nobody but the agent is on the call until someone joins.
                live.alone_since = time.monotonic()
                live.idle_timer = loop.call_later(self.idle_timeout, self._check_presence, live)

    def _disarm_timers(self, live: LiveSession) -> None:
        for handle in (live.max_duration_timer, live.idle_timer, live.metrics_timer):
            if handle is not None:
                handle.cancel()
        live.max_duration_timer = live.idle_timer = live.metrics_timer = None

    def _check_agent_idle(self, live: LiveSession) -> None:
        """Ask the agent how long it has been alone; re-check when it could expire."""
        assert self.idle_timeout is not None
        live.idle_timer = None
        if live.ending:
            return
        try:
            idle = float(live.agent.idle_for())
        except Exception:
            logger.exception("agent.idle_for() of session %s raised", live.record.session_id)
            idle = 0.0
        if not math.isfinite(idle) or idle < 0:
            # A NaN delay would corrupt the loop's timer heap: count it as busy.
            logger.warning(
                "agent.idle_for() of session %s returned %r", live.record.session_id, idle
            )
            idle = 0.0
        if idle >= self.idle_timeout:
            self._begin_end(live, EndReason.IDLE_TIMEOUT)
            return
        live.idle_timer = asyncio.get_running_loop().call_later(
            self.idle_timeout - idle, self._check_agent_idle, live
        )

    def _check_presence(self, live: LiveSession) -> None:
        assert self.idle_timeout is not None
        live.idle_timer = None
        if live.ending or live.alone_since is None:
            return
        alone_for = time.monotonic() - live.alone_since
        if alone_for >= self.idle_timeout:
            self._begin_end(live, EndReason.IDLE_TIMEOUT)
            return
        live.idle_timer = asyncio.get_running_loop().call_later(
            self.idle_timeout - alone_for, self._check_presence, live
        )

    # Host callbacks of SessionContext.

    def _presence_changed(self, live: LiveSession) -> None:
        if (
            self.idle_timeout is None
            or live.ending
            or callable(getattr(live.agent, "idle_for", None))
        ):
            return
        if live.alone_since is None:
            if live.idle_timer is not None:
                live.idle_timer.cancel()
                live.idle_timer = None
        elif live.idle_timer is None:
            remaining = self.idle_timeout - (time.monotonic() - live.alone_since)
            live.idle_timer = asyncio.get_running_loop().call_later(
                max(remaining, 0.0), self._check_presence, live
            )

    def _metrics_changed(self, live: LiveSession) -> None:
        if live.metrics_timer is None and not live.ending:
            live.metrics_timer = asyncio.get_running_loop().call_later(
                self._metrics_interval, self._flush_metrics, live
            )

    def _flush_metrics(self, live: LiveSession) -> None:
        live.metrics_timer = None
        if live.ending:
            return
        record = live.record
        self.events.publish(
            record.session_id,
            record.call_id,
            EventKind.METRICS_UPDATED,
            {"metrics": self._live_metrics(live)},
        )

    def _agent_event(self, live: LiveSession, name: str, data: dict[str, Any]) -> None:
        record = live.record
        self.events.publish(
            record.session_id, record.call_id, EventKind.AGENT, {"name": name, "data": data}
        )

    def _read_agent_metrics(self, live: LiveSession) -> None:
        """Adopt figures from an agent's own metrics collector, where it has one."""
        collector = getattr(live.agent, "metrics", None)
        to_dict = getattr(collector, "to_dict", None)
        if not callable(to_dict):
            return
        try:
            values = to_dict()
        except Exception:
            logger.exception("agent.metrics.to_dict() of session %s raised", live.record.session_id)
            return
        if isinstance(values, dict):
            live.metrics.merge_external(values)

    def _live_metrics(self, live: LiveSession) -> dict[str, float]:
        self._read_agent_metrics(live)
        return live.metrics.snapshot()

    # ---------------------------------------------------------------- reads

    async def get_session(self, session_id: str) -> SessionRecord:
        """The session, running or ended within the retention window."""
        validate_session_id(session_id)
        record = await self._registry.get(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        return record.snapshot()

    async def get_metrics(self, session_id: str) -> tuple[SessionRecord, dict[str, float]]:
        """The session and its metrics snapshot (final metrics once ended)."""
        record = await self.get_session(session_id)
        live = self._live.get(session_id)
        if live is not None:
            return record, self._live_metrics(live)
        return record, dict(record.final_metrics or {})

    async def close_session(self, session_id: str) -> SessionRecord:
        """End a session by request and answer its final record.

        Closing an ended session answers it as it ended.
        """
        validate_session_id(session_id)
        live = self._live.get(session_id)
        if live is None:
            return await self.get_session(session_id)
        if live.started is not None and not live.started.done():
            # Still being created: let Start finish (or fail) first.
            try:
                await self._await_start(live.started)
            except Exception:
                raise SessionNotFound(session_id) from None
        if self._live.get(session_id) is not live:
            # It ended (and was resolved) while its Start was awaited.
            return await self.get_session(session_id)
        self._begin_end(live, EndReason.CLOSED_BY_REQUEST)
        return await asyncio.shield(self._ended_future(live))

    @staticmethod
    def _ended_future(live: LiveSession) -> asyncio.Future[SessionRecord]:
        """The future ``_finish`` resolves with the final record (made on demand)."""
        if live.ended is None:
            live.ended = asyncio.get_running_loop().create_future()
        return live.ended

    def stats(self) -> LauncherStats:
        """Operator figures: in flight, capacity, counts, mean duration."""
        ended = self._counts["completed"] + self._counts["failed"]
        return LauncherStats(
            in_flight=len(self._live),
            capacity=self.limits.max_concurrent_sessions,
            draining=self._draining,
            started=self._counts["started"],
            completed=self._counts["completed"],
            failed=self._counts["failed"],
            ended_by_reason=dict(self._ended_by_reason),
            rejected_by_reason=dict(self._rejected_by_reason),
            mean_duration_seconds=self._duration_total / ended if ended else None,
            failed_starts=self._counts["failed_starts"],
        )

    @property
    def abandoned_tasks(self) -> int:
        """join_call tasks that ignored cancellation and are still running."""
        return len(self._abandoned)
