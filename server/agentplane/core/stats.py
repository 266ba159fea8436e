"""The launcher's counters, and the ``LauncherStats`` snapshot built from them."""

from __future__ import annotations

from collections import Counter

from .models import EndReason, LauncherStats, SessionRecord


class LauncherCounters:
    """Starts, ends by reason, rejections by reason and total duration, since start-up."""

    __slots__ = ("_counts", "_duration_total", "_ended_by_reason", "_rejected_by_reason")

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._ended_by_reason: Counter[str] = Counter()
        self._rejected_by_reason: Counter[str] = Counter()
        self._duration_total = 0.0

    def started(self) -> None:
        self._counts["started"] += 1

    def failed_start(self) -> None:
        self._counts["failed_starts"] += 1

    def rejected(self, reason: str) -> None:
        self._rejected_by_reason[reason] += 1

    def ended(self, record: SessionRecord) -> None:
        assert record.end_reason is not None and record.ended_at is not None
        self._ended_by_reason[record.end_reason.name] += 1
        self._counts["failed" if record.end_reason is EndReason.ERROR else "completed"] += 1
        self._duration_total += record.ended_at - record.started_at

    def snapshot(
        self, *, in_flight: int, capacity: int | None, draining: bool, abandoned: int
    ) -> LauncherStats:
        counts = self._counts
        ended = counts["completed"] + counts["failed"]
        return LauncherStats(
            in_flight=in_flight,
            capacity=capacity,
            draining=draining,
            started=counts["started"],
            completed=counts["completed"],
            failed=counts["failed"],
            ended_by_reason=dict(self._ended_by_reason),
            rejected_by_reason=dict(self._rejected_by_reason),
            mean_duration_seconds=self._duration_total / ended if ended else None,
            failed_starts=counts["failed_starts"],
            abandoned=abandoned,
        )
