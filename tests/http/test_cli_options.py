"""The command line's options: ``serve --allowed-host`` reaches ServeOptions;
``agentplane gateway`` allows no CORS origin unless told (issue 12); every
Vision Agents flag of ``serve`` and ``run`` is taken and reaches what it means
(issue 13; the real processes: tests/server/test_cli_vision_agents.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from click.testing import CliRunner

from agentplane.server import AgentLauncher, ServeOptions
from agentplane.server.commands import run_command, serve_command


@pytest.fixture(autouse=True)
def _no_logging_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    # The commands configure the process's logging; the test process keeps its own.
    import agentplane.server.cli as cli
    import agentplane.server.commands as commands

    monkeypatch.setattr(commands, "configure_logging", lambda *_, **__: None)
    monkeypatch.setattr(commands, "set_agent_log_level", lambda *_: None)
    monkeypatch.setattr(cli, "configure_logging", lambda *_, **__: None)


async def _create_agent() -> object:
    return object()


async def _join_call(agent: object, call_type: str, call_id: str) -> None:
    return None


class _Runner:
    """Stands in for a Runner: records the options serve() would use."""

    http_built = False

    def __init__(self) -> None:
        self.serve_options = ServeOptions(api_token=None)
        self.served: list[ServeOptions] = []
        self.launcher = AgentLauncher(_create_agent, _join_call)

    async def serve(self, **_: Any) -> None:
        self.served.append(self.serve_options)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], None),
        (["--allowed-host", "agents.example", "--allowed-host", "10.0.0.5"], ("agents.example", "10.0.0.5")),
        (["--allowed-host", "*"], ("*",)),
    ],
)  # fmt: skip
def test_serve_allowed_host(args: list[str], expected: tuple[str, ...] | None) -> None:
    runner = _Runner()
    command = serve_command(lambda _: runner, with_agent=False)  # type: ignore[arg-type,return-value]
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, result.output
    assert runner.served[0].allowed_hosts == expected
    assert tuple(runner.served[0].cors_allow_origins) == ()


def test_gateway_cors_default_is_no_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    import agentplane.http.standalone as standalone
    from agentplane.server.cli import main

    seen: dict[str, Any] = {}

    async def fake_serve_gateway(upstream: str, **kwargs: Any) -> None:
        seen.update(kwargs, upstream=upstream)

    monkeypatch.setattr(standalone, "serve_gateway", fake_serve_gateway)
    result = CliRunner().invoke(main, ["gateway", "--upstream", "127.0.0.1:50051"])
    assert result.exit_code == 0, result.output
    assert tuple(seen["cors"].allow_origins) == ()
    assert seen["allowed_hosts"] is None
    result = CliRunner().invoke(
        main,
        ["gateway", "--upstream", "127.0.0.1:1", "--cors-allow-origin", "https://app.example",
         "--allowed-host", "gw.example"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert tuple(seen["cors"].allow_origins) == ("https://app.example",)
    assert seen["allowed_hosts"] == ("gw.example",)


class _Recorded:
    """What the commands handed on: logging, the loop's debug mode, run_console's arguments."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import agentplane.server.commands as commands

        self.logging: list[tuple[Any, ...]] = []
        self.debug: list[bool] = []
        self.console: list[tuple[Any, ...]] = []
        monkeypatch.setattr(
            commands,
            "configure_logging",
            lambda agents, http, *, debug=False, **_: self.logging.append((agents, http, debug)),
        )

        def run_to_exit(main: Any, *, debug: bool = False) -> int:
            self.debug.append(debug)
            return int(asyncio.run(main) or 0)

        monkeypatch.setattr(commands, "run_to_exit", run_to_exit)

    def runner(self) -> Any:
        recorded = self

        class Runner(_Runner):
            async def run_console(self, *args: Any, **kwargs: Any) -> int:
                recorded.console.append((*args, kwargs))
                return 0

        return Runner()


def test_serve_takes_every_vision_agents_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = _Recorded(monkeypatch)
    command = serve_command(lambda _: recorded.runner(), with_agent=False)
    result = CliRunner().invoke(
        command,
        ["--host", "127.0.0.1", "--port", "8000", "--agents-log-level", "debug",
         "--http-log-level", "WARNING", "--debug", "--no-splash"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert recorded.logging == [("DEBUG", "WARNING", True)]
    assert recorded.debug == [True]
    plain = CliRunner().invoke(command, [])
    assert plain.exit_code == 0, plain.output
    assert recorded.logging[-1] == ("INFO", "INFO", False)
    assert recorded.debug[-1] is False


def test_run_takes_every_vision_agents_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    recorded = _Recorded(monkeypatch)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    command = run_command(lambda _: recorded.runner(), with_agent=False)
    result = CliRunner().invoke(
        command,
        ["--call-type", "default", "--call-id", "c1", "--debug", "--log-level", "ERROR",
         "--no-demo", "--video-track-override", str(clip), "--no-splash"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert recorded.logging == [("ERROR", "WARNING", True)]
    assert recorded.debug == [True]
    assert recorded.console == [
        ("default", "c1", {"video_track_override": str(clip.resolve()), "open_demo": False})
    ]
    # agentplane's own spelling of the level still works; the demo UI opens by default.
    plain = CliRunner().invoke(command, ["--call-id", "c2", "--agents-log-level", "WARNING"])
    assert plain.exit_code == 0, plain.output
    assert recorded.logging[-1] == ("WARNING", "WARNING", False)
    assert recorded.console[-1] == (
        "default",
        "c2",
        {"video_track_override": None, "open_demo": True},
    )
    # As in Vision Agents, the override must be an existing file.
    missing = CliRunner().invoke(command, ["--video-track-override", str(tmp_path / "nope")])
    assert missing.exit_code == 2
