"""Admission: limits, draining, readiness, input validation, how create_agent is called."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from agentplane.core import (
    AdmissionRejected,
    Draining,
    InvalidArgument,
    NotReady,
    SessionRecord,
    SessionState,
    Unavailable,
)
from agentplane.core.validation import new_session_id
from tests.support import FakeAgent, FakeAgents, VirtualClockLoop, joined, settle, wait_until

from .conftest import MakeLauncher


async def test_200_concurrent_starts_admit_exactly_the_concurrency_limit(
    make_launcher: MakeLauncher,
) -> None:
    # create_agent holds the admitted starts in flight until all the others arrived.
    gate = asyncio.Event()
    factory = FakeAgents(gate=gate)
    launcher = await make_launcher(factory, max_concurrent_sessions=50)

    starts = asyncio.gather(
        *(launcher.start_session(f"call-{i}") for i in range(200)), return_exceptions=True
    )
    await wait_until(lambda: factory.creating == 50)
    await wait_until(lambda: sum(launcher.stats().rejected_by_reason.values()) == 150)
    gate.set()
    results = await starts

    started = [r for r in results if isinstance(r, SessionRecord)]
    rejected = [r for r in results if isinstance(r, AdmissionRejected)]
    assert len(started) == 50
    assert len(rejected) == 150
    assert {r.reason for r in rejected} == {"MAX_CONCURRENT_SESSIONS"}
    # A slot frees when a session ends: a retry can succeed, after the launcher's hint.
    assert all(r.retry_after == 5.0 for r in rejected)
    assert len({r.session_id for r in started}) == 50
    assert all(r.state is SessionState.RUNNING for r in started)
    assert factory.calls == 50
    stats = launcher.stats()
    assert stats.in_flight == 50
    assert stats.started == 50
    assert stats.rejected_by_reason == {"MAX_CONCURRENT_SESSIONS": 150}

    # A freed slot admits exactly one more.
    await launcher.close_session(started[0].session_id)
    await launcher.start_session("one-more")
    with pytest.raises(AdmissionRejected) as rejected_again:
        await launcher.start_session("one-too-many")
    assert rejected_again.value.reason == "MAX_CONCURRENT_SESSIONS"


async def test_in_flight_starts_hold_their_slot(make_launcher: MakeLauncher) -> None:
    gate = asyncio.Event()
    factory = FakeAgents(gate=gate)
    launcher = await make_launcher(factory, max_concurrent_sessions=1)
    first = asyncio.create_task(launcher.start_session("a"))
    await wait_until(lambda: factory.creating == 1)  # in flight: its agent is being made
    assert launcher.stats().in_flight == 1
    with pytest.raises(AdmissionRejected):
        await launcher.start_session("b")
    gate.set()
    assert (await first).state is SessionState.RUNNING


async def test_max_sessions_per_call(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher(max_sessions_per_call=2)
    a1 = await launcher.start_session("call-a")
    await launcher.start_session("call-a")
    with pytest.raises(AdmissionRejected) as rejected:
        await launcher.start_session("call-a")
    assert rejected.value.reason == "MAX_SESSIONS_PER_CALL"
    assert "call-a" in rejected.value.message
    assert rejected.value.retry_after == 5.0  # the default limit_retry_after

    # Another call is not affected, and ending one session frees its call's slot.
    await launcher.start_session("call-b")
    await launcher.close_session(a1.session_id)
    await launcher.start_session("call-a")
    assert launcher.stats().rejected_by_reason == {"MAX_SESSIONS_PER_CALL": 1}


async def test_permits_per_minute(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher(permits_per_minute=3)
    records = [await launcher.start_session(f"call-{i}") for i in range(3)]
    with pytest.raises(AdmissionRejected) as rejected:
        await launcher.start_session("call-3")
    assert rejected.value.reason == "RATE_LIMITED"
    assert rejected.value.retry_after is not None
    assert 0 < rejected.value.retry_after <= 60

    # Permits are spent per start, not held per session: ending sessions does not refill them.
    for record in records:
        await launcher.close_session(record.session_id)
    with pytest.raises(AdmissionRejected) as again:
        await launcher.start_session("call-4")
    assert again.value.reason == "RATE_LIMITED"
    assert launcher.stats().rejected_by_reason == {"RATE_LIMITED": 2}


async def test_starts_are_refused_once_drain_began(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher(drain_timeout=5.0)
    record = await launcher.start_session("call")
    draining = asyncio.create_task(launcher.drain())
    await wait_until(lambda: launcher.draining)

    with pytest.raises(Draining) as refused:
        await launcher.start_session("another")
    assert refused.value.reason == "DRAINING"
    assert isinstance(refused.value, Unavailable)
    assert factory.calls == 1

    # The running session may still finish by itself; drain then completes early.
    factory.last.release.set()
    await asyncio.wait_for(draining, 2)
    assert (await launcher.get_session(record.session_id)).state is SessionState.ENDED
    with pytest.raises(Draining):
        await launcher.start_session("after-drain")


async def test_starts_are_refused_after_shutdown(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher()
    await launcher.shutdown()
    with pytest.raises(Draining):
        await launcher.start_session("call")


@pytest.mark.parametrize("asynchronous", [True, False])
async def test_not_ready_until_warmup_ran(
    make_launcher: MakeLauncher, factory: FakeAgents, asynchronous: bool
) -> None:
    warmups: list[str] = []

    async def async_warmup() -> None:
        await asyncio.sleep(0.01)
        warmups.append("async")

    def sync_warmup() -> None:
        warmups.append("sync")

    launcher = await make_launcher(
        start=False, warmup=async_warmup if asynchronous else sync_warmup
    )
    assert not launcher.accepting
    with pytest.raises(NotReady) as refused:
        await launcher.start_session("call")
    assert refused.value.reason == "NOT_READY"
    assert factory.calls == 0

    await launcher.start()
    assert warmups == ["async" if asynchronous else "sync"]
    assert launcher.accepting
    assert (await launcher.start_session("call")).state is SessionState.RUNNING
    await launcher.start()  # a second start does not warm up again
    assert len(warmups) == 1


async def test_slow_create_agent_does_not_block_a_fast_one(
    make_launcher: MakeLauncher, clock: VirtualClockLoop
) -> None:
    async def create_agent(delay: float = 0.0, **metadata: Any) -> FakeAgent:
        await asyncio.sleep(delay)
        return FakeAgent(delay=delay, **metadata)

    launcher = await make_launcher(create_agent)
    began = clock.time()
    slow = asyncio.create_task(launcher.start_session("slow", metadata={"delay": 0.5}))
    await settle(2)  # the slow start is inside create_agent now
    fast = asyncio.create_task(launcher.start_session("fast", metadata={"delay": 0.0}))

    await clock.settle()  # everything that can run without time passing
    assert fast.done() and not slow.done()
    assert clock.time() == began  # the fast start waited for nothing
    assert fast.result().call_id == "fast"
    await clock.advance(0.499)
    assert not slow.done()
    await clock.advance(0.002)
    assert slow.done()
    assert (await slow).call_id == "slow"


async def test_sync_create_agent(make_launcher: MakeLauncher) -> None:
    made: list[FakeAgent] = []

    def create_agent(**metadata: Any) -> FakeAgent:
        made.append(FakeAgent(**metadata))
        return made[-1]

    launcher = await make_launcher(create_agent)
    record = await launcher.start_session("call", "video", metadata={"voice": "alloy"})
    assert record.state is SessionState.RUNNING
    session = await joined(made[0])
    assert made[0].call == ("video", "call")
    assert made[0].metadata == {"voice": "alloy"}
    assert session.session_id == record.session_id


async def test_metadata_is_passed_to_create_agent_as_kwargs(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    metadata = {"voice": "alloy", "temperature": 0.3, "tools": ["search"], "nested": {"a": 1}}
    record = await launcher.start_session("call", metadata=metadata)
    assert factory.kwargs == [metadata]
    assert factory.last.metadata == metadata
    assert record.metadata == metadata
    session = await joined(factory.last)
    assert session.metadata == metadata
    assert session.call_id == "call"
    assert session.call_type == "default"


async def test_call_type_defaults_to_default(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    record = await launcher.start_session("call-1")
    assert record.call_type == "default"
    await joined(factory.last)
    assert factory.last.call == ("default", "call-1")
    assert (await launcher.start_session("call-2", "")).call_type == "default"
    assert (await launcher.start_session("call-3", "livestream")).call_type == "livestream"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"call_id": ""}, "call_id"),
        ({"call_id": "has space"}, "call_id"),
        ({"call_id": "slash/not/allowed"}, "call_id"),
        ({"call_id": "x" * 129}, "call_id"),
        ({"call_type": "bad type!"}, "call_type"),
        ({"call_type": "t" * 65}, "call_type"),
        ({"metadata": {"not-an-identifier": 1}}, "metadata.not-an-identifier"),
        ({"metadata": {"1starts_with_digit": 1}}, "metadata.1starts_with_digit"),
        ({"metadata": {"k" * 65: 1}}, "metadata." + "k" * 64),
        ({"metadata": {7: "non-string key"}}, "metadata.7"),
        ({"metadata": {(1, 2): "tuple key"}}, "metadata.(1, 2)"),
        ({"metadata": {"blob": "x" * (16 * 1024 + 1)}}, "metadata"),
        ({"idempotency_key": "has space"}, "idempotency_key"),
        ({"idempotency_key": "k" * 129}, "idempotency_key"),
    ],
)
async def test_invalid_start_arguments_name_the_field(
    make_launcher: MakeLauncher, factory: FakeAgents, kwargs: dict[str, Any], field: str
) -> None:
    launcher = await make_launcher()
    args: dict[str, Any] = {"call_id": "call", **kwargs}
    with pytest.raises(InvalidArgument) as invalid:
        await launcher.start_session(**args)
    assert [v.field for v in invalid.value.violations] == [field]
    assert field in str(invalid.value)
    assert invalid.value.violations[0].description
    assert factory.calls == 0
    assert launcher.stats().in_flight == 0
    assert launcher.stats().rejected_by_reason == {}


async def test_every_invalid_field_is_reported_at_once(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher()
    with pytest.raises(InvalidArgument) as invalid:
        await launcher.start_session("", "no spaces", metadata={"bad-key": 1})
    assert [v.field for v in invalid.value.violations] == [
        "call_id",
        "call_type",
        "metadata.bad-key",
    ]


async def test_valid_edge_values_are_accepted(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher()
    record = await launcher.start_session(
        "a" * 128,
        "t" * 64,
        metadata={"k" * 64: "x" * 1000, "_private": 1},
        idempotency_key="k" * 128,
    )
    assert record.state is SessionState.RUNNING
    assert record.call_id == "a" * 128


async def test_session_id_is_validated_before_lookup(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher()
    for call in (launcher.get_session, launcher.close_session, launcher.get_metrics):
        with pytest.raises(InvalidArgument) as invalid:
            await call("")
        assert invalid.value.violations[0].field == "session_id"
        with pytest.raises(InvalidArgument):
            await call("x" * 129)


@pytest.mark.parametrize(
    "options",
    [
        {"max_concurrent_sessions": 0},
        {"max_sessions_per_call": 0},
        {"permits_per_minute": -1},
        {"agent_idle_timeout": -1.0},
        {"stop_timeout": -0.1},
        {"max_retained_sessions": -1},
    ],
)
async def test_bad_options_are_refused(
    make_launcher: MakeLauncher, options: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        await make_launcher(start=False, **options)


async def test_limit_retry_after_is_configurable_and_can_be_off(
    make_launcher: MakeLauncher,
) -> None:
    hinted = await make_launcher(max_concurrent_sessions=1, limit_retry_after=2.5)
    await hinted.start_session("a")
    with pytest.raises(AdmissionRejected) as full:
        await hinted.start_session("b")
    assert full.value.retry_after == 2.5

    silent = await make_launcher(max_sessions_per_call=1, limit_retry_after=None)
    await silent.start_session("a")
    with pytest.raises(AdmissionRejected) as call_full:
        await silent.start_session("a")
    assert call_full.value.retry_after is None


@pytest.mark.parametrize("bad", [0, -1.0])
def test_limit_retry_after_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="limit_retry_after"):
        FakeAgents().launcher(limit_retry_after=bad)


def test_session_ids_are_random_uuids_in_canonical_form() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    for session_id in ids:
        parsed = uuid.UUID(session_id)
        assert str(parsed) == session_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
