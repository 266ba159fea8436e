"""The command line's HTTP options (issue 12): ``serve --allowed-host`` reaches
ServeOptions; ``agentplane gateway`` allows no CORS origin unless told."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from agentplane.server import ServeOptions
from agentplane.server.commands import serve_command


@pytest.fixture(autouse=True)
def _no_logging_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    # The commands configure the process's logging; the test process keeps its own.
    import agentplane.server.cli as cli
    import agentplane.server.commands as commands

    monkeypatch.setattr(commands, "configure_logging", lambda *_: None)
    monkeypatch.setattr(cli, "configure_logging", lambda *_: None)


class _Runner:
    """Stands in for a Runner: records the options serve() would use."""

    def __init__(self) -> None:
        self.serve_options = ServeOptions(api_token=None)
        self.served: list[ServeOptions] = []

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
