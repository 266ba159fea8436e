"""Per-session metric aggregation under the reference agent server's keys.

Agents report two kinds of figures through their session context:

* observations (``observe("llm_latency_ms", 245.5)``): latencies and other
  distributions, reported as ``<name>__avg`` plus ``__count``, ``__p50``,
  ``__p95``, ``__p99`` and ``__max``;
* counters (``add("llm_input_tokens", 1500)``): reported as ``<name>__total``.

An agent's own collector adds its keys as they are; an adapted agent's
collector (``merge_declared``) adds every key it declares, NaN where it has
no value yet.

Percentiles are exact over the most recent ``WINDOW`` observations of each
name, so memory stays bounded however long a session runs.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping

WINDOW = 512


class _Distribution:
    __slots__ = ("_next", "_recent", "count", "maximum", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.maximum = -math.inf
        self._recent = array("d")
        self._next = 0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value > self.maximum:
            self.maximum = value
        if len(self._recent) < WINDOW:
            self._recent.append(value)
        else:
            # A ring over the last WINDOW observations.
            self._recent[self._next] = value
            self._next = (self._next + 1) % WINDOW

    def summary(self, name: str, out: dict[str, float]) -> None:
        ordered = sorted(self._recent)
        out[f"{name}__avg"] = self.total / self.count
        out[f"{name}__count"] = float(self.count)
        out[f"{name}__p50"] = _percentile(ordered, 0.50)
        out[f"{name}__p95"] = _percentile(ordered, 0.95)
        out[f"{name}__p99"] = _percentile(ordered, 0.99)
        out[f"{name}__max"] = self.maximum


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def _check_name(name: str) -> None:
    if not name or "__" in name or not name.replace("_", "a").isalnum():
        raise ValueError(
            f"metric name {name!r} must be non-empty letters, digits and single underscores"
        )


def _check_value(value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"metric value {value!r} must be a finite number")
    return number


class SessionMetrics:
    """The running aggregate of one session's metrics.

    Example::

        m = SessionMetrics()
        m.observe("llm_latency_ms", 245.5)
        m.add("llm_input_tokens", 1500)
        m.snapshot()["llm_latency_ms__avg"]   # 245.5
    """

    __slots__ = ("_distributions", "_external", "_totals")

    # The dicts are created on first use: most held sessions report nothing
    # while idle, and three empty dicts per session are ~200 bytes of them.
    def __init__(self) -> None:
        self._distributions: dict[str, _Distribution] | None = None
        self._totals: dict[str, float] | None = None
        self._external: dict[str, float] | None = None

    def observe(self, name: str, value: float) -> None:
        """Record one observation of a distribution (a latency, a size)."""
        number = _check_value(value)
        distributions = self._distributions
        if distributions is None:
            distributions = self._distributions = {}
        dist = distributions.get(name)
        if dist is None:
            _check_name(name)
            dist = distributions[name] = _Distribution()
        dist.add(number)

    def add(self, name: str, amount: float = 1.0) -> None:
        """Add to a counter (tokens, bytes, tool calls)."""
        number = _check_value(amount)
        totals = self._totals
        if totals is None:
            totals = self._totals = {}
        if name not in totals:
            _check_name(name)
            totals[name] = 0.0
        totals[name] += number

    def merge_external(self, values: Mapping[str, float]) -> None:
        """Adopt ready-made keyed figures (an agent's own metrics collector)."""
        for key, value in values.items():
            if (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                if self._external is None:
                    self._external = {}
                self._external[str(key)] = float(value)

    def merge_declared(self, values: Mapping[str, float | None]) -> None:
        """Adopt a collector's full key set (an adapted agent's, ``core.agent``).

        A key without a value yet (None, or a value that is not a finite
        number) is kept as NaN: present, and plainly not a figure. Integers
        (counters) stay integers.
        """
        external = self._external
        if external is None:
            external = self._external = {}
        for key, value in values.items():
            if (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, float) and math.isfinite(value)
            ):
                external[str(key)] = value
            else:
                external[str(key)] = math.nan

    def __bool__(self) -> bool:
        return bool(self._distributions or self._totals or self._external)

    def snapshot(self) -> dict[str, float]:
        """All figures under their reported keys."""
        out: dict[str, float] = dict(self._external) if self._external else {}
        if self._totals:
            for name, total in self._totals.items():
                out[f"{name}__total"] = total
        if self._distributions:
            for name, dist in self._distributions.items():
                dist.summary(name, out)
        return out
