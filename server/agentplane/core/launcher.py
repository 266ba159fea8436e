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
import contextvars
import dataclasses
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Unpack

from . import agent as agent_contract
from . import launcher_args
from .agent import AdaptedAgent, AgentAdapter, CreateAgent, JoinCall
from .context import bind_current
from .errors import (
    AdmissionRejected,
    AgentStartFailed,
    Draining,
    IdempotencyConflict,
    NotReady,
    SessionNotFound,
    Unavailable,
    failure_message,
    new_error_id,
)
from .events import DEFAULT_BUFFER, DEFAULT_RETAINED_BYTES, EventLog
from .expiry import ExpiryQueue
from .listing import (
    DEFAULT_PAGE_SIZE,
    MAX_EXAMINED,
    MAX_PAGE_SIZE,
    ListPosition,
    SessionPage,
    SessionQuery,
)
from .models import EndReason, EventKind, LauncherStats, SessionRecord, SessionState
from .observers import LauncherHooks, Observers
from .registry import InMemorySessionRegistry, RemoteSessions, SessionRegistry
from .session import LiveSession, SessionPolicy
from .settings import DEFAULT_LIMIT_RETRY_AFTER, LauncherSettings, SettingChanges
from .stats import LauncherCounters
from .tasks import AbandonedTasks, OwnedTasks
from .validation import new_session_id, validate_session_id, validate_start

logger = logging.getLogger("agentplane.launcher")

Warmup = Callable[[], Awaitable[None] | None]
# The limits a session's end can lift: a retry can succeed, at an unknown time.
SLOT_LIMITS = frozenset(
    {"MAX_CONCURRENT_SESSIONS", "MAX_SESSIONS_PER_CALL", "MAX_SESSIONS_PER_NODE"}
)
# How long a cancelled create_agent may take to finish before it is abandoned.
CANCEL_GRACE = 1.0

__all__ = ["AgentAdapter", "AgentLauncher", "CreateAgent", "JoinCall", "LauncherHooks", "Warmup"]


class _CreatorCancelled(AgentStartFailed):
    """The Start another caller waited for was cancelled; its key is free again."""


class AgentLauncher:
    """Runs the user's ``create_agent`` and ``join_call`` for each session.

    Example::

        launcher = AgentLauncher(create_agent=create_agent, join_call=join_call,
                                 max_concurrent_sessions=50)
        async with launcher:
            session = await launcher.start_session("my-call")
            ...
            await launcher.close_session(session.session_id)

    The agent contract (what is called on the agent, and when) is documented
    in ``agentplane.core.agent``; a running session's own behaviour (its task,
    timers and reports) in ``agentplane.core.session``.

    The first eight parameters are Vision Agents' ``AgentLauncher``'s, in its
    order, so a launcher written for it works as it is. ``maintenance_interval``
    (and the documented ``cleanup_interval``) have nothing to do here: no loop
    visits the sessions, each one has its own timers. ``registry`` must be an
    agentplane ``SessionRegistry``; Vision Agents' own is refused at once.
    """

    def __init__(
        self,
        create_agent: CreateAgent,
        join_call: JoinCall,
        agent_idle_timeout: float | None = 60.0,
        max_concurrent_sessions: int | None = None,
        max_sessions_per_call: int | None = None,
        max_session_duration_seconds: float | None = None,
        maintenance_interval: float | None = None,
        registry: SessionRegistry | None = None,
        *,
        cleanup_interval: float | None = None,
        permits_per_minute: int | None = None,
        drain_timeout: float = 30.0,
        warmup: Warmup | None = None,
        create_agent_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        session_retention_seconds: float = 300.0,
        max_retained_sessions: int = 10_000,
        event_buffer_size: int = DEFAULT_BUFFER,
        retained_event_bytes: int = DEFAULT_RETAINED_BYTES,
        metrics_event_interval: float = 1.0,
        hooks: Sequence[LauncherHooks] = (),
        agent_adapter: AgentAdapter | None = None,
        adapter_startup_timeout: float = 300.0,
        max_sessions_per_node: int | None = None,
        limit_retry_after: float | None = DEFAULT_LIMIT_RETRY_AFTER,
        expose_error_details: bool = False,
    ) -> None:
        launcher_args.check_unused_intervals(maintenance_interval, cleanup_interval)
        launcher_args.check_registry(registry)
        settings = LauncherSettings(
            agent_idle_timeout=agent_idle_timeout,
            max_concurrent_sessions=max_concurrent_sessions,
            max_sessions_per_call=max_sessions_per_call,
            max_session_duration_seconds=max_session_duration_seconds,
            permits_per_minute=permits_per_minute,
            max_sessions_per_node=max_sessions_per_node,
            drain_timeout=drain_timeout,
            create_agent_timeout=create_agent_timeout,
            stop_timeout=stop_timeout,
            adapter_startup_timeout=adapter_startup_timeout,
            session_retention_seconds=session_retention_seconds,
            max_retained_sessions=max_retained_sessions,
            metrics_event_interval=metrics_event_interval,
            limit_retry_after=limit_retry_after,
        )
        self._expose_error_details = expose_error_details
        self._create_agent = create_agent
        self._join_call = join_call
        self._join_takes_session = agent_contract.takes_session(join_call)
        self._create_keywords = agent_contract.Keywords.of(create_agent)
        self._warmup = warmup
        self._adapter = agent_adapter
        # A start-up hook that ignored cancellation: referenced, never awaited.
        self._abandoned_startup: asyncio.Task[None] | None = None
        # `is None`: an empty InMemorySessionRegistry is falsy (it has a length).
        self._registry: SessionRegistry = (
            InMemorySessionRegistry() if registry is None else registry
        )
        self._observers = Observers(tuple(hooks))
        self._counters = LauncherCounters()
        self.events = EventLog(buffer_size=event_buffer_size, retained_bytes=retained_event_bytes)
        self._remote: RemoteSessions | None = None
        self._held: tuple[str, str] | None = None
        self._policy: SessionPolicy
        self._apply(settings)
        self._live: dict[str, LiveSession] = {}
        # Starts whose create_agent runs now (operator metrics).
        self._starting = 0
        # Ending sequences, Start undos and slot releases: shutdown waits for them.
        self._enders = OwnedTasks()
        # Agent tasks that ignored cancellation: each still holds its slot.
        self._abandoned = AbandonedTasks(self._enders)
        self._ready = warmup is None and agent_adapter is None
        self._started = False
        self._draining = False

    def add_hooks(self, hooks: LauncherHooks) -> None:
        """Register an observer (operator metrics, audit log)."""
        self._observers.add_hooks(hooks)

    def add_accepting_listener(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(accepting)`` now and whenever ``accepting`` changes."""
        self._observers.add_accepting_listener(listener, self.accepting)

    def _accepting_may_have_changed(self) -> None:
        self._observers.accepting_is(self.accepting)

    @property
    def expose_error_details(self) -> bool:
        """Whether callers see the text of ``create_agent``'s and ``join_call``'s exceptions.

        False (the default): a failed Start's message and a session's
        ``error_message`` name the exception's type and the id of the log
        line with its traceback, never its text (decision 29). Sessions
        started from now on follow a change.
        """
        return self._expose_error_details

    @expose_error_details.setter
    def expose_error_details(self, expose: bool) -> None:
        self._expose_error_details = expose
        self._policy = dataclasses.replace(self._policy, expose_error_details=expose)

    @property
    def settings(self) -> LauncherSettings:
        """The limits, timeouts and retention in force (``configure`` changes them)."""
        return self._settings

    def configure(self, **changes: Unpack[SettingChanges]) -> LauncherSettings:
        """Change settings before the launcher starts; answer the settings now in force.

        Takes any of ``LauncherSettings``' fields, with ``AgentLauncher``'s
        checks: an unknown name is a TypeError, a bad value a TypeError or
        ValueError naming the setting, and nothing changes then. A started
        launcher refuses (RuntimeError): running sessions keep the timers they
        began with. ``agentplane serve`` applies its flags and environment
        variables through it.
        """
        if self._started:
            raise RuntimeError("a launcher's settings must be configured before it starts")
        self._apply(self._settings.replace(dict(changes)))
        self._accepting_may_have_changed()
        return self._settings

    def _apply(self, settings: LauncherSettings) -> None:
        self._settings = settings
        # In a cluster, all but max_sessions_per_node are the cluster's.
        self.limits = settings.limits()
        self.max_session_duration = settings.max_session_duration_seconds or None
        self.idle_timeout = settings.agent_idle_timeout or None
        self.drain_timeout = settings.drain_timeout
        self._adapter_startup_timeout = settings.adapter_startup_timeout
        self._create_timeout = settings.create_agent_timeout
        self._stop_timeout = settings.stop_timeout
        # The hint sent with MAX_CONCURRENT_SESSIONS, MAX_SESSIONS_PER_CALL and
        # MAX_SESSIONS_PER_NODE (RetryInfo, HTTP Retry-After); None sends none.
        self.limit_retry_after = settings.limit_retry_after
        self._policy = SessionPolicy(
            idle_timeout=self.idle_timeout,
            max_duration=self.max_session_duration,
            metrics_interval=settings.metrics_event_interval,
            expose_error_details=self._expose_error_details,
        )
        self._retention_seconds = settings.session_retention_seconds
        # Empty until the launcher starts: replacing it loses nothing.
        self._retention = ExpiryQueue(
            settings.session_retention_seconds, settings.max_retained_sessions, self._forget
        )

    @property
    def create_agent(self) -> CreateAgent:
        """The user's ``create_agent``, as given."""
        return self._create_agent

    @property
    def create_agent_timeout(self) -> float:
        """How long ``create_agent`` may take before the Start fails."""
        return self._create_timeout

    @property
    def started(self) -> bool:
        """Whether ``start()`` was called (the agent adapter is fixed from then on)."""
        return self._started

    @property
    def agent_adapter(self) -> AgentAdapter | None:
        """The adapter of the agents' family (``agentplane.core.agent``), if any."""
        return self._adapter

    @agent_adapter.setter
    def agent_adapter(self, adapter: AgentAdapter | None) -> None:
        if self._started:
            raise RuntimeError("the agent adapter must be set before the launcher starts")
        self._adapter = adapter
        self._ready = self._warmup is None and adapter is None

    @property
    def retention_seconds(self) -> float:
        """How long an ended session stays readable."""
        return self._retention_seconds

    @property
    def registry(self) -> SessionRegistry:
        """Where records, idempotency keys and admission slots live."""
        return self._registry

    @registry.setter
    def registry(self, registry: SessionRegistry) -> None:
        # A cluster (agentplane.cluster) shares one registry among its nodes.
        if self._started:
            raise RuntimeError("the registry must be set before the launcher starts")
        launcher_args.check_registry(registry)
        self._registry = registry

    @property
    def remote(self) -> RemoteSessions | None:
        """Sessions of other nodes (a cluster): Close and Metrics reach their node."""
        return self._remote

    @remote.setter
    def remote(self, remote: RemoteSessions | None) -> None:
        if self._started:
            raise RuntimeError("remote sessions must be set before the launcher starts")
        self._remote = remote

    @property
    def admission_held(self) -> str | None:
        """Why admission is held from outside (``hold_admission``), or None."""
        return None if self._held is None else self._held[0]

    def hold_admission(self, reason: str | None, message: str = "") -> None:
        """Refuse new sessions for a reason outside the launcher; None lifts it.

        A cluster node whose Redis cannot be reached holds admission
        (``CLUSTER_UNAVAILABLE``): ``accepting``, ``/ready`` and gRPC health
        say so, and Starts are UNAVAILABLE with ``message``. Running sessions
        are untouched.
        """
        self._held = None if reason is None else (reason, message)
        self._accepting_may_have_changed()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Run the adapter's ``startup`` and the optional ``warmup()``; ready afterwards."""
        self._started = True
        if not self._ready:
            if self._adapter is not None:
                await self._adapter_startup(self._adapter)
            if self._warmup is not None:
                await agent_contract.maybe_await(self._warmup())
        self._ready = True
        self._accepting_may_have_changed()

    async def _adapter_startup(self, adapter: AgentAdapter) -> None:
        """``adapter.startup`` within ``adapter_startup_timeout``; its failure fails start()."""
        loop = asyncio.get_running_loop()

        async def create() -> Any:
            return await asyncio.wait_for(self._call_factory({}), self._create_timeout)

        task = loop.create_task(adapter.startup(create), name="agentplane-adapter-startup")
        try:
            done, _ = await asyncio.wait({task}, timeout=self._adapter_startup_timeout)
        except asyncio.CancelledError:
            await self._stop_startup(task)
            raise
        if not done:
            await self._stop_startup(task)
            raise AgentStartFailed(
                f"the agent adapter's start-up did not finish within "
                f"{self._adapter_startup_timeout:g} s"
            )
        exc = task.exception()
        if exc is not None:
            logger.error("the agent adapter's start-up failed", exc_info=exc)
            raise AgentStartFailed(
                f"the agent adapter's start-up failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def _stop_startup(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_GRACE)
        if not task.done():
            logger.error("the agent adapter's start-up ignored cancellation; abandoning it")
            self._abandoned_startup = task

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
        """True while a Start could be admitted: ready, not draining, not full.

        Abandoned tasks (agents that ignored cancellation) still count.
        """
        cap = self.limits.max_concurrent_sessions
        if not self._ready or self._draining or self._held is not None:
            return False
        if self._remote is not None:
            # A cluster node: a full node places Starts on others, and the
            # cluster's limit is the cluster's to check.
            return True
        if self._node_full():
            return False
        return cap is None or len(self._live) + len(self._abandoned) < cap

    @property
    def max_sessions_per_node(self) -> int | None:
        """Sessions this node itself may hold (None: no cap of its own)."""
        return self.limits.max_sessions_per_node

    def _node_full(self) -> bool:
        # A hint for placement and readiness; the registry admits atomically.
        cap = self.limits.max_sessions_per_node
        return cap is not None and len(self._live) + len(self._abandoned) >= cap

    # ``timeout`` is the grace period of the sessions, not a cancel scope of
    # this call (which then ends them and returns): ASYNC109 does not apply.
    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Refuse new sessions, let running ones finish, then end the rest.

        Waits up to ``timeout`` (default ``drain_timeout``) for sessions to end
        by themselves; whatever still runs then ends with reason SHUTDOWN.
        """
        self._draining = True
        self._accepting_may_have_changed()
        budget = self.drain_timeout if timeout is None else timeout
        logger.info("draining: %d running sessions, up to %.1f s", len(self._live), budget)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        while self._live:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            waiters = [live.ended_future() for live in self._live.values()]
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        await self.shutdown()

    async def shutdown(self) -> None:
        """End every session now (reason SHUTDOWN) and release everything."""
        self._draining = True
        self._accepting_may_have_changed()
        for live in list(self._live.values()):
            if live.started is not None and not live.started.done():
                # Still in create_agent: that Start sees the drain and undoes
                # itself; the session never ran, so it must not "end".
                continue
            live.end(EndReason.SHUTDOWN)
        await self._enders.wait_all()
        await self._retention.aclose()
        # Watchers get the last events, then their streams end cleanly
        # (grpclib does not end open streams when its server closes).
        self.events.close()

    async def end_local_sessions(self, reason: EndReason, message: str) -> None:
        """End every session this launcher runs with ``reason``, and wait for their ends.

        A cluster node that was declared dead calls it (NODE_LOST): the
        cluster has already ended those sessions, so they must not run on.
        """
        for live in list(self._live.values()):
            if live.started is not None and not live.started.done():
                continue  # still in create_agent: its Start fails and undoes itself
            live.end(reason, message)
        await self._enders.wait_all()

    async def end_lost_session(self, session_id: str) -> SessionRecord | None:
        """Record that a session of a lost node ended: NODE_LOST, its slot freed.

        Nothing of the session runs here: its record is in the shared registry
        (``agentplane.cluster``). Watchers of this node get its ENDED event and
        it is retained as any ended session. Returns the ended record, or None
        when it is unknown or ended already (its slot is freed either way).
        """
        record = await self._registry.get(session_id)
        if record is None:
            return None
        if record.ended:
            await self._registry.release(record)
            return None
        previous = record.state
        record.state = SessionState.ENDED
        record.end_reason = EndReason.NODE_LOST
        record.ended_at = time.time()
        record.error_message = "the node running this session was lost"
        record.final_metrics = dict(record.final_metrics or {})
        await self._registry.release(record)
        await self._registry.update(record)
        self._counters.ended(record)
        self._observers.call("session_ended", record)
        self._publish_state(record, previous, SessionState.ENDED)
        self.events.publish(
            record.session_id,
            record.call_id,
            EventKind.ENDED,
            {"session": record.snapshot(), "metrics": dict(record.final_metrics)},
        )
        self._retention.add(record.session_id)
        self._accepting_may_have_changed()
        logger.warning("session %s ended: node_lost (its node was declared dead)", session_id)
        return record.snapshot()

    # ---------------------------------------------------------------- start

    async def start_session(
        self,
        call_id: str,
        call_type: str = "default",
        *,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str = "",
        created_by: str = "",
        video_track_override_path: str | None = None,
        place_elsewhere: bool = True,
    ) -> SessionRecord:
        """Admit a session, create its agent and start ``join_call``.

        ``video_track_override_path`` goes to the agent's
        ``set_video_track_override_path()`` before ``join_call``, as Vision
        Agents' ``start_session`` does (``run --video-track-override``).

        In a cluster, a node that is draining or runs ``max_sessions_per_node``
        hands the Start to the least loaded node with room (``remote``), and
        answers what that node answers; when none takes it, a full node
        admits it itself if it can (an idempotent retry of a session it has),
        else refuses. ``place_elsewhere=False`` (a Start handed over already)
        never hands it on.

        Raises InvalidArgument (metadata ``create_agent`` does not take
        included), Draining, NotReady, AdmissionRejected, IdempotencyConflict
        or AgentStartFailed; a failed Start leaves nothing behind.
        """
        call_type = call_type or "default"
        metadata = dict(metadata or {})
        validate_start(call_id, call_type, metadata, idempotency_key, self._create_keywords)
        record = SessionRecord(
            session_id=new_session_id(),
            call_id=call_id,
            call_type=call_type,
            started_at=time.time(),
            created_by=created_by,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
        if place_elsewhere and self._remote is not None and (self._draining or self._node_full()):
            placed = await self._remote.start(record, video_track_override_path)
            if placed is not None:
                return placed
        existing = await self._admit(record)
        if existing is not None:
            try:
                return await self._replay(existing, record)
            except _CreatorCancelled:
                # The Start that held this key was cancelled (its client went
                # away, say a closed tab): this retry takes its place.
                existing = await self._admit(record)
                if existing is not None:
                    return await self._replay(existing, record)

        loop = asyncio.get_running_loop()
        live = LiveSession(record, self._policy, self.events, self._begin_end, loop)
        self._live[record.session_id] = live
        self._accepting_may_have_changed()
        began = loop.time()
        self._starting += 1
        try:
            agent = await self._create_agent_for(live, video_track_override_path)
        finally:
            self._starting -= 1

        record.state = SessionState.RUNNING
        await self._registry.update(record)
        self.events.open_session(record.session_id)
        live.run(agent, self._join_call, self._join_takes_session)
        self._counters.started()
        self.events.publish(
            record.session_id, call_id, EventKind.STARTED, {"session": record.snapshot()}
        )
        self._observers.call("session_started", record, loop.time() - began)
        assert live.started is not None
        live.started.set_result(None)
        # Waiters hold their own reference; a held session need not keep it.
        live.started = None
        logger.info("session %s started for call %s", record.session_id, call_id)
        return record.snapshot()

    async def _admit(self, record: SessionRecord) -> SessionRecord | None:
        """Take a slot for ``record``, or answer the session its idempotency key names."""
        try:
            if self._draining:
                raise Draining()
            if not self._ready:
                raise NotReady()
            if self._held is not None:
                raise Unavailable(*self._held)
            # The rate window is a duration: the loop's clock measures it.
            now = asyncio.get_running_loop().time()
            return await self._registry.admit(record, self.limits, now)
        except (Unavailable, AdmissionRejected) as exc:  # Draining, NotReady included
            reason = exc.reason
            if (
                isinstance(exc, AdmissionRejected)
                and exc.retry_after is None
                and reason in SLOT_LIMITS
            ):
                # The registry (local or the cluster's) cannot know when a
                # session ends; a retry can succeed, so say when to try.
                exc.retry_after = self.limit_retry_after
            self._counters.rejected(reason)
            self._observers.call("admission_rejected", reason)
            raise

    async def _create_agent_for(self, live: LiveSession, video_override: str | None) -> Any:
        """Run ``create_agent`` within its timeout; on any failure undo the admission.

        The answer never waits for a factory that ignores cancellation: after
        ``CANCEL_GRACE`` it is abandoned, keeps its slot until it really
        finishes, and the agent it may still return is closed then.
        """
        record = live.record
        loop = asyncio.get_running_loop()
        # The factory's own context: current_session() answers in it.
        context = contextvars.copy_context()
        create: asyncio.Task[Any] | None = None
        try:
            made = context.run(self._call_create_agent, live)
            if self._adapter is None and not inspect.isawaitable(made):
                # A plain function returned the agent: it had no time to run
                # out, and no task or timer is needed to wait for it.
                agent = made
            else:
                create = loop.create_task(
                    self._finish_factory(made, live),
                    name=f"agentplane-create-{record.session_id}",
                    context=context,
                )
                done, _ = await asyncio.wait({create}, timeout=self._create_timeout)
                if not done:
                    raise AgentStartFailed(
                        f"create_agent did not finish within {self._create_timeout:g} s"
                    )
                agent = create.result()
            if video_override:
                try:
                    agent_contract.set_video_track_override(agent, video_override)
                except BaseException:
                    await agent_contract.close_agent(agent, record.session_id, self._stop_timeout)
                    raise
            if self._draining:
                await self._close_agent(agent, live)
                raise Draining()
        except BaseException as exc:
            failure = self._start_failure(exc, record)
            # Undo in a task of its own: a second cancellation of this Start
            # (a client deadline, then its disconnect) must not cut it short.
            undo = self._enders.spawn(
                self._undo_start(create, live, failure), f"agentplane-undo-{record.session_id}"
            )
            try:
                await asyncio.shield(undo)
            except asyncio.CancelledError:
                if not isinstance(exc, asyncio.CancelledError):
                    raise
            if failure is exc:
                raise
            raise failure from exc
        return agent

    def _start_failure(self, exc: BaseException, record: SessionRecord) -> BaseException:
        """What the caller of a failed Start is told (cancellation stays cancellation).

        The exception's type and the id of the log line with its traceback;
        its text only with ``expose_error_details``.
        """
        if isinstance(exc, Exception) and not isinstance(exc, (Draining, AgentStartFailed)):
            error_id = new_error_id()
            logger.exception(
                "create_agent failed for call %s (session %s, error %s)",
                record.call_id,
                record.session_id,
                error_id,
            )
            expose = self.expose_error_details
            return AgentStartFailed(
                failure_message("create_agent failed", exc, error_id, expose=expose)
            )
        return exc

    async def _undo_start(
        self, create: asyncio.Task[Any] | None, live: LiveSession, failure: BaseException
    ) -> None:
        """Stop create_agent, free the admission, tell idempotent retries why.

        ``create``: the task finishing the factory; None when it ran in the Start itself.
        """
        finished = create is None or await self._cancel_create(create, live)
        await self._abort_start(live, release_slot=finished)
        if create is not None and not finished:
            self._hold_slot(create, live, forget=True)
        if live.started is not None and not live.started.done():
            if isinstance(failure, Exception):
                live.started.set_exception(failure)
                live.started.exception()  # retrieved: idempotent waiters may be absent
            else:
                live.started.cancel()

    async def _call_factory(self, metadata: dict[str, Any]) -> Any:
        """``create_agent`` outside any session (the adapter's start-up)."""
        return await agent_contract.maybe_await(self._create_agent(**metadata))

    def _call_create_agent(self, live: LiveSession) -> Any:
        """``create_agent(**metadata)`` for ``live``, in the factory's context.

        An async factory only makes its coroutine here; ``_finish_factory``
        runs it.
        """
        bind_current(live.context)
        return self._create_agent(**live.record.metadata)

    async def _finish_factory(self, made: Any, live: LiveSession) -> Any:
        """Await what ``create_agent`` returned, then the adapter's ``prepare``.

        A task of its own, in the factory's context: ``current_session()``
        answers ``live`` in it.
        """
        agent = await agent_contract.maybe_await(made)
        adapter = self._adapter
        if adapter is None:
            return agent
        try:
            live.adapted = await adapter.prepare(agent)
        except BaseException:
            await agent_contract.close_agent(agent, live.session_id, self._stop_timeout)
            raise
        return agent

    async def _close_agent(self, agent: Any, live: LiveSession) -> None:
        adapted: AdaptedAgent | None = live.adapted
        await agent_contract.close_agent(agent, live.session_id, self._stop_timeout, adapted)

    async def _cancel_create(self, create: asyncio.Task[Any], live: LiveSession) -> bool:
        """Cancel an unfinished create_agent; True once it has really finished."""
        if create.done():
            return True  # its outcome is the caller's to handle
        create.cancel()
        await asyncio.wait({create}, timeout=CANCEL_GRACE)
        if not create.done():
            logger.error(
                "create_agent task %s ignored cancellation; abandoning it", create.get_name()
            )
            return False
        if not create.cancelled() and create.exception() is None:
            # It returned an agent after all, but the Start is over: close it.
            await self._close_agent(create.result(), live)
        return True

    async def _replay(self, existing: SessionRecord, asked: SessionRecord) -> SessionRecord:
        if existing.call_id != asked.call_id or existing.call_type != asked.call_type:
            raise IdempotencyConflict(
                f"idempotency key '{asked.idempotency_key}' was used for call "
                f"'{existing.call_id}' ({existing.call_type}); use a new key for another call"
            )
        live = self._live.get(existing.session_id)
        if live is not None and live.started is not None and not live.started.done():
            await self._await_start(live.started)
        elif live is None and existing.state is SessionState.STARTING:
            # Its create_agent was abandoned and still holds the key.
            raise AgentStartFailed("the Start creating this session failed; retry later")
        return existing.snapshot()

    @staticmethod
    async def _await_start(started: asyncio.Future[None]) -> None:
        """Wait for another caller's Start; its cancellation is not ours."""
        try:
            await asyncio.shield(started)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if started.cancelled() and (task is None or not task.cancelling()):
                raise _CreatorCancelled("the Start creating this session was cancelled") from None
            raise

    async def _abort_start(self, live: LiveSession, *, release_slot: bool = True) -> None:
        self._live.pop(live.session_id, None)
        if release_slot:
            await self._registry.forget(live.session_id)
        self._counters.failed_start()
        if live.ended is not None and not live.ended.done():
            live.ended.cancel()
        self._accepting_may_have_changed()

    # ---------------------------------------------------------- supervision

    def _begin_end(self, live: LiveSession, reason: EndReason, error: str) -> None:
        """Run the ending sequence of ``live`` in a task the launcher owns."""
        self._enders.spawn(self._finish(live, reason, error), f"agentplane-end-{live.session_id}")

    async def _finish(self, live: LiveSession, reason: EndReason, error: str) -> None:
        """ENDING, stop join_call, close the agent, then ENDED: whatever fails on the way."""
        # This task is the session's too: current_session() (and the session
        # id on log lines) answers in the agent's close().
        bind_current(live.context)
        record = live.record
        stopped = True
        try:
            record.state = SessionState.ENDING
            self._publish_state(record, SessionState.RUNNING, SessionState.ENDING)
            await self._registry.update(record)
            stopped = await live.stop(self._stop_timeout)
            if not stopped:
                assert live.task is not None
                logger.error(
                    "join_call of session %s ignored cancellation for %.1f s; abandoning "
                    "task %s (its slot stays taken until it finishes)",
                    record.session_id,
                    self._stop_timeout,
                    live.task.get_name(),
                )
                self._hold_slot(live.task, live, forget=False)
            await self._close_agent(live.agent, live)
            live.read_collector()
        except Exception:
            logger.exception("while ending session %s", record.session_id)
        finally:
            await self._record_end(live, reason, error, release_slot=stopped)

    def _hold_slot(self, task: asyncio.Task[Any], live: LiveSession, *, forget: bool) -> None:
        """Count ``task`` against the limits until it really finishes, then free its slot.

        An agent that ignores cancellation still uses memory and CPU: it must
        not let the node admit more sessions than it was configured for.
        """
        record = live.record

        async def then() -> None:
            await (self._late_create(task, live) if forget else self._release(record))
            self._accepting_may_have_changed()

        self._abandoned.hold(task, then, f"agentplane-release-{record.session_id}")

    async def _late_create(self, create: asyncio.Task[Any], live: LiveSession) -> None:
        """An abandoned create_agent finished: close what it made, free the slot."""
        if not create.cancelled() and create.exception() is None:
            await self._close_agent(create.result(), live)
        await self._registry.forget(live.session_id)

    async def _release(self, record: SessionRecord) -> None:
        try:
            await self._registry.release(record)
        except Exception:
            logger.exception("registry release failed for ended session %s", record.session_id)

    async def _record_end(
        self, live: LiveSession, reason: EndReason, error: str, *, release_slot: bool
    ) -> None:
        record = live.record
        record.final_metrics = live.metrics.snapshot()
        record.state = SessionState.ENDED
        record.end_reason = reason
        record.ended_at = time.time()
        record.error_message = error
        self._live.pop(record.session_id, None)
        live.agent = None
        live.adapted = None
        live.task = None
        try:
            if release_slot:
                await self._registry.release(record)
            await self._registry.update(record)
        except Exception:
            logger.exception("registry update failed for ended session %s", record.session_id)
        self._counters.ended(record)
        self._observers.call("session_ended", record)
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
        self._accepting_may_have_changed()
        logger.info(
            "session %s ended: %s%s",
            record.session_id,
            reason.name.lower(),
            f" ({error})" if error else "",
        )

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

    # ---------------------------------------------------------------- reads

    async def get_session(self, session_id: str) -> SessionRecord:
        """The session, running or ended within the retention window."""
        validate_session_id(session_id)
        record = await self._registry.get(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        return record.snapshot()

    async def list_sessions(
        self,
        query: SessionQuery,
        after: ListPosition | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        max_examined: int = MAX_EXAMINED,
    ) -> SessionPage:
        """A page of sessions, running or ended within the retention window.

        In a cluster, the whole cluster's. ``limit`` is 1 to ``MAX_PAGE_SIZE``;
        the page examines at most ``max_examined`` sessions (``listing``).
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE_SIZE}, got {limit}")
        page = await self._registry.list(query, after, limit, max_examined)
        page.records = [record.snapshot() for record in page.records]
        return page

    async def get_metrics(self, session_id: str) -> tuple[SessionRecord, dict[str, float]]:
        """The session and its metrics snapshot (final metrics once ended)."""
        record = await self.get_session(session_id)
        live = self._live.get(session_id)
        if live is not None:
            return record, live.current_metrics()
        if not record.ended and self._remote is not None:
            return record, await self._remote.metrics(record)  # it runs on another node
        return record, dict(record.final_metrics or {})

    async def close_session(self, session_id: str) -> SessionRecord:
        """End a session by request and answer its final record.

        Closing an ended session answers it as it ended.
        """
        validate_session_id(session_id)
        live = self._live.get(session_id)
        if live is None:
            record = await self.get_session(session_id)
            if not record.ended and self._remote is not None:
                return await self._remote.close(record)  # it runs on another node
            return record
        if live.started is not None and not live.started.done():
            # Still being created: let Start finish (or fail) first.
            try:
                await self._await_start(live.started)
            except Exception:
                raise SessionNotFound(session_id) from None
        if self._live.get(session_id) is not live:
            # It ended (and was resolved) while its Start was awaited.
            return await self.get_session(session_id)
        live.end(EndReason.CLOSED_BY_REQUEST)
        return await asyncio.shield(live.ended_future())

    def agent_modules(self) -> tuple[str, str]:
        """The modules defining ``create_agent`` and ``join_call`` (the agent's loggers)."""
        return (
            agent_contract.module_of(self._create_agent),
            agent_contract.module_of(self._join_call),
        )

    def agent_of(self, session_id: str) -> Any:
        """The agent ``create_agent`` made for a running session; None otherwise."""
        live = self._live.get(session_id)
        return None if live is None else live.agent

    def stats(self) -> LauncherStats:
        """Operator figures: in flight, capacity, counts, mean duration."""
        return self._counters.snapshot(
            in_flight=len(self._live),
            capacity=self.limits.max_concurrent_sessions,
            draining=self._draining,
            abandoned=len(self._abandoned),
        )

    @property
    def starts_in_progress(self) -> int:
        """Starts admitted whose ``create_agent`` (and adapter preparation) runs now."""
        return self._starting

    @property
    def abandoned_tasks(self) -> int:
        """Agent tasks (join_call or create_agent) that ignored cancellation and still run."""
        return len(self._abandoned)
