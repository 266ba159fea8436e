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
gateway's, and the access log's (``agentplane.access``: one line per HTTP
request and gRPC call, at INFO; ``--no-access-log`` turns it off).
``--log-format text|json`` chooses the lines' shape (``agentplane.server.logs``).
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from agentplane.net import ACCESS_LOGGER, ListenError

from . import config
from .logs import LOG_FORMATS, LogFormat, install_context, stderr_handler
from .process import run_to_exit

if TYPE_CHECKING:
    from .runner import Runner

LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False)
# -h as well as --help, on every command.
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}
# The flag that moves each port, for the error naming a port that is taken.
PORT_FLAGS = {"HTTP": "--port", "gRPC": "--grpc-port"}
# The agents' loggers whatever the agent: agentplane's and Vision Agents' SDK.
AGENT_LOGGERS = ("agentplane", "agentplane.launcher", "agentplane.runner", "vision_agents")
HTTP_LOGGERS = ("agentplane.gateway", "uvicorn", "uvicorn.error", "uvicorn.access", "grpclib")
# Modules that are never the agent's own code.
_NOT_AGENT_CODE = frozenset({"agentplane", "builtins", "functools"})


def configure_logging(
    agents_level: str,
    http_level: str,
    *,
    debug: bool = False,
    log_format: LogFormat = "text",
    access_log: bool = True,
) -> None:
    """Log to stderr: agents' loggers at ``agents_level``, HTTP and gRPC at ``http_level``.

    ``debug``: asyncio's own debug logs too (its debug mode is the loop's, ``run_to_exit``).
    ``log_format``: ``text`` or ``json`` lines. ``access_log``: one line per
    request and call on ``agentplane.access``, at ``http_level``.
    """
    install_context()
    logging.basicConfig(level=logging.WARNING, handlers=[stderr_handler(log_format)])
    for name in AGENT_LOGGERS:
        logging.getLogger(name).setLevel(agents_level.upper())
    for name in HTTP_LOGGERS:
        logging.getLogger(name).setLevel(http_level.upper())
    # Its lines are INFO: off below that (as uvicorn's access log was).
    logging.getLogger(ACCESS_LOGGER).setLevel(http_level.upper() if access_log else "WARNING")
    if debug:
        logging.getLogger("asyncio").setLevel(logging.DEBUG)


def run_serving(main: Any, *, debug: bool) -> None:
    """``run_to_exit(main)``, then exit; a port that cannot be opened is one line, exit 1."""
    try:
        code = run_to_exit(main, debug=debug)
    except ListenError as error:
        flag = PORT_FLAGS.get(error.port_name, "--port")
        hint = (
            f"stop what uses it, or choose another port with {flag} (0: any free port)"
            if error.in_use
            else f"check --host, or choose another port with {flag}"
        )
        raise click.ClickException(f"{error}: {hint}") from None
    sys.exit(code)


def log_format_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--log-format",
        default="text",
        show_default=True,
        type=click.Choice(LOG_FORMATS),
        help="Log lines as text, or as JSON objects (one a line).",
    )


def access_log_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--access-log/--no-access-log",
        default=True,
        show_default=True,
        help="One line per HTTP request and gRPC call (agentplane.access), "
        "at --http-log-level INFO or below.",
    )


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
    # Every setting (config.SETTINGS) is a flag and an AGENTPLANE_* variable
    # with no click default: one left out keeps the value of the runner's
    # AgentLauncher / ServeOptions, so a user's own
    # `Runner(launcher, ServeOptions(grpc_port=...)).cli()` holds.
    @click.command(
        "serve",
        help="Serve sessions over gRPC (and HTTP) until SIGTERM.\n\n" + config.PRECEDENCE,
        context_settings=CONTEXT_SETTINGS,
    )
    @config.options()
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
        help="Log level of the HTTP and gRPC servers and of the access log.",
    )
    @access_log_option()
    @log_format_option()
    @_debug_option()
    @_no_splash_option()
    @_agent_option(with_agent)
    def serve(
        agents_log_level: str,
        http_log_level: str,
        access_log: bool,
        log_format: LogFormat,
        debug: bool,
        no_splash: bool,
        agent_spec: str | None,
        **settings: Any,
    ) -> None:
        configure_logging(
            agents_log_level,
            http_log_level,
            debug=debug,
            log_format=log_format,
            access_log=access_log,
        )
        runner = get_runner(agent_spec)
        set_agent_log_level(runner, agents_log_level, agent_spec)
        config.apply(runner, settings)
        run_serving(runner.serve(http_port=runner.serve_options.port), debug=debug)

    return serve


def run_command(get_runner: Callable[[str | None], Runner], with_agent: bool) -> click.Command:
    @click.command(
        "run",
        help="Run one agent in a call, in the console; Ctrl-C ends it.",
        context_settings=CONTEXT_SETTINGS,
    )
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
    @log_format_option()
    @_debug_option()
    @_no_splash_option()
    @_agent_option(with_agent)
    def run(
        call_type: str,
        call_id: str | None,
        agents_log_level: str,
        no_demo: bool,
        video_track_override: str | None,
        log_format: LogFormat,
        debug: bool,
        no_splash: bool,
        agent_spec: str | None,
    ) -> None:
        configure_logging(agents_log_level, "WARNING", debug=debug, log_format=log_format)
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
    group = click.Group(
        help="Serve this agent, or run it once in the console.", context_settings=CONTEXT_SETTINGS
    )
    group.add_command(serve_command(lambda _: runner, with_agent=False))
    group.add_command(run_command(lambda _: runner, with_agent=False))
    return group
