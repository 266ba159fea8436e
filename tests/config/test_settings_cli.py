"""Every setting of ``serve`` from its flag and from its AGENTPLANE_* variable reaches the
launcher or ServeOptions; flag > env > --env-file > the code's values; bad values are one
line naming the flag and the variable (issue 15).

The command is the real ``serve_command`` around a real ``Runner``; only the serving is
left out (``run_to_exit`` records the runner instead of serving it).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from agentplane.server import AgentLauncher, RequestContext, Runner, ServeOptions, Unauthenticated
from agentplane.server import config as config_module
from agentplane.server.commands import serve_command
from agentplane.server.config import SETTINGS, Setting
from tests.support.tls import Pki

# One value per setting, as typed, and the value it must arrive as. Unlike every
# default (and every value CODE sets), so arriving is seen.
SAMPLES: dict[str, tuple[str, Any]] = {
    "host": ("127.0.0.2", "127.0.0.2"),
    "port": ("8123", 8123),
    "grpc-port": ("50123", 50123),
    "allowed-host": ("a.example,b.example", ("a.example", "b.example")),
    "demo-page": ("false", False),
    "tls-cert": ("<server_cert>", "<server_cert>"),
    "tls-key": ("<server_key>", "<server_key>"),
    "tls-client-ca": ("<ca>", "<ca>"),
    "api-token": ("tok-123", "tok-123"),
    "close-token-secret": ("a-secret-of-20-bytes", b"a-secret-of-20-bytes"),
    "cors-allow-origin": ("https://a.example, https://b.example", ("https://a.example", "https://b.example")),
    "cors-allow-credentials": ("true", True),
    "cors-allow-method": ("GET,POST", ("GET", "POST")),
    "cors-allow-header": ("x-one,x-two", ("x-one", "x-two")),
    "max-concurrent-sessions": ("17", 17),
    "max-sessions-per-call": ("none", None),
    "max-sessions-per-node": ("5", 5),
    "permits-per-minute": ("90", 90),
    "max-session-duration-seconds": ("3600", 3600.0),
    "agent-idle-timeout": ("12.5", 12.5),
    "create-agent-timeout": ("7", 7.0),
    "adapter-startup-timeout": ("45", 45.0),
    "drain-timeout": ("55", 55.0),
    "stop-timeout": ("3", 3.0),
    "session-retention-seconds": ("42", 42.0),
    "max-retained-sessions": ("77", 77),
    "limit-retry-after": ("2.5", 2.5),
    "expose-error-details": ("true", True),
    "metrics-event-interval": ("2.5", 2.5),
    "gc-freeze": ("off", False),
    "redis-url": ("redis://redis.example:6379/1", "redis://redis.example:6379/1"),
    "redis-prefix": ("other:", "other:"),
    "advertise-address": ("node7:50051", "node7:50051"),
    "cluster-heartbeat": ("0.25", 0.25),
    "http-max-connections": ("321", 321),
    "http-max-url-bytes": ("4096", 4096),
    "http-max-head-bytes": ("16384", 16384),
    "http-max-headers": ("50", 50),
    "http-head-timeout": ("4", 4.0),
    "http-body-timeout": ("6", 6.0),
    "http-keep-alive-timeout": ("9", 9.0),
    "grpc-max-message-bytes": ("1048576", 1048576),
    "grpc-max-connection-buffer-bytes": ("33554432", 33554432),
    "grpc-max-header-list-bytes": ("8192", 8192),
    "grpc-max-connections": ("99", 99),
    "grpc-handshake-timeout": ("3", 3.0),
    "grpc-idle-timeout": ("120", 120.0),
    "grpc-request-timeout": ("15", 15.0),
}  # fmt: skip

# What the user's code passed: every sample differs from it.
CODE_LAUNCHER: dict[str, Any] = {"max_concurrent_sessions": 3, "max_sessions_per_call": 2}
CODE_OPTIONS: dict[str, Any] = {"api_token": "from-code", "grpc_port": 50999, "gc_freeze": False}


async def _create_agent() -> object:
    return object()


async def _join_call(agent: object, call_type: str, call_id: str) -> None:
    return None


class Invoked:
    """The serve command of a user's file (``Runner(...).cli()``), recording the runner."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import agentplane.server.commands as commands

        self.runner = Runner(
            AgentLauncher(_create_agent, _join_call, **CODE_LAUNCHER), ServeOptions(**CODE_OPTIONS)
        )
        self.served = 0
        monkeypatch.setattr(commands, "configure_logging", lambda *_, **__: None)
        monkeypatch.setattr(commands, "set_agent_log_level", lambda *_: None)

        def run_to_exit(main: Any, *, debug: bool = False) -> int:
            main.close()  # the coroutine Runner.serve(): not served here
            self.served += 1
            return 0

        monkeypatch.setattr(commands, "run_to_exit", run_to_exit)
        self.command = serve_command(lambda _: self.runner, with_agent=False)

    def __call__(self, args: list[str], env: dict[str, str] | None = None) -> click.testing.Result:
        return CliRunner().invoke(self.command, args, env=env, catch_exceptions=False)


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # No AGENTPLANE_* of the developer's shell (or of --env-file) leaks in or out.
    saved = dict(os.environ)
    for name in config_module.environment_names():
        monkeypatch.delenv(name, raising=False)
    try:
        yield lambda: Invoked(monkeypatch)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def effective(runner: Runner, setting: Setting) -> Any:
    options = runner.serve_options
    target: Any = {
        "launcher": runner.launcher.settings,
        "serve": options,
        "http": options.http_limits,
        "grpc": options.grpc_limits,
    }[setting.target]
    value = getattr(target, setting.field)
    return tuple(value) if isinstance(value, list) else value


def sample(setting: Setting, pki: Pki) -> tuple[str, Any]:
    raw, expected = SAMPLES[setting.flag]
    if raw.startswith("<"):
        raw = expected = getattr(pki, raw.strip("<>"))
    return raw, expected


def flag_args(setting: Setting, raw: str) -> list[str]:
    if setting.is_bool:
        return [f"--{setting.flag}" if raw in ("true", "on") else f"--no-{setting.flag}"]
    if setting.multiple:
        return [arg for item in raw.split(",") for arg in (f"--{setting.flag}", item.strip())]
    return [f"--{setting.flag}", raw]


def needs(setting: Setting, pki: Pki) -> tuple[list[str], dict[str, str]]:
    """What a setting needs beside it to be accepted (its partner flags)."""
    if setting.flag in ("tls-cert", "tls-key", "tls-client-ca"):
        others = {"tls-cert": pki.server_cert, "tls-key": pki.server_key}
        return [
            a for flag, path in others.items() if flag != setting.flag for a in (f"--{flag}", path)
        ], {}
    if setting.flag == "cors-allow-credentials":
        return ["--cors-allow-origin", "https://app.example"], {}
    return [], {}


def test_every_setting_has_a_sample() -> None:
    assert {s.flag for s in SETTINGS} == set(SAMPLES)
    assert len({s.envvar for s in SETTINGS}) == len(SETTINGS)
    assert all(s.envvar.startswith("AGENTPLANE_") for s in SETTINGS)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.flag)
def test_each_setting_from_its_environment_variable(
    setting: Setting, invoke: Any, pki: Pki
) -> None:
    raw, expected = sample(setting, pki)
    run = invoke()
    extra, _ = needs(setting, pki)
    result = run(extra, env={setting.envvar: raw})
    assert result.exit_code == 0, result.output
    assert effective(run.runner, setting) == expected
    assert run.served == 1


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.flag)
def test_each_setting_from_its_flag_beats_the_variable(
    setting: Setting, invoke: Any, pki: Pki
) -> None:
    raw, expected = sample(setting, pki)
    run = invoke()
    extra, _ = needs(setting, pki)
    # The variable says something else valid (or, for a switch, the opposite): the flag wins.
    env_value = "true" if setting.is_bool and raw in ("false", "off") else "false"
    env = {setting.envvar: env_value} if setting.is_bool else {}
    result = run([*flag_args(setting, raw), *extra], env=env)
    assert result.exit_code == 0, result.output
    assert effective(run.runner, setting) == expected


def accepts(runner: Runner, token: str) -> bool:
    ctx = RequestContext(
        "/agentplane.v1.SessionService/Start", {"authorization": f"Bearer {token}"}
    )
    try:
        asyncio.run(runner.api.auth.authenticate(ctx))
    except Unauthenticated:
        return False
    return True


def test_nothing_given_keeps_the_codes_values(invoke: Any) -> None:
    run = invoke()
    result = run([])
    assert result.exit_code == 0, result.output
    launcher = run.runner.launcher.settings
    assert (launcher.max_concurrent_sessions, launcher.max_sessions_per_call) == (3, 2)
    assert launcher.drain_timeout == 30.0  # agentplane's default: nobody set it
    options = run.runner.serve_options
    assert (options.api_token, options.grpc_port, options.gc_freeze) == ("from-code", 50999, False)
    assert options.port == 8000


def test_env_beats_the_code_and_the_flag_beats_env(invoke: Any) -> None:
    run = invoke()
    env = {"AGENTPLANE_MAX_CONCURRENT_SESSIONS": "8", "AGENTPLANE_API_TOKEN": "from-env"}
    assert run([], env=env).exit_code == 0
    assert run.runner.launcher.settings.max_concurrent_sessions == 8
    assert run.runner.serve_options.api_token == "from-env"
    # The API checks the token now in force, not the one the Runner was built with.
    assert accepts(run.runner, "from-env") and not accepts(run.runner, "from-code")

    run = invoke()
    result = run(["--max-concurrent-sessions", "9", "--api-token", "from-flag"], env=env)
    assert result.exit_code == 0, result.output
    assert run.runner.launcher.settings.max_concurrent_sessions == 9
    assert accepts(run.runner, "from-flag") and not accepts(run.runner, "from-env")


def test_env_file_is_read_and_the_real_environment_beats_it(invoke: Any, tmp_path: Path) -> None:
    env_file = tmp_path / "agentplane.env"
    env_file.write_text(
        "# the operator's settings\n"
        "AGENTPLANE_MAX_CONCURRENT_SESSIONS=11\n"
        "AGENTPLANE_DRAIN_TIMEOUT=12\n"
        'AGENTPLANE_CORS_ALLOW_ORIGINS="https://a.example,https://b.example"\n'
        "MY_AGENT_API_KEY=for-the-agent\n"
    )
    run = invoke()
    result = run(
        ["--env-file", str(env_file), "--drain-timeout", "13"],
        env={"AGENTPLANE_MAX_CONCURRENT_SESSIONS": "14"},
    )
    assert result.exit_code == 0, result.output
    settings = run.runner.launcher.settings
    assert settings.max_concurrent_sessions == 14  # the environment beats the file
    assert settings.drain_timeout == 13.0  # the flag beats both
    assert tuple(run.runner.serve_options.cors_allow_origins) == (
        "https://a.example",
        "https://b.example",
    )
    assert os.environ["MY_AGENT_API_KEY"] == "for-the-agent"  # the agent's own variables too

    # The file may be named by a variable too.
    run = invoke()
    assert run([], env={"AGENTPLANE_ENV_FILE": str(env_file)}).exit_code == 0
    assert run.runner.launcher.settings.drain_timeout == 12.0


def test_none_switches_off_a_limit_the_code_set(invoke: Any) -> None:
    run = invoke()
    assert run([], env={"AGENTPLANE_MAX_CONCURRENT_SESSIONS": "none"}).exit_code == 0
    assert run.runner.launcher.settings.max_concurrent_sessions is None
    assert run.runner.launcher.limits.max_concurrent_sessions is None


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        ([], {"AGENTPLANE_MAX_CONCURRENT_SESSIONS": "lots"}, ["--max-concurrent-sessions", "AGENTPLANE_MAX_CONCURRENT_SESSIONS", "'lots' is not a whole number"]),
        ([], {"AGENTPLANE_MAX_CONCURRENT_SESSIONS": "0"}, ["--max-concurrent-sessions", "must be at least 1"]),
        (["--drain-timeout", "-1"], {}, ["--drain-timeout", "AGENTPLANE_DRAIN_TIMEOUT", "must be >= 0"]),
        ([], {"AGENTPLANE_CREATE_AGENT_TIMEOUT": "0"}, ["--create-agent-timeout", "must be > 0"]),
        ([], {"AGENTPLANE_AGENT_IDLE_TIMEOUT": "nan"}, ["--agent-idle-timeout", "not a finite number"]),
        ([], {"AGENTPLANE_PORT": "70000"}, ["--port", "AGENTPLANE_PORT", "65535"]),
        ([], {"AGENTPLANE_GC_FREEZE": "maybe"}, ["--gc-freeze", "AGENTPLANE_GC_FREEZE"]),
        ([], {"AGENTPLANE_HTTP_HEAD_TIMEOUT": "soon"}, ["--http-head-timeout", "not a number of seconds"]),
        ([], {"AGENTPLANE_GRPC_MAX_HEADER_LIST_BYTES": "100"}, ["--grpc-max-header-list-bytes", "at least 1024"]),
        ([], {"AGENTPLANE_CLOSE_TOKEN_SECRET": "short"}, ["--close-token-secret", "at least 16 bytes"]),
        ([], {"AGENTPLANE_CORS_ALLOW_ORIGINS": "https://a.example,,"}, ["--cors-allow-origin", "empty item"]),
        ([], {"AGENTPLANE_TLS_CERT": "/no/such/cert.pem"}, ["--tls-cert", "AGENTPLANE_TLS_CERT", "does not exist"]),
        # Combinations the options refuse: one line naming the flags.
        (["--cors-allow-origin", "*", "--cors-allow-credentials"], {}, ["--cors-allow-credentials", "--cors-allow-origin", "explicit"]),
        (["--grpc-max-message-bytes", "4096", "--grpc-max-connection-buffer-bytes", "1024"], {}, ["--grpc-max-connection-buffer-bytes", "--grpc-max-message-bytes"]),
    ],
)  # fmt: skip
def test_bad_values_are_one_line_naming_the_flag(
    invoke: Any, args: list[str], env: dict[str, str], words: list[str]
) -> None:
    run = invoke()
    result = run(args, env=env)
    assert result.exit_code in (1, 2)  # click's usage error, or ours
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for word in words:
        assert word in errors[0], errors[0]
    assert run.served == 0


@pytest.mark.parametrize(
    ("files", "text"),
    [
        (lambda p: ["--tls-cert", p.server_cert, "--tls-key", p.wrong_key], "does not match certificate"),
        (lambda p: ["--tls-cert", p.not_pem, "--tls-key", p.server_key], "cannot load TLS certificate"),
        (lambda p: ["--tls-cert", p.server_cert, "--tls-key", p.server_key, "--tls-client-ca", p.not_pem], "cannot load TLS client CA"),
        (lambda p: ["--tls-cert", p.server_cert], "tls_cert (--tls-cert, AGENTPLANE_TLS_CERT) and tls_key (--tls-key"),
    ],
)  # fmt: skip
def test_unusable_tls_files_are_one_line(invoke: Any, pki: Pki, files: Any, text: str) -> None:
    run = invoke()
    result = run(files(pki))
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and text in errors[0], result.output
    assert run.served == 0


def test_help_states_the_precedence_and_every_variable(invoke: Any) -> None:
    result = invoke()(["--help"])
    text = " ".join(result.output.split())
    assert "else its AGENTPLANE_* environment variable, else --env-file, else what the code" in text
    for setting in SETTINGS:
        assert setting.envvar in text.replace(" ", ""), setting.envvar


def test_cors_settings_cannot_reach_an_app_built_already(invoke: Any) -> None:
    run = invoke()
    run.runner.fast_api  # noqa: B018  (the user customized it: the app is built)
    result = run([], env={"AGENTPLANE_CORS_ALLOW_ORIGINS": "https://a.example"})
    assert result.exit_code == 1
    assert "cannot change this runner's HTTP app" in result.output


def test_the_readme_table_lists_every_setting_as_the_command_does() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {
        cells[2].strip("` "): cells
        for line in section.splitlines()
        if line.startswith("| `")
        and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 5
    }
    assert set(rows) == {s.envvar for s in SETTINGS}
    for setting in SETTINGS:
        option, flag, _, default, meaning = rows[setting.envvar]
        assert option.endswith(f".{setting.field}`")
        assert flag.startswith(f"`--{setting.flag}`")
        assert (default, meaning) == (setting.default_text(), setting.help)
