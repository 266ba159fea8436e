"""The ``serve`` and ``run`` commands, for any Runner.

``Runner.cli()`` builds a user file's command line from them
(``python my_agent.py serve|run``); the ``agentplane`` program (``cli``) adds
``--agent`` and the ``gateway`` command.

Every flag of Vision Agents' ``serve`` and ``run`` is taken, with its meaning:
``--debug`` (asyncio's debug mode and its debug logs), ``--no-splash``
(agentplane prints no splash: nothing to turn off), ``run --log-level`` (the
agents' log level, as ``--agents-log-level``), ``run --no-demo`` (do not open
the agent's demo UI) and ``run --video-track-override PATH`` (the agent plays
that file instead of the call's video).

Log levels (``configure_logging``, ``agent_loggers``): ``--agents-log-level``
sets agentplane's own loggers, ``vision_agents`` and the loggers of the
agent's code: the top-level package of the modules defining ``create_agent``
and ``join_call`` and of ``--agent``'s module (``__main__`` for ``python
my_agent.py serve``). ``--http-log-level`` sets uvicorn's, grpclib's and the
gateway's; at INFO, each HTTP request is logged to ``uvicorn.access``.
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
# The agents' loggers whatever the agent: agentplane's and Vision Agents' SDK.
AGENT_LOGGERS = ("agentplane", "agentplane.launcher", "agentplane.runner", "vision_agents")
HTTP_LOGGERS = ("agentplane.gateway", "uvicorn", "uvicorn.error", "uvicorn.access", "grpclib")
# Modules that are never the agent's own code.
_NOT_AGENT_CODE = frozenset({"agentplane", "builtins", "functools"})


def configure_logging(agents_level: str, http_level: str, *, debug: bool = False) -> None:
    """Log to stderr: agents' loggers at ``agents_level``, HTTP and gRPC at ``http_level``.

    ``debug``: asyncio's own debug logs too (its debug mode is the loop's, ``run_to_exit``).
    """
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, stream=sys.stderr)
    for name in AGENT_LOGGERS:
        logging.getLogger(name).setLevel(agents_level.upper())
    for name in HTTP_LOGGERS:
        logging.getLogger(name).setLevel(http_level.upper())
    if debug:
        logging.getLogger("asyncio").setLevel(logging.DEBUG)


def agent_loggers(runner: Runner, agent_spec: str | None = None) -> list[str]:
    """The loggers of the agent's own code: the top-level packages defining it.

    Those of ``create_agent``, ``join_call`` and the ``--agent`` module
    (``__main__`` when the agent's file is run as a script).
    """
    modules = [*runner.launcher.agent_modules()]
    if agent_spec:
        modules.append(agent_spec.partition(":")[0])
    names = {module.split(".")[0] for module in modules if module}
    return sorted(names - _NOT_AGENT_CODE)


def set_agent_log_level(runner: Runner, level: str, agent_spec: str | None = None) -> None:
    for name in agent_loggers(runner, agent_spec):
        logging.getLogger(name).setLevel(level.upper())


def _agent_option(with_agent: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    # Hidden in a user's own file, where the agent is that file's runner.
    return click.option(
        "--agent",
        "agent_spec",
        default=None,
        hidden=not with_agent,
        help="module:attribute of your AgentLauncher or Runner (default: the demo agent).",
    )


def _debug_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--debug",
        is_flag=True,
        default=False,
        help="asyncio debug mode and its debug logs (slow callbacks, unawaited coroutines).",
    )


def _no_splash_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--no-splash",
        is_flag=True,
        default=False,
        help="Accepted for Vision Agents compatibility: agentplane prints no splash.",
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
    @click.option(
        "--redis-url",
        default=None,
        help="Join the cluster of the nodes sharing this Redis (needs agentplane[redis]).  "
        "[env: AGENTPLANE_REDIS_URL; default: one node, no Redis]",
    )
    @click.option(
        "--redis-prefix",
        default=None,
        help="Prefix of every Redis key of this cluster (clusters may share a Redis).  "
        "[default: agentplane:]",
    )
    @click.option(
        "--advertise-address",
        default=None,
        help="HOST:PORT this node's gRPC port is reached at, as the cluster lists it.  "
        "[default: as bound; the host name when bound to 0.0.0.0 or ::]",
    )
    @click.option(
        "--agents-log-level",
        default="INFO",
        show_default=True,
        type=LOG_LEVELS,
        help="Log level of agentplane, vision_agents and the agent's own modules.",
    )
    @click.option(
        "--http-log-level",
        default="INFO",
        show_default=True,
        type=LOG_LEVELS,
        help="Log level of the HTTP and gRPC servers; INFO logs each HTTP request.",
    )
    @_debug_option()
    @_no_splash_option()
    @_agent_option(with_agent)
    def serve(
        host: str | None,
        port: int | None,
        grpc_port: int | None,
        demo_page: bool | None,
        allowed_hosts: tuple[str, ...],
        redis_url: str | None,
        redis_prefix: str | None,
        advertise_address: str | None,
        agents_log_level: str,
        http_log_level: str,
        debug: bool,
        no_splash: bool,
        agent_spec: str | None,
    ) -> None:
        configure_logging(agents_log_level, http_log_level, debug=debug)
        runner = get_runner(agent_spec)
        set_agent_log_level(runner, agents_log_level, agent_spec)
        given = {
            "host": host,
            "port": port,
            "grpc_port": grpc_port,
            "demo_page": demo_page,
            "redis_url": redis_url,
            "redis_prefix": redis_prefix,
            "advertise_address": advertise_address,
        }
        overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if allowed_hosts:
            overrides["allowed_hosts"] = allowed_hosts
        runner.serve_options = dataclasses.replace(runner.serve_options, **overrides)
        sys.exit(run_to_exit(runner.serve(http_port=runner.serve_options.port), debug=debug))

    return serve


def run_command(get_runner: Callable[[str | None], Runner], with_agent: bool) -> click.Command:
    @click.command("run", help="Run one agent in a call, in the console; Ctrl-C ends it.")
    @click.option("--call-type", default="default", show_default=True)
    @click.option("--call-id", default=None, help="Call to join (default: a new random id).")
    @click.option(
        "--agents-log-level",
        "--log-level",
        "agents_log_level",
        default="INFO",
        show_default=True,
        type=LOG_LEVELS,
        help="Log level of agentplane, vision_agents and the agent's own modules.",
    )
    @click.option(
        "--no-demo",
        is_flag=True,
        default=False,
        help="Do not open the agent's demo UI (agent.edge.open_demo_for_agent).",
    )
    @click.option(
        "--video-track-override",
        type=click.Path(dir_okay=False, exists=True, resolve_path=True),
        default=None,
        help="A local video file the agent plays instead of the call's video "
        "(agent.set_video_track_override_path).",
    )
    @_debug_option()
    @_no_splash_option()
    @_agent_option(with_agent)
    def run(
        call_type: str,
        call_id: str | None,
        agents_log_level: str,
        no_demo: bool,
        video_track_override: str | None,
        debug: bool,
        no_splash: bool,
        agent_spec: str | None,
    ) -> None:
        configure_logging(agents_log_level, "WARNING", debug=debug)
        runner = get_runner(agent_spec)
        set_agent_log_level(runner, agents_log_level, agent_spec)
        sys.exit(
            run_to_exit(
                runner.run_console(
                    call_type,
                    call_id or f"console-{uuid.uuid4().hex[:8]}",
                    video_track_override=video_track_override,
                    open_demo=not no_demo,
                ),
                debug=debug,
            )
        )

    return run


def runner_cli(runner: Runner) -> click.Group:
    """The command line of a user's own file: ``python my_agent.py serve|run``."""
    group = click.Group(help="Serve this agent, or run it once in the console.")
    group.add_command(serve_command(lambda _: runner, with_agent=False))
    group.add_command(run_command(lambda _: runner, with_agent=False))
    return group
