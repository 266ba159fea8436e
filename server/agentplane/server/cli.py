"""The ``agentplane`` command line (and ``python my_agent.py serve|run``).

``--agent module:attribute`` names an AgentLauncher, a Runner, or a callable
returning either; without it, ``serve`` and ``run`` use the built-in DEMO
agent (no network, no API key).
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Any

import click

from agentplane.console import sessions
from agentplane.core import AgentLauncher

from .commands import LOG_LEVELS, configure_logging, run_command, serve_command
from .runner import Runner


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


@click.group(
    help="agentplane: a gRPC control plane that starts AI agents into calls.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="agentplane")
def main() -> None:
    pass


main.add_command(serve_command(load_runner, with_agent=True))
main.add_command(run_command(load_runner, with_agent=True))
main.add_command(sessions)


@main.command("gateway", help="Serve the HTTP/JSON gateway alone, in front of a remote server.")
@click.option("--upstream", required=True, help="HOST:PORT of an agentplane gRPC server.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--cors-allow-origin",
    "origins",
    multiple=True,
    help="An origin browsers may call from (repeat it; * for any; default: none but the "
    "gateway's own).",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="A Host name the gateway answers (repeat it; * for any; default: the loopback "
    "names on a loopback --host, else any).",
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
    allowed_hosts: tuple[str, ...],
    cors_allow_credentials: bool,
    upstream_timeout: float,
    http_log_level: str,
) -> None:
    from agentplane.gateway import CorsOptions
    from agentplane.http.standalone import parse_upstream, serve_gateway

    configure_logging("INFO", http_log_level)
    try:
        parse_upstream(upstream)
        cors = CorsOptions(allow_origins=origins, allow_credentials=cors_allow_credentials)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    asyncio.run(
        serve_gateway(
            upstream,
            host=host,
            port=port,
            cors=cors,
            upstream_timeout=upstream_timeout,
            allowed_hosts=allowed_hosts or None,
        )
    )
