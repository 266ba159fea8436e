"""Listing sessions in the core: order, filters, keyset pages and the examined bound."""

from __future__ import annotations

import tracemalloc
import uuid

import pytest

from agentplane.core import (
    AgentLauncher,
    EndReason,
    InMemorySessionRegistry,
    Limits,
    ListPosition,
    SessionQuery,
    SessionRecord,
    SessionState,
)
from agentplane.core.listing import SessionPage

from .conftest import MakeLauncher


def record(
    started_at: float,
    *,
    call_id: str = "call-a",
    session_id: str | None = None,
    created_by: str = "",
    state: SessionState = SessionState.RUNNING,
    end_reason: EndReason | None = None,
    ended_at: float | None = None,
) -> SessionRecord:
    return SessionRecord(
        session_id=session_id or str(uuid.uuid4()),
        call_id=call_id,
        call_type="default",
        started_at=started_at,
        created_by=created_by,
        state=state,
        end_reason=end_reason,
        ended_at=ended_at,
    )


async def registry_of(records: list[SessionRecord]) -> InMemorySessionRegistry:
    registry = InMemorySessionRegistry()
    for item in records:
        assert await registry.admit(item, Limits(), item.started_at) is None
    return registry


async def walk_all(
    registry: InMemorySessionRegistry, query: SessionQuery, limit: int, max_examined: int = 5000
) -> tuple[list[str], int]:
    """Every page of ``query``; the ids in order and how many pages it took."""
    ids: list[str] = []
    after: ListPosition | None = None
    pages = 0
    while True:
        page: SessionPage = await registry.list(query, after, limit, max_examined)
        pages += 1
        assert len(page.records) <= limit
        ids += [r.session_id for r in page.records]
        if page.resume is None:
            return ids, pages
        assert pages < 10_000, "the walk does not end"
        after = page.resume


async def test_newest_first_by_default_and_ties_go_by_session_id() -> None:
    items = [record(100.0 + i, session_id=f"s{i:02}") for i in range(5)]
    items += [record(102.0, session_id="s02b"), record(102.0, session_id="s02a")]
    registry = await registry_of(items)
    newest, _ = await walk_all(registry, SessionQuery(), 3)
    assert newest == ["s04", "s03", "s02b", "s02a", "s02", "s01", "s00"]
    oldest, _ = await walk_all(registry, SessionQuery(newest_first=False), 3)
    assert oldest == list(reversed(newest))


async def test_every_filter() -> None:
    running = record(10.0, call_id="x", created_by="ann", session_id="run")
    error = record(
        20.0,
        call_id="y",
        created_by="bob",
        session_id="err",
        state=SessionState.ENDED,
        end_reason=EndReason.ERROR,
        ended_at=25.0,
    )
    idle = record(
        30.0,
        call_id="x",
        created_by="bob",
        session_id="idle",
        state=SessionState.ENDED,
        end_reason=EndReason.IDLE_TIMEOUT,
        ended_at=90.0,
    )
    registry = await registry_of([running, error, idle])

    async def ids(**filters: object) -> list[str]:
        found, _ = await walk_all(registry, SessionQuery(**filters), 10)  # type: ignore[arg-type]
        return found

    assert await ids() == ["idle", "err", "run"]
    assert await ids(call_id="x") == ["idle", "run"]
    assert await ids(call_id="nobody") == []
    assert await ids(states=frozenset({SessionState.RUNNING})) == ["run"]
    assert await ids(states=frozenset({SessionState.ENDED})) == ["idle", "err"]
    assert await ids(end_reasons=frozenset({EndReason.ERROR})) == ["err"]
    assert await ids(end_reasons=frozenset({EndReason.ERROR, EndReason.IDLE_TIMEOUT})) == [
        "idle",
        "err",
    ]
    assert await ids(created_by="bob") == ["idle", "err"]
    assert await ids(started_after=20.0) == ["idle", "err"]  # inclusive
    assert await ids(started_before=20.0) == ["run"]  # exclusive
    assert await ids(started_after=15.0, started_before=30.0, newest_first=False) == ["err"]
    # An end-time filter never matches a running session.
    assert await ids(ended_after=0.0) == ["idle", "err"]
    assert await ids(ended_after=25.0, ended_before=90.0) == ["err"]
    assert await ids(call_id="x", created_by="bob", states=frozenset({SessionState.ENDED})) == [
        "idle"
    ]


async def test_pages_cover_everything_once_while_sessions_come_and_go() -> None:
    items = [record(1000.0 + i) for i in range(100)]
    registry = await registry_of(items)
    query = SessionQuery()
    first = await registry.list(query, None, 7)
    assert [r.session_id for r in first.records] == [r.session_id for r in items[::-1][:7]]
    # Between pages: a newer session arrives, one not yet listed is forgotten,
    # and one already listed is forgotten. Neither shifts the next page.
    await registry.admit(record(5000.0), Limits(), 5000.0)
    await registry.forget(items[50].session_id)
    await registry.forget(items[99].session_id)
    seen = [r.session_id for r in first.records]
    after = first.resume
    while after is not None:
        page = await registry.list(query, after, 7)
        seen += [r.session_id for r in page.records]
        after = page.resume
    expected = [r.session_id for r in items[::-1] if r is not items[50]]
    assert seen == expected


async def test_the_last_page_says_it_is_the_last() -> None:
    registry = await registry_of([record(float(i)) for i in range(10)])
    page = await registry.list(SessionQuery(), None, 10)
    assert len(page.records) == 10 and page.resume is None
    page = await registry.list(SessionQuery(), None, 5)
    assert page.resume is not None
    page = await registry.list(SessionQuery(), page.resume, 5)
    assert len(page.records) == 5 and page.resume is None


async def test_a_page_examines_a_bounded_number_of_sessions() -> None:
    items = [record(float(i)) for i in range(1000)]
    failed = [
        record(
            float(i) + 0.5,
            state=SessionState.ENDED,
            end_reason=EndReason.ERROR,
            ended_at=float(i) + 1,
        )
        for i in (5, 500, 995)
    ]
    registry = await registry_of(items + failed)
    query = SessionQuery(end_reasons=frozenset({EndReason.ERROR}))
    page = await registry.list(query, None, 50, max_examined=100)
    # 100 examined from the newest: only the newest failure is among them.
    assert [r.session_id for r in page.records] == [failed[2].session_id]
    assert page.resume is not None
    found, pages = await walk_all(registry, query, 50, max_examined=100)
    assert found == [f.session_id for f in reversed(failed)]
    assert pages == 11  # 1003 sessions, 100 a page


async def test_a_call_is_listed_from_its_own_sessions() -> None:
    crowd = [record(float(i), call_id=f"other-{i}") for i in range(2000)]
    mine = [record(float(i) + 0.5, call_id="mine") for i in (3, 1000, 1990)]
    registry = await registry_of(crowd + mine)
    # Examining at most 3 sessions still finds the call's 3: only they are walked.
    page = await registry.list(SessionQuery(call_id="mine"), None, 10, max_examined=3)
    assert [r.session_id for r in page.records] == [m.session_id for m in reversed(mine)]
    for item in mine:
        await registry.forget(item.session_id)
    assert (await registry.list(SessionQuery(call_id="mine"), None, 10)).records == []


async def test_a_call_listed_with_one_session_then_two_then_one_then_none() -> None:
    """A call's first session is indexed by its key alone, its second by an order."""
    crowd = [record(float(i), call_id=f"other-{i}") for i in range(10)]
    first, second = record(3.5, call_id="mine"), record(7.5, call_id="mine")
    registry = await registry_of([*crowd, first])

    async def ids(query: SessionQuery, after: ListPosition | None = None) -> list[str]:
        return [r.session_id for r in (await registry.list(query, after, 10)).records]

    for newest_first in (True, False):
        query = SessionQuery(call_id="mine", newest_first=newest_first)
        assert await ids(query) == [first.session_id]
        assert await ids(query, ListPosition(first.started_at, first.session_id)) == []
    assert await ids(SessionQuery(call_id="mine", started_after=4.0)) == []
    assert await ids(SessionQuery(call_id="mine", started_before=3.0)) == []
    assert await registry.admit(second, Limits(), second.started_at) is None
    assert await ids(SessionQuery(call_id="mine")) == [second.session_id, first.session_id]
    assert await ids(SessionQuery(call_id="mine", newest_first=False)) == [
        first.session_id,
        second.session_id,
    ]
    await registry.forget(first.session_id)
    assert await ids(SessionQuery(call_id="mine")) == [second.session_id]
    await registry.forget(second.session_id)
    assert await ids(SessionQuery(call_id="mine")) == []
    # A call whose one session is forgotten is gone; its next session starts it anew.
    third = record(20.0, call_id="mine")
    assert await registry.admit(third, Limits(), third.started_at) is None
    assert await ids(SessionQuery(call_id="mine")) == [third.session_id]
    assert len(await ids(SessionQuery())) == 10  # the page: 11 held
    await registry.forget(third.session_id)
    await registry.forget(third.session_id)  # idempotent
    assert await ids(SessionQuery(call_id="mine")) == []


async def test_the_listing_indexes_cost_little_per_session_of_its_own_call() -> None:
    """Held sessions mostly have a call each (the benchmark's do): the registry's
    own allocations per admitted session, records made beforehand. An order per
    call (object, list, its own key) made this ~373 bytes; ~179 without."""
    count = 2000
    records = [record(float(i), call_id=f"call-{i}") for i in range(count)]
    registry = InMemorySessionRegistry()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for item in records:
            assert await registry.admit(item, Limits(), item.started_at) is None
        per_session = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    assert per_session < 260, f"{per_session:.0f} bytes per session"


async def test_a_time_range_starts_the_walk_at_its_edge() -> None:
    registry = await registry_of([record(float(i)) for i in range(5000)])
    # Only sessions in [100, 110) are examined, whatever the order.
    for newest_first in (True, False):
        query = SessionQuery(started_after=100.0, started_before=110.0, newest_first=newest_first)
        page = await registry.list(query, None, 50, max_examined=11)
        assert sorted(r.started_at for r in page.records) == [float(i) for i in range(100, 110)]
        assert page.resume is None


async def test_launcher_lists_snapshots_and_checks_the_limit(make_launcher: MakeLauncher) -> None:
    launcher: AgentLauncher = await make_launcher()
    started = [await launcher.start_session(f"call-{i}") for i in range(3)]
    page = await launcher.list_sessions(SessionQuery(), None, 2)
    assert [r.session_id for r in page.records] == [s.session_id for s in started[::-1][:2]]
    page.records[0].call_id = "changed"  # a snapshot: the launcher's record is untouched
    assert (await launcher.get_session(started[2].session_id)).call_id == "call-2"
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="limit"):
            await launcher.list_sessions(SessionQuery(), None, bad)
