"""The ``serve`` and ``run`` commands, for any Runner.

``Runner.cli()`` builds a user file's command line from them
(``python my_agent.py serve|run``); the ``agentplane`` program (``cli``) adds
``--agent`` and the ``gateway`` command.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .process import run_to_exit

if TYPE_CHECKING:
    from .runner import Runner

LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(agents_level: str, http_level: str) -> None:
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


def serve_command(get_runner: Callable[[str | None], Runner], with_agent: bool) -> click.Command:
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
    @click.option(
        "--allowed-host",
        "allowed_hosts",
        multiple=True,
        help="A Host name the HTTP port answers (repeat it; * for any).  "
        "[default: the loopback names on a loopback --host, else any]",
    )
    @click.option("--agents-log-level", default="INFO", show_default=True, type=LOG_LEVELS)
    @click.option("--http-log-level", default="INFO", show_default=True, type=LOG_LEVELS)
    @_agent_option(with_agent)
    def serve(
        host: str | None,
        port: int | None,
        grpc_port: int | None,
        demo_page: bool | None,
        allowed_hosts: tuple[str, ...],
        agents_log_level: str,
        http_log_level: str,
        agent_spec: str | None,
    ) -> None:
        configure_logging(agents_log_level, http_log_level)
        runner = get_runner(agent_spec)
        given = {"host": host, "port": port, "grpc_port": grpc_port, "demo_page": demo_page}
        overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if allowed_hosts:
            overrides["allowed_hosts"] = allowed_hosts
        runner.serve_options = dataclasses.replace(runner.serve_options, **overrides)
        sys.exit(run_to_exit(runner.serve(http_port=runner.serve_options.port)))

    return serve


def run_command(get_runner: Callable[[str | None], Runner], with_agent: bool) -> click.Command:
    @click.command("run", help="Run one agent in a call, in the console; Ctrl-C ends it.")
    @click.option("--call-type", default="default", show_default=True)
    @click.option("--call-id", default=None, help="Call to join (default: a new random id).")
    @click.option("--agents-log-level", default="INFO", show_default=True, type=LOG_LEVELS)
    @_agent_option(with_agent)
    def run(
        call_type: str, call_id: str | None, agents_log_level: str, agent_spec: str | None
    ) -> None:
        configure_logging(agents_log_level, "WARNING")
        runner = get_runner(agent_spec)
        sys.exit(
            run_to_exit(runner.run_console(call_type, call_id or f"console-{uuid.uuid4().hex[:8]}"))
        )

    return run


def runner_cli(runner: Runner) -> click.Group:
    """The command line of a user's own file: ``python my_agent.py serve|run``."""
    group = click.Group(help="Serve this agent, or run it once in the console.")
    group.add_command(serve_command(lambda _: runner, with_agent=False))
    group.add_command(run_command(lambda _: runner, with_agent=False))
    return group
