"""The freeze/thaw collection policy (server/gc_tuning.py), with the real collector."""

from __future__ import annotations

import contextlib
import gc
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from agentplane.core import SessionRecord
from agentplane.ops.gc_policy import GcPauses, HeldHeapGc
from agentplane.server import ServeOptions
from tests.support import FakeAgents, Served, serving, wait_until


class Node:
    """A container that can take part in a reference cycle, and be weakly referenced."""

    def __init__(self) -> None:
        self.other: Any = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


def frozen(obj: object) -> bool:
    # gc.get_objects() lists the collector's generations, never the permanent one.
    return gc.is_tracked(obj) and not any(o is obj for o in gc.get_objects())


def record(started_at: float) -> SessionRecord:
    return SessionRecord(session_id="s", call_id="c", call_type="default", started_at=started_at)


@pytest.fixture
async def policy() -> AsyncIterator[HeldHeapGc]:
    held = HeldHeapGc(lambda: 8, thaw_min_ended=4, thaw_ended_fraction=0.25)
    held.start()
    try:
        yield held
    finally:
        await held.aclose()


@pytest.fixture(autouse=True)
def _no_frozen_leftovers() -> Iterator[None]:
    yield
    assert gc.get_freeze_count() == 0, "a test left objects frozen"


async def test_young_passes_are_smaller_while_it_runs_and_restored_after() -> None:
    before = gc.get_threshold()
    held = HeldHeapGc(lambda: 0, young_thresholds=(700, 2))
    held.start()
    try:
        assert gc.get_threshold() == (700, 2, before[2])
    finally:
        await held.aclose()
    assert gc.get_threshold() == before


async def test_start_freezes_the_heap_and_aclose_hands_it_back() -> None:
    survivor, _ = cycle()
    held = HeldHeapGc(lambda: 0)
    held.start()
    try:
        assert gc.get_freeze_count() > 0
        assert frozen(survivor)
    finally:
        await held.aclose()
    assert gc.get_freeze_count() == 0
    assert not frozen(survivor)


async def test_survivors_of_a_full_pass_are_frozen_and_skipped_by_the_next(
    policy: HeldHeapGc,
) -> None:
    alive, _ = cycle()
    assert not frozen(alive)
    before = gc.get_freeze_count()
    gc.collect()
    assert frozen(alive)
    assert gc.get_freeze_count() > before
    # A young pass freezes nothing.
    young, _ = cycle()
    gc.collect(1)
    assert not frozen(young)


async def test_garbage_that_is_not_frozen_is_collected_as_usual(policy: HeldHeapGc) -> None:
    garbage, ref = cycle()
    del garbage
    gc.collect()
    assert ref() is None


async def test_a_thaw_reclaims_cycles_that_died_while_frozen(policy: HeldHeapGc) -> None:
    obj, ref = cycle()
    gc.collect()  # obj survives this pass, so it is frozen
    del obj
    gc.collect()
    assert ref() is not None, "a frozen cycle is not collected before a thaw"
    assert policy.thaw() >= 2
    assert ref() is None
    assert policy.thaws == 1


async def test_a_thaw_is_due_once_enough_frozen_sessions_ended(policy: HeldHeapGc) -> None:
    frozen_at = time.time()
    gc.collect()
    assert not policy.thaw_due()
    # Sessions that started after the last freeze hold nothing frozen.
    for _ in range(10):
        policy.session_ended(record(started_at=time.time() + 60))
    assert not policy.thaw_due()
    # Those alive at the freeze do: max(4, 0.25 * 8 held) = 4 of them.
    for _ in range(3):
        policy.session_ended(record(started_at=frozen_at - 1))
    assert not policy.thaw_due()
    policy.session_ended(record(started_at=frozen_at - 1))
    assert policy.thaw_due()
    policy.thaw()
    assert not policy.thaw_due()


async def test_a_thaw_is_due_after_the_interval_if_anything_new_was_frozen() -> None:
    held = HeldHeapGc(lambda: 0, thaw_interval=0.05)
    held.start()
    started = time.monotonic()  # the policy's clock, read after its start() marked a thaw
    try:
        # The interval is over (a condition on the policy's own clock, not a guess).
        await wait_until(lambda: time.monotonic() - started >= 0.05)
        assert not held.thaw_due(), "nothing was frozen since the last thaw"
        keep, _ = cycle()
        gc.collect()
        assert held.thaw_due()
        del keep
    finally:
        await held.aclose()


async def test_the_watcher_thaws_on_its_own_and_stops_with_the_policy() -> None:
    held = HeldHeapGc(lambda: 0, thaw_interval=0.0, check_interval=0.01)
    held.start()
    obj, ref = cycle()
    gc.collect()
    del obj
    try:
        await wait_until(lambda: ref() is None, what="the watcher's thaw to collect the cycle")
        assert held.thaws >= 1
        watcher = held._task
        assert watcher is not None
    finally:
        await held.aclose()
    assert watcher.done()
    assert held._after_collection not in gc.callbacks


def test_gc_pauses_times_each_pass_by_generation() -> None:
    seen: list[tuple[int, float]] = []
    pauses = GcPauses(lambda generation, seconds: seen.append((generation, seconds)))
    pauses.install()
    pauses.install()  # once only
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        pauses.remove()
    gc.collect(1)
    assert [g for g, _ in seen] == [0, 2]
    assert all(seconds >= 0 for _, seconds in seen)


# ------------------------------------------------------------ in the server


@contextlib.asynccontextmanager
async def _serve(options: ServeOptions) -> AsyncIterator[Served]:
    async with serving(FakeAgents().launcher(), options) as served:
        yield served


async def test_the_server_freezes_once_ready_and_reports_gc_pauses() -> None:
    async with _serve(ServeOptions(api_token=None)) as served:
        assert gc.get_freeze_count() > 0
        gc.collect()
        async with httpx.AsyncClient(base_url=served.http_url) as http:
            body = (await http.get("/metrics")).text
        line = next(
            x for x in body.splitlines()
            if x.startswith('agentplane_gc_pause_seconds_count{generation="2"}')
        )  # fmt: skip
        assert float(line.rsplit(" ", 1)[1]) >= 1
    assert gc.get_freeze_count() == 0


async def test_gc_freeze_false_leaves_the_collector_alone() -> None:
    async with _serve(ServeOptions(api_token=None, gc_freeze=False)) as served:
        await served.launcher.start_session("c1")
        gc.collect()
        assert gc.get_freeze_count() == 0


async def test_the_watcher_settles_new_long_lived_objects_between_thaws() -> None:
    held = HeldHeapGc(lambda: 0, check_interval=0.01)
    held.start()
    try:
        alive, _ = cycle()
        await wait_until(lambda: frozen(alive), what="the periodic pass to freeze what survived it")
        assert held.thaws == 0
    finally:
        await held.aclose()
