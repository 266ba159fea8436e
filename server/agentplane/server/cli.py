"""The ``agentplane`` command line (and ``python my_agent.py serve|run``).

``--agent module:attribute`` names an AgentLauncher, a Runner, or a callable
returning either; without it, ``serve`` and ``run`` use the built-in DEMO
agent (no network, no API key).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from agentplane.console import sessions
from agentplane.core import AgentLauncher

from .commands import (
    CONTEXT_SETTINGS,
    LOG_LEVELS,
    access_log_option,
    configure_logging,
    log_format_option,
    run_command,
    run_serving,
    serve_command,
)
from .config import env_file_option
from .gateway_tls import gateway_tls, gateway_tls_options
from .logs import LogFormat
from .runner import Runner


class AgentNotFound(click.ClickException):
    """``--agent`` names nothing serveable: one ``Error: ...`` line, exit code 1."""


def load_runner(spec: str | None) -> Runner:
    """The Runner for ``--agent module:attribute`` (None: the demo agent).

    A spec that names no module, no attribute or no agent raises
    ``AgentNotFound`` (a one-line error); anything the module's own code
    raises while it is imported goes on as it is (its traceback is the help).
    """
    if spec is None:
        from agentplane.demo.agent import demo_launcher

        runner = Runner(demo_launcher())
        runner.agent_label = "demo agent"
        return runner
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AgentNotFound(f"--agent {spec!r}: expected module:attribute, e.g. my_agent:launcher")
    sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            # The module itself (or its package) is not there.
            raise AgentNotFound(
                f"--agent {spec!r}: no module named {module_name!r} in {os.getcwd()} "
                "or on the Python path; start from the folder holding it, or check the name"
            ) from None
        raise AgentNotFound(
            f"--agent {spec!r}: {module_name} imports {exc.name!r}, which is not installed ({exc})"
        ) from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            names = sorted(
                name
                for name, value in vars(module).items()
                if isinstance(value, (AgentLauncher, Runner))
            )
            hint = f"; it has {', '.join(names)}" if names else ""
            raise AgentNotFound(
                f"--agent {spec!r}: {module_name} has no attribute {attribute!r}{hint}"
            )
        target = getattr(target, part)
    if callable(target) and not isinstance(target, (AgentLauncher, Runner)):
        target = target()
    if isinstance(target, AgentLauncher):
        target = Runner(target)
    if isinstance(target, Runner):
        target.agent_label = target.agent_label or spec
        return target
    raise AgentNotFound(
        f"--agent {spec!r}: {module_name}.{attribute} is a {type(target).__name__}; "
        "expected an AgentLauncher, a Runner, or a function returning one"
    )


@click.group(
    help="agentplane: a gRPC control plane that starts AI agents into calls.",
    context_settings=CONTEXT_SETTINGS,
)
@click.version_option(package_name="agentplane")
def main() -> None:
    pass


main.add_command(serve_command(load_runner, with_agent=True))
main.add_command(run_command(load_runner, with_agent=True))
main.add_command(sessions)


@main.command(
    "gateway",
    help="Serve the HTTP/JSON gateway alone, in front of a remote server.",
    context_settings=CONTEXT_SETTINGS,
)
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
@access_log_option()
@log_format_option()
@gateway_tls_options()
@env_file_option()
def gateway(
    upstream: str,
    host: str,
    port: int,
    origins: tuple[str, ...],
    allowed_hosts: tuple[str, ...],
    cors_allow_credentials: bool,
    upstream_timeout: float,
    http_log_level: str,
    access_log: bool,
    log_format: LogFormat,
    **tls: Any,
) -> None:
    from agentplane.gateway import CorsOptions
    from agentplane.http.standalone import parse_upstream, serve_gateway

    configure_logging("INFO", http_log_level, log_format=log_format, access_log=access_log)
    try:
        parse_upstream(upstream)
        cors = CorsOptions(allow_origins=origins, allow_credentials=cors_allow_credentials)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    served_tls, upstream_ssl = gateway_tls(**tls)
    run_serving(
        serve_gateway(
            upstream,
            host=host,
            port=port,
            cors=cors,
            upstream_timeout=upstream_timeout,
            allowed_hosts=allowed_hosts or None,
            tls=served_tls,
            upstream_ssl=upstream_ssl,
        ),
        debug=False,
    )
