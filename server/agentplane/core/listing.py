"""Listing sessions: the query, the page position, and the bounded scan.

A list is a walk along the sessions in admission order (``started_at``, then
``session_id``: a total order, so a position is exact however many sessions
share a start time). Pages are keyset pages: a page ends at a
``ListPosition`` and the next walk resumes strictly after it, so sessions
admitted or forgotten between pages never shift a page nor repeat one.

Every page examines at most ``max_examined`` sessions, whatever the filters:
a selective filter over many held sessions answers a short (even empty) page
with a position to resume from, instead of walking them all in one call.
Registries that index by call start from the call's own sessions.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from .models import EndReason, SessionRecord, SessionState

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# Sessions one page may examine (filters apply to each): bounds a page's cost.
MAX_EXAMINED = 5000


@dataclass(frozen=True, slots=True, order=True)
class ListPosition:
    """A place in admission order: the last session a page examined."""

    started_at: float
    session_id: str


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """Which sessions to list, in which order. Empty filters match everything."""

    call_id: str = ""
    states: frozenset[SessionState] = frozenset()
    end_reasons: frozenset[EndReason] = frozenset()
    created_by: str = ""
    started_after: float | None = None  # inclusive
    started_before: float | None = None  # exclusive
    ended_after: float | None = None  # inclusive
    ended_before: float | None = None  # exclusive
    newest_first: bool = True

    def matches(self, record: SessionRecord) -> bool:
        if self.call_id and record.call_id != self.call_id:
            return False
        if self.states and record.state not in self.states:
            return False
        if self.end_reasons and record.end_reason not in self.end_reasons:
            return False
        if self.created_by and record.created_by != self.created_by:
            return False
        if self.started_after is not None and record.started_at < self.started_after:
            return False
        if self.started_before is not None and record.started_at >= self.started_before:
            return False
        if self.ended_after is not None or self.ended_before is not None:
            ended = record.ended_at
            if ended is None:
                return False
            if self.ended_after is not None and ended < self.ended_after:
                return False
            if self.ended_before is not None and ended >= self.ended_before:
                return False
        return True

    def first_key(self) -> tuple[float, str] | None:
        """Where a walk may start, from the start-time range (None: at the end)."""
        if self.newest_first:
            return None if self.started_before is None else (self.started_before, "")
        return None if self.started_after is None else (self.started_after, "")

    def past_range(self, started_at: float) -> bool:
        """Whether the walk has left the start-time range for good."""
        if self.newest_first:
            return self.started_after is not None and started_at < self.started_after
        return self.started_before is not None and started_at >= self.started_before


@dataclass(slots=True)
class SessionPage:
    """Sessions of one page, and where the next page resumes (None: the last page)."""

    records: list[SessionRecord] = field(default_factory=list)
    resume: ListPosition | None = None


class PageBuilder:
    """Builds a page from sessions offered in walk order, after the position.

    ``offer`` answers True once the page is complete: ``limit`` matches (and
    a peek found one more, so a last page says it is the last), or
    ``max_examined`` sessions examined, or the walk left the start-time range.
    A walk that runs out first leaves ``page.resume`` None: the last page.
    """

    def __init__(self, query: SessionQuery, limit: int, max_examined: int = MAX_EXAMINED) -> None:
        self.query = query
        self.limit = limit
        self.max_examined = max_examined
        self.page = SessionPage()
        self._examined = 0

    def offer(self, record: SessionRecord) -> bool:
        query, records = self.query, self.page.records
        if query.past_range(record.started_at):
            return True
        matches = query.matches(record)
        if matches and len(records) == self.limit:
            end = records[-1]  # one more exists: the next page starts after this page's last
            self.page.resume = ListPosition(end.started_at, end.session_id)
            return True
        if matches:
            records.append(record)
        self._examined += 1
        if self._examined >= self.max_examined:
            self.page.resume = ListPosition(record.started_at, record.session_id)
            return True
        return False


def collect(
    candidates: Iterable[SessionRecord],
    query: SessionQuery,
    limit: int,
    max_examined: int = MAX_EXAMINED,
) -> SessionPage:
    """The page of ``candidates`` (in walk order, after the position): ``PageBuilder``'s rules."""
    builder = PageBuilder(query, limit, max_examined)
    for record in candidates:
        if builder.offer(record):
            break
    return builder.page


# A session's place in admission order: (started_at, session_id).
SessionKey = tuple[float, str]


class AdmissionOrder:
    """Session keys ``(started_at, session_id)`` sorted, with keyset walks.

    Inserting and removing cost a binary search and a memmove; a walk costs
    a binary search plus the keys it yields. ``add_key`` keeps the tuple it
    is given, so two orders of the same session can share one.
    """

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: list[SessionKey] = []

    def add_key(self, key: SessionKey) -> None:
        bisect.insort(self._keys, key)

    def remove_key(self, key: SessionKey) -> None:
        index = bisect.bisect_left(self._keys, key)
        if index < len(self._keys) and self._keys[index] == key:
            del self._keys[index]

    def __len__(self) -> int:
        return len(self._keys)

    def walk(self, query: SessionQuery, after: ListPosition | None) -> Iterator[str]:
        """Session ids in the query's order, strictly after ``after``."""
        return walk_keys(self._keys, query, after)


def walk_keys(
    keys: Sequence[SessionKey], query: SessionQuery, after: ListPosition | None
) -> Iterator[str]:
    """The ids of sorted ``keys`` in the query's order, strictly after ``after``."""
    start = query.first_key()
    if query.newest_first:
        index = len(keys)
        if after is not None:
            index = bisect.bisect_left(keys, (after.started_at, after.session_id))
        if start is not None:
            index = min(index, bisect.bisect_left(keys, start))
        for i in range(index - 1, -1, -1):
            yield keys[i][1]
    else:
        index = 0
        if after is not None:
            index = bisect.bisect_right(keys, (after.started_at, after.session_id))
        if start is not None:
            index = max(index, bisect.bisect_left(keys, start))
        for i in range(index, len(keys)):
            yield keys[i][1]
