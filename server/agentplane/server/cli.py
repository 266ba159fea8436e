"""The ``agentplane`` command line (and ``python my_agent.py serve|run``).

``--agent module:attribute`` names an AgentLauncher, a Runner, or a callable
returning either; without it, ``serve`` and ``run`` use the built-in DEMO
agent (no network, no API key).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import sys
import uuid
from collections.abc import Callable
from typing import Any

import click

from agentplane.core import AgentLauncher

from .runner import Runner

LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def load_runner(spec: str | None) -> Runner:
    """The Runner for ``--agent module:attribute`` (None: the demo agent)."""
    if spec is None:
        from agentplane.demo.agent import demo_launcher

        return Runner(demo_launcher())
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(
            "expected module:attribute, e.g. my_agent:launcher", param_hint="--agent"
        )
    sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="--agent"
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise click.BadParameter(
                f"{module_name!r} has no attribute {attribute!r}", param_hint="--agent"
            )
        target = getattr(target, part)
    if callable(target) and not isinstance(target, (AgentLauncher, Runner)):
        target = target()
    if isinstance(target, Runner):
        return target
    if isinstance(target, AgentLauncher):
        return Runner(target)
    raise click.BadParameter(
        f"{spec} is a {type(target).__name__}; expected an AgentLauncher or a Runner",
        param_hint="--agent",
    )


def _configure_logging(agents_level: str, http_level: str) -> None:
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, stream=sys.stderr)
    for name in ("agentplane", "agentplane.launcher", "agentplane.runner"):
        logging.getLogger(name).setLevel(agents_level.upper())
    for name in ("agentplane.gateway", "uvicorn", "uvicorn.access", "grpclib"):
        logging.getLogger(name).setLevel(http_level.upper())


def _agent_option(with_agent: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    # Hidden in a user's own file, where the agent is that file's runner.
    return click.option(
        "--agent",
        "agent_spec",
        default=None,
        hidden=not with_agent,
        help="module:attribute of your AgentLauncher or Runner (default: the demo agent).",
    )


def _serve_command(get_runner: Callable[[str | None], Runner], with_agent: bool) -> click.Command:
    # No click defaults for host and ports: a flag left out keeps the value of
    # the runner's ServeOptions (by default 127.0.0.1, 8000 and 50051), so a
    # user's own `Runner(launcher, ServeOptions(grpc_port=...)).cli()` holds.
    @click.command("serve", help="Serve sessions over gRPC (and HTTP) until SIGTERM.")
    @click.option("--host", default=None, help="Address to listen on.  [default: 127.0.0.1]")
    @click.option(
        "--port",
        default=None,
        type=click.IntRange(0, 65535),
        help="HTTP gateway port.  [default: 8000]",
    )
    @click.option(
        "--grpc-port",
        default=None,
        type=click.IntRange(0, 65535),
        help="gRPC port.  [default: 50051]",
    )
    @click.option(
        "--demo-page/--no-demo-page",
        default=None,
        help="Serve the browser demo page at /demo/.  [default: on]",
    )
    @click.option("--agents-log-level", default="INFO", show_default=True, type=LOG_LEVELS)
    @click.option("--http-log-level", default="INFO", show_default=True, type=LOG_LEVELS)
    @_agent_option(with_agent)
    def serve(
        host: str | None,
        port: int | None,
        grpc_port: int | None,
        demo_page: bool | None,
        agents_log_level: str,
        http_log_level: str,
        agent_spec: str | None,
    ) -> None:
        _configure_logging(agents_log_level, http_log_level)
        runner = get_runner(agent_spec)
        given = {"host": host, "port": port, "grpc_port": grpc_port, "demo_page": demo_page}
        overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        runner.serve_options = dataclasses.replace(runner.serve_options, **overrides)
        asyncio.run(runner.serve(http_port=runner.serve_options.port))

    return serve


def _run_command(get_runner: Callable[[str | None], Runner], with_agent: bool) -> click.Command:
    @click.command("run", help="Run one agent in a call, in the console; Ctrl-C ends it.")
    @click.option("--call-type", default="default", show_default=True)
    @click.option("--call-id", default=None, help="Call to join (default: a new random id).")
    @click.option("--agents-log-level", default="INFO", show_default=True, type=LOG_LEVELS)
    @_agent_option(with_agent)
    def run(
        call_type: str, call_id: str | None, agents_log_level: str, agent_spec: str | None
    ) -> None:
        _configure_logging(agents_log_level, "WARNING")
        runner = get_runner(agent_spec)
        code = asyncio.run(
            runner.run_console(call_type, call_id or f"console-{uuid.uuid4().hex[:8]}")
        )
        sys.exit(code)

    return run


def runner_cli(runner: Runner) -> click.Group:
    """The command line of a user's own file: ``python my_agent.py serve|run``."""
    group = click.Group(help="Serve this agent, or run it once in the console.")
    group.add_command(_serve_command(lambda _: runner, with_agent=False))
    group.add_command(_run_command(lambda _: runner, with_agent=False))
    return group


@click.group(help="agentplane: a gRPC control plane that starts AI agents into calls.")
@click.version_option(package_name="agentplane")
def main() -> None:
    pass


main.add_command(_serve_command(load_runner, with_agent=True))
main.add_command(_run_command(load_runner, with_agent=True))


@main.command("gateway", help="Serve the HTTP/JSON gateway alone, in front of a remote server.")
@click.option("--upstream", required=True, help="HOST:PORT of an agentplane gRPC server.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--cors-allow-origin",
    "origins",
    multiple=True,
    help="An origin browsers may call from (repeat it; default: any, without credentials).",
)
@click.option(
    "--cors-allow-credentials", is_flag=True, help="Allow cookies/auth (needs explicit origins)."
)
@click.option(
    "--upstream-timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.1),
    help="Deadline of each unary call to the upstream, in seconds.",
)  # fmt: skip
@click.option("--http-log-level", default="INFO", show_default=True, type=LOG_LEVELS)
def gateway(
    upstream: str,
    host: str,
    port: int,
    origins: tuple[str, ...],
    cors_allow_credentials: bool,
    upstream_timeout: float,
    http_log_level: str,
) -> None:
    from agentplane.gateway import CorsOptions
    from agentplane.http.standalone import parse_upstream, serve_gateway

    _configure_logging("INFO", http_log_level)
    try:
        parse_upstream(upstream)
        cors = CorsOptions(
            allow_origins=origins or ("*",), allow_credentials=cors_allow_credentials
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    asyncio.run(
        serve_gateway(upstream, host=host, port=port, cors=cors, upstream_timeout=upstream_timeout)
    )
