"""Operator metrics in Prometheus format, via prometheus_client.

Fed by the launcher's hooks (no polling) and read at scrape time, in a
registry of its own so that several launchers (tests, embedded servers) never
collide in the global one. The registry also holds prometheus_client's
process (``process_*``), platform (``python_info``) and GC
(``python_gc_*``: counts; agentplane's ``agentplane_gc_pause_seconds`` times
the pauses) collectors. docs/monitoring.md lists every series.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from agentplane.core import AgentLauncher, SessionRecord

from .gc_policy import GcPauses
from .loop_monitor import LoopMonitor

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Agent start latency is dominated by create_agent: from milliseconds (warm
# pools) to tens of seconds (model loading).
START_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A collection stops the event loop: young ones take microseconds, a full one
# over a large heap tens of milliseconds (see gc_tuning.py).
GC_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# How late the loop ran a timer: ~0 when idle, milliseconds under load,
# seconds when an agent blocks it (see loop_monitor.py).
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _StartFailures(Collector):
    """``agentplane_session_start_failures_total``, read from the launcher's counters."""

    def __init__(self, launcher: AgentLauncher) -> None:
        self._launcher = launcher

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "agentplane_session_start_failures",
            "Admitted Starts whose agent never ran: create_agent raised or timed out "
            "(AGENT_START_FAILED), the caller went away, or a drain began.",
            value=self._launcher.stats().failed_starts,
        )


class OperatorMetrics:
    """Prometheus metrics of one launcher; a ``LauncherHooks`` implementation.

    Example::

        metrics = OperatorMetrics(launcher)
        body = metrics.exposition()     # text format, for GET /metrics
    """

    def __init__(self, launcher: AgentLauncher) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.active = Gauge(
            "agentplane_active_sessions",
            "Sessions running on this node.",
            registry=self.registry,
        )
        self.active.set_function(lambda: launcher.stats().in_flight)
        self.accepting = Gauge(
            "agentplane_accepting_sessions",
            "1 while this node accepts new sessions (ready, not draining, below capacity).",
            registry=self.registry,
        )
        self.accepting.set_function(lambda: 1.0 if launcher.accepting else 0.0)
        self.abandoned = Gauge(
            "agentplane_abandoned_agent_tasks",
            "Agent tasks (join_call, create_agent) that ignored cancellation and still run; "
            "each still holds a session slot.",
            registry=self.registry,
        )
        self.abandoned.set_function(lambda: launcher.abandoned_tasks)
        self.starting = Gauge(
            "agentplane_sessions_starting",
            "Starts whose create_agent runs now (admitted, agent not yet running; also "
            "counted in agentplane_active_sessions). There is no admission queue.",
            registry=self.registry,
        )
        self.starting.set_function(lambda: launcher.starts_in_progress)
        self.draining = Gauge(
            "agentplane_draining",
            "1 once this node began draining (SIGTERM): it admits nothing more.",
            registry=self.registry,
        )
        self.draining.set_function(lambda: 1.0 if launcher.draining else 0.0)
        self.admission_held = Gauge(
            "agentplane_admission_held",
            "1 while admission is held from outside the launcher (a cluster node that "
            "cannot reach Redis admits nothing).",
            registry=self.registry,
        )
        self.admission_held.set_function(lambda: 0.0 if launcher.admission_held is None else 1.0)
        self.registry.register(_StartFailures(launcher))
        self.started = Counter(
            "agentplane_sessions_started",
            "Sessions started.",
            registry=self.registry,
        )
        self.ended = Counter(
            "agentplane_sessions_ended",
            "Sessions ended, by end reason.",
            ["reason"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "agentplane_admission_rejections",
            "Starts refused by a limit or by draining, by reason.",
            ["reason"],
            registry=self.registry,
        )
        # The labelled children, kept once made: .labels() per call is slow.
        # Made on first use, as .labels() would: a reason shows from then on.
        self._ended_by_reason: dict[str, Counter] = {}
        self._rejected_by_reason: dict[str, Counter] = {}
        self.start_seconds = Histogram(
            "agentplane_session_start_seconds",
            "Time from admission to the agent running (create_agent included).",
            buckets=START_BUCKETS,
            registry=self.registry,
        )
        self.gc_pause_seconds = Histogram(
            "agentplane_gc_pause_seconds",
            "Time the event loop stood still in CPython's garbage collector, by generation.",
            ["generation"],
            buckets=GC_BUCKETS,
            registry=self.registry,
        )
        # One child per generation, bound once: this runs on every collection.
        by_generation = [self.gc_pause_seconds.labels(generation=str(g)) for g in range(3)]
        self.gc_pauses = GcPauses(
            lambda generation, seconds: by_generation[generation].observe(seconds)
        )
        self.loop_lag_seconds = Histogram(
            "agentplane_event_loop_lag_seconds",
            "How late the event loop ran a timer due every 0.25 s: the delay every "
            "RPC and session on this node shares.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.loop_blocked = Counter(
            "agentplane_event_loop_blocked",
            "Times one callback or task held the event loop for a second or more "
            "(each also logged with the task and line).",
            registry=self.registry,
        )
        # The process and the interpreter: process_cpu_seconds_total,
        # process_resident_memory_bytes, process_open_fds, process_max_fds, ...
        # (Linux), python_info, python_gc_collections_total{generation}, ...
        # Each reads /proc or gc.get_stats() at scrape time only.
        # (GCCollector registers nothing off CPython.)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        launcher.add_hooks(self)

    def loop_monitor(self) -> LoopMonitor:
        """A monitor that feeds the lag histogram and the blocked counter."""
        return LoopMonitor(
            self.loop_lag_seconds.observe, on_blocked=lambda _s, _who: self.loop_blocked.inc()
        )

    def session_started(self, record: SessionRecord, start_seconds: float) -> None:
        self.started.inc()
        self.start_seconds.observe(start_seconds)

    def session_ended(self, record: SessionRecord) -> None:
        reason = record.end_reason.name if record.end_reason is not None else "UNKNOWN"
        child = self._ended_by_reason.get(reason)
        if child is None:
            child = self._ended_by_reason[reason] = self.ended.labels(reason=reason)
        child.inc()

    def admission_rejected(self, reason: str) -> None:
        child = self._rejected_by_reason.get(reason)
        if child is None:
            child = self._rejected_by_reason[reason] = self.rejected.labels(reason=reason)
        child.inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)
