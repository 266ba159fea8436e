"""``AgentLauncher.configure``: settings changed before the launcher starts, checked as the
constructor checks them, refused once it started (issue 15: configuration without code)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agentplane.core import AdmissionRejected, LauncherSettings, SessionNotFound, SessionState
from tests.support import FakeAgents, VirtualClockLoop

from .conftest import MakeLauncher


async def test_configured_limits_are_the_ones_admission_enforces(
    make_launcher: MakeLauncher,
) -> None:
    launcher = await make_launcher(max_concurrent_sessions=5, max_sessions_per_call=5, start=False)
    settings = launcher.configure(max_concurrent_sessions=2, max_sessions_per_call=1)
    assert settings is launcher.settings
    assert (settings.max_concurrent_sessions, settings.max_sessions_per_call) == (2, 1)
    await launcher.start()

    await launcher.start_session("a")
    with pytest.raises(AdmissionRejected) as per_call:
        await launcher.start_session("a")
    assert per_call.value.reason == "MAX_SESSIONS_PER_CALL"
    await launcher.start_session("b")
    with pytest.raises(AdmissionRejected) as total:
        await launcher.start_session("c")
    assert total.value.reason == "MAX_CONCURRENT_SESSIONS"
    assert launcher.stats().capacity == 2


async def test_a_limit_configured_to_none_is_off(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher(max_concurrent_sessions=1, start=False)
    launcher.configure(max_concurrent_sessions=None)
    await launcher.start()
    for index in range(3):
        await launcher.start_session(f"call-{index}")


async def test_configured_retention_and_durations_reach_the_sessions(
    make_launcher: MakeLauncher, factory: FakeAgents, clock: VirtualClockLoop
) -> None:
    launcher = await make_launcher(session_retention_seconds=300, start=False)
    launcher.configure(
        session_retention_seconds=0.5,
        max_session_duration_seconds=2.0,
        drain_timeout=7.0,
        create_agent_timeout=3.0,
        stop_timeout=0.2,
    )
    assert launcher.retention_seconds == 0.5
    assert launcher.drain_timeout == 7.0
    assert launcher.create_agent_timeout == 3.0
    await launcher.start()
    record = await launcher.start_session("call")
    await clock.advance(2.01)  # the configured max duration, not "none"
    ended = await launcher.get_session(record.session_id)
    assert ended.state is SessionState.ENDED
    assert ended.end_reason is not None and ended.end_reason.name == "MAX_DURATION"
    await clock.advance(0.6)  # the configured retention, not 300 s
    with pytest.raises(SessionNotFound):
        await launcher.get_session(record.session_id)


@pytest.mark.parametrize(
    ("changes", "error", "text"),
    [
        ({"max_concurrent_sesions": 3}, TypeError, "unknown launcher setting(s): max_concurrent_sesions"),
        ({"max_concurrent_sessions": 0}, ValueError, "max_concurrent_sessions must be at least 1"),
        ({"max_sessions_per_node": -2}, ValueError, "max_sessions_per_node must be at least 1"),
        ({"permits_per_minute": 2.5}, TypeError, "permits_per_minute must be a whole number"),
        ({"drain_timeout": -1}, ValueError, "drain_timeout must be >= 0"),
        ({"create_agent_timeout": 0}, ValueError, "create_agent_timeout must be > 0"),
        ({"stop_timeout": None}, TypeError, "stop_timeout must be a number"),
        ({"agent_idle_timeout": "60"}, TypeError, "agent_idle_timeout must be a number of seconds"),
        ({"metrics_event_interval": True}, TypeError, "metrics_event_interval must be a number"),
        ({"session_retention_seconds": float("nan")}, ValueError, "must be a number, got nan"),
        ({"max_session_duration_seconds": -5}, ValueError, "must be >= 0 or None"),
    ],
)  # fmt: skip
async def test_bad_settings_are_refused_and_change_nothing(
    make_launcher: MakeLauncher, changes: dict[str, Any], error: type[Exception], text: str
) -> None:
    launcher = await make_launcher(max_concurrent_sessions=4, start=False)
    before = launcher.settings
    with pytest.raises(error) as raised:
        launcher.configure(**changes)
    assert text in str(raised.value)
    assert launcher.settings == before
    assert launcher.limits.max_concurrent_sessions == 4


async def test_the_constructor_checks_what_configure_checks(factory: FakeAgents) -> None:
    from agentplane.core import AgentLauncher
    from tests.support import join_call

    with pytest.raises(TypeError, match="max_concurrent_sessions must be a whole number"):
        AgentLauncher(factory, join_call, max_concurrent_sessions="10")  # type: ignore[arg-type]
    launcher = AgentLauncher(factory, join_call, max_concurrent_sessions=10, drain_timeout=5)
    assert launcher.settings == dataclasses.replace(
        LauncherSettings(), max_concurrent_sessions=10, drain_timeout=5
    )


async def test_a_started_launcher_refuses_to_be_configured(make_launcher: MakeLauncher) -> None:
    launcher = await make_launcher(max_concurrent_sessions=3)
    with pytest.raises(RuntimeError, match="before it starts"):
        launcher.configure(max_concurrent_sessions=10)
    assert launcher.settings.max_concurrent_sessions == 3
