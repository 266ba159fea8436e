"""The launcher's tunable settings: limits, timeouts, retention, in one validated value.

``AgentLauncher(...)`` builds a ``LauncherSettings`` from its arguments, and
``AgentLauncher.configure(**changes)`` replaces some of them before the
launcher starts, through the same checks: so an operator's configuration
(``agentplane serve --max-concurrent-sessions 20``, ``AGENTPLANE_DRAIN_TIMEOUT``)
reaches a launcher the user's code built, and a bad value is refused with the
setting's name whichever way it came.

Example::

    launcher.configure(max_concurrent_sessions=20, drain_timeout=60.0)
    launcher.settings.max_concurrent_sessions  # 20
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypedDict

from .registry import Limits

# The retry hint of a Start refused by a session limit: a slot frees when a
# session ends, which nobody can foresee.
DEFAULT_LIMIT_RETRY_AFTER = 5.0

# Fields that hold a whole number (the others are seconds: int or float).
_INTEGERS = frozenset(
    {
        "max_concurrent_sessions",
        "max_sessions_per_call",
        "max_sessions_per_node",
        "permits_per_minute",
        "max_retained_sessions",
    }
)
# None switches these off.
_NULLABLE = frozenset(
    {
        "agent_idle_timeout",
        "max_concurrent_sessions",
        "max_sessions_per_call",
        "max_sessions_per_node",
        "permits_per_minute",
        "max_session_duration_seconds",
        "limit_retry_after",
    }
)
_POSITIVE = ("create_agent_timeout", "stop_timeout", "adapter_startup_timeout")
_NOT_NEGATIVE = (
    "drain_timeout",
    "session_retention_seconds",
    "metrics_event_interval",
    "max_retained_sessions",
)


@dataclass(frozen=True, slots=True)
class LauncherSettings:
    """What ``AgentLauncher`` takes besides the agent's functions, its registry and hooks.

    Seconds are int or float; ``max_*`` and ``permits_per_minute`` whole
    numbers (at least 1, or None for no limit); ``agent_idle_timeout`` and
    ``max_session_duration_seconds`` 0 or None for none.
    """

    agent_idle_timeout: float | None = 60.0
    max_concurrent_sessions: int | None = None
    max_sessions_per_call: int | None = None
    max_session_duration_seconds: float | None = None
    permits_per_minute: int | None = None
    max_sessions_per_node: int | None = None
    drain_timeout: float = 30.0
    create_agent_timeout: float = 30.0
    stop_timeout: float = 10.0
    adapter_startup_timeout: float = 300.0
    session_retention_seconds: float = 300.0
    max_retained_sessions: int = 10_000
    metrics_event_interval: float = 1.0
    # The retry hint of a Start refused by a slot limit (RetryInfo, Retry-After); None: none.
    limit_retry_after: float | None = DEFAULT_LIMIT_RETRY_AFTER

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check_type(field.name, getattr(self, field.name))
        for name in ("max_session_duration_seconds", "agent_idle_timeout"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value}")
        for name in _POSITIVE:
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name in _NOT_NEGATIVE:
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        retry = self.limit_retry_after
        if retry is not None and not retry > 0:
            raise ValueError(f"limit_retry_after must be > 0 or None, got {retry}")
        self.limits()  # at least 1 or None

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(field.name for field in dataclasses.fields(cls))

    def limits(self) -> Limits:
        """The admission limits (in a cluster, all but ``max_sessions_per_node`` are the cluster's)."""
        return Limits(
            self.max_concurrent_sessions,
            self.max_sessions_per_call,
            self.permits_per_minute,
            self.max_sessions_per_node,
        )

    def replace(self, changes: dict[str, Any]) -> LauncherSettings:
        """These settings with ``changes``; TypeError naming an unknown setting."""
        unknown = sorted(set(changes) - self.names())
        if unknown:
            raise TypeError(
                f"unknown launcher setting(s): {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.names()))}"
            )
        return dataclasses.replace(self, **changes)


class SettingChanges(TypedDict, total=False):
    """``AgentLauncher.configure``'s keywords: any of ``LauncherSettings``' fields."""

    agent_idle_timeout: float | None
    max_concurrent_sessions: int | None
    max_sessions_per_call: int | None
    max_session_duration_seconds: float | None
    permits_per_minute: int | None
    max_sessions_per_node: int | None
    drain_timeout: float
    create_agent_timeout: float
    stop_timeout: float
    adapter_startup_timeout: float
    session_retention_seconds: float
    max_retained_sessions: int
    metrics_event_interval: float
    limit_retry_after: float | None


def _check_type(name: str, value: object) -> None:
    if value is None:
        if name not in _NULLABLE:
            raise TypeError(f"{name} must be a number, got None")
        return
    kinds: tuple[type, ...] = (int,) if name in _INTEGERS else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "a whole number" if name in _INTEGERS else "a number of seconds"
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{name} must be a number, got nan")
