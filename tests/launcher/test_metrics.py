"""Session metrics: aggregation keys and values, validation, window, agent collectors."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from agentplane.core import (
    EndReason,
    SessionContext,
    SessionMetrics,
    current_session,
)
from agentplane.core.metrics import WINDOW
from tests.support import FakeAgent, FakeAgents, joined, settle, wait_ended

from .conftest import MakeLauncher

SUFFIXES = ("avg", "count", "p50", "p95", "p99", "max")


def test_distribution_keys_and_values_on_1_to_100() -> None:
    metrics = SessionMetrics()
    assert not metrics
    for value in range(100, 0, -1):  # order does not matter
        metrics.observe("llm_latency_ms", value)
    snapshot = metrics.snapshot()
    assert metrics
    assert set(snapshot) == {f"llm_latency_ms__{s}" for s in SUFFIXES}
    assert snapshot["llm_latency_ms__avg"] == 50.5
    assert snapshot["llm_latency_ms__count"] == 100.0
    assert snapshot["llm_latency_ms__p50"] == 50.0
    assert snapshot["llm_latency_ms__p95"] == 95.0
    assert snapshot["llm_latency_ms__p99"] == 99.0
    assert snapshot["llm_latency_ms__max"] == 100.0
    assert all(isinstance(v, float) for v in snapshot.values())


def test_single_observation() -> None:
    metrics = SessionMetrics()
    metrics.observe("ttfb_ms", 245.5)
    snapshot = metrics.snapshot()
    assert {snapshot[f"ttfb_ms__{s}"] for s in SUFFIXES if s != "count"} == {245.5}
    assert snapshot["ttfb_ms__count"] == 1.0


def test_negative_observations() -> None:
    metrics = SessionMetrics()
    for value in (-5.0, -1.0, -3.0):
        metrics.observe("drift_ms", value)
    snapshot = metrics.snapshot()
    assert snapshot["drift_ms__max"] == -1.0
    assert snapshot["drift_ms__avg"] == -3.0


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 20, 60, 99, 101, 333, 512])
def test_percentiles_are_nearest_rank(n: int) -> None:
    metrics = SessionMetrics()
    for value in range(1, n + 1):
        metrics.observe("x", value)
    snapshot = metrics.snapshot()
    for q, key in ((50, "p50"), (95, "p95"), (99, "p99")):
        rank = max(1, -(-q * n // 100))  # exact ceil(q/100 * n)
        assert snapshot[f"x__{key}"] == float(rank), (n, key)


def test_counters() -> None:
    metrics = SessionMetrics()
    metrics.add("llm_input_tokens", 1500)
    metrics.add("llm_input_tokens", 500.5)
    metrics.add("tool_calls")
    metrics.add("tool_calls")
    assert metrics.snapshot() == {
        "llm_input_tokens__total": 2000.5,
        "tool_calls__total": 2.0,
    }


def test_window_keeps_percentiles_over_recent_observations() -> None:
    metrics = SessionMetrics()
    for value in range(1, 1001):
        metrics.observe("x", value)
    snapshot = metrics.snapshot()
    # avg, count and max cover everything...
    assert snapshot["x__count"] == 1000.0
    assert snapshot["x__avg"] == 500.5
    assert snapshot["x__max"] == 1000.0
    # ...percentiles the last WINDOW values (489..1000).
    assert WINDOW == 512
    base = 1000 - WINDOW
    assert snapshot["x__p50"] == base + 256
    assert snapshot["x__p95"] == base + math.ceil(0.95 * WINDOW)
    assert snapshot["x__p99"] == base + math.ceil(0.99 * WINDOW)


def test_window_forgets_old_outliers_but_max_does_not() -> None:
    metrics = SessionMetrics()
    for _ in range(WINDOW):
        metrics.observe("x", 1_000_000.0)
    for _ in range(WINDOW):
        metrics.observe("x", 1.0)
    snapshot = metrics.snapshot()
    assert snapshot["x__p99"] == 1.0
    assert snapshot["x__max"] == 1_000_000.0
    assert snapshot["x__count"] == 2.0 * WINDOW
    # Ring order: the next WINDOW - 1 values replace all but one of the ones.
    for _ in range(WINDOW - 1):
        metrics.observe("x", 5.0)
    snapshot = metrics.snapshot()
    assert snapshot["x__p50"] == 5.0
    assert snapshot["x__p99"] == 5.0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(value: float) -> None:
    metrics = SessionMetrics()
    with pytest.raises(ValueError, match="finite"):
        metrics.observe("x", value)
    with pytest.raises(ValueError, match="finite"):
        metrics.add("x", value)
    assert not metrics
    assert metrics.snapshot() == {}


@pytest.mark.parametrize("name", ["", "a__b", "bad-name", "has space", "x.y", "a/b", "__"])
def test_bad_names_are_refused(name: str) -> None:
    metrics = SessionMetrics()
    with pytest.raises(ValueError, match="metric name"):
        metrics.observe(name, 1.0)
    with pytest.raises(ValueError, match="metric name"):
        metrics.add(name, 1.0)
    assert metrics.snapshot() == {}


def test_merge_external_keeps_only_finite_numbers() -> None:
    metrics = SessionMetrics()
    metrics.merge_external(
        {
            "stt_latency_ms__avg": 12,
            "tts_chars__total": 3.5,
            "flag": True,
            "text": "x",
            "bad": math.nan,
        }
    )
    assert metrics.snapshot() == {"stt_latency_ms__avg": 12.0, "tts_chars__total": 3.5}
    metrics.merge_external({"stt_latency_ms__avg": 14.0})
    assert metrics.snapshot()["stt_latency_ms__avg"] == 14.0


async def test_metrics_through_the_session_context(
    make_launcher: MakeLauncher, factory: FakeAgents
) -> None:
    launcher = await make_launcher()
    record = await launcher.start_session("call")
    agent = factory.last
    session = await joined(agent)
    # join_call got the context both as its `session` kwarg and via current_session().
    assert agent.current is session
    assert session.session_id == record.session_id
    assert session.active

    for value in range(1, 101):
        session.observe("llm_latency_ms", value)
    session.add("llm_output_tokens", 100)
    session.add("llm_output_tokens", 23)

    read, metrics = await launcher.get_metrics(record.session_id)
    assert read.session_id == record.session_id
    assert metrics == {
        "llm_latency_ms__avg": 50.5,
        "llm_latency_ms__count": 100.0,
        "llm_latency_ms__p50": 50.0,
        "llm_latency_ms__p95": 95.0,
        "llm_latency_ms__p99": 99.0,
        "llm_latency_ms__max": 100.0,
        "llm_output_tokens__total": 123.0,
    }

    with pytest.raises(ValueError):
        session.observe("llm_latency_ms", math.nan)
    with pytest.raises(ValueError):
        session.add("bad name", 1)
    assert (await launcher.get_metrics(record.session_id))[1] == metrics

    closed = await launcher.close_session(record.session_id)
    assert closed.final_metrics == metrics
    # Reports after the end are ignored, not errors.
    assert not session.active
    session.observe("llm_latency_ms", 1000)
    session.add("llm_output_tokens", 1)
    session.emit("late")
    assert (await launcher.get_metrics(record.session_id))[1] == metrics


async def test_current_session_inside_join_call_without_session_kwarg(
    make_launcher: MakeLauncher,
) -> None:
    seen: list[SessionContext] = []

    async def join(agent: FakeAgent, call_type: str, call_id: str) -> None:
        # No `session` parameter: the launcher must not pass one.
        session = current_session()
        seen.append(session)
        await helper_deep_inside()
        await agent.release.wait()

    async def helper_deep_inside() -> None:
        current_session().observe("turn_ms", 7.0)
        current_session().add("turns")

    agent = FakeAgent()
    launcher = await make_launcher(lambda **_: agent, join)
    record = await launcher.start_session("call")
    await settle()
    assert len(seen) == 1
    assert seen[0].session_id == record.session_id
    _, metrics = await launcher.get_metrics(record.session_id)
    assert metrics["turn_ms__avg"] == 7.0
    assert metrics["turns__total"] == 1.0
    agent.release.set()
    assert (await wait_ended(launcher, record.session_id)).end_reason is EndReason.COMPLETED


async def test_current_session_is_per_session(make_launcher: MakeLauncher) -> None:
    async def join(agent: FakeAgent, call_type: str, call_id: str, **kwargs: Any) -> None:
        for i in range(5):
            current_session().add("ticks", 1)
            current_session().observe("call_index", float(call_id.split("-")[1]))
            await asyncio.sleep(0)
            del i
        await agent.release.wait()

    launcher = await make_launcher(create_agent=FakeAgent, join=join)
    records = [await launcher.start_session(f"call-{i}") for i in range(3)]
    await settle(20)
    for i, record in enumerate(records):
        _, metrics = await launcher.get_metrics(record.session_id)
        assert metrics["ticks__total"] == 5.0
        assert metrics["call_index__max"] == float(i)
        assert metrics["call_index__avg"] == float(i)


def test_current_session_outside_a_session() -> None:
    with pytest.raises(LookupError):
        current_session()


class CollectorAgent(FakeAgent):
    """An agent with its own metrics collector (``agent.metrics.to_dict()``)."""

    class Collector:
        def __init__(self) -> None:
            self.values: dict[str, Any] = {}

        def to_dict(self) -> dict[str, Any]:
            return dict(self.values)

    def __init__(self, **metadata: Any) -> None:
        super().__init__(**metadata)
        self.metrics = self.Collector()


async def test_agent_collector_figures_are_merged(make_launcher: MakeLauncher) -> None:
    factory = FakeAgents(CollectorAgent)
    launcher = await make_launcher(factory)
    record = await launcher.start_session("call")
    agent = factory.last
    assert isinstance(agent, CollectorAgent)
    session = await joined(agent)
    session.add("llm_output_tokens", 5)
    agent.metrics.values = {"stt_latency_ms__avg": 120.0, "note": "text", "bad": math.inf}

    _, metrics = await launcher.get_metrics(record.session_id)
    assert metrics == {"stt_latency_ms__avg": 120.0, "llm_output_tokens__total": 5.0}

    agent.metrics.values = {"stt_latency_ms__avg": 130.0, "tts_latency_ms__p95": 80.0}
    closed = await launcher.close_session(record.session_id)
    assert closed.final_metrics == {
        "stt_latency_ms__avg": 130.0,
        "tts_latency_ms__p95": 80.0,
        "llm_output_tokens__total": 5.0,
    }
