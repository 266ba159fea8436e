"""``serve``'s settings: one table of flags and ``AGENTPLANE_*`` variables, and how they apply.

Each row of ``SETTINGS`` is one setting: its flag (``--max-concurrent-sessions``),
its environment variable (``AGENTPLANE_`` and the flag in capitals, unless the
row names another), its type and help, and where its value goes: an
``AgentLauncher`` setting (``launcher.configure``), a ``ServeOptions`` field,
or a field of its ``http_limits`` (``HttpLimits``) or ``grpc_limits``
(``GrpcLimits``). A new setting is one row.

Precedence, highest first: the flag, the environment variable, a variable of
``--env-file`` (loaded without overriding the real environment, as uvicorn's
``--env-file``), then what the code passed to ``AgentLauncher(...)`` /
``ServeOptions(...)``, then agentplane's default. Click resolves the first
three; an option neither gives is None here and leaves the code's value alone,
which is why no option has a click default. A limit that the code set can be
switched off with ``none``.

A value click cannot convert is refused by click, naming the flag and its
variable; a combination the options refuse (``--cors-allow-credentials`` with
origin ``*``), a TLS file that cannot be used, or a setting a built app cannot
take any more is one ``Error:`` line naming the flags.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import click

from agentplane.core import LauncherSettings
from agentplane.http.limits import HttpLimits
from agentplane.net import TlsError
from agentplane.rpc.transport import GrpcLimits

from .options import ServeOptions

if TYPE_CHECKING:
    from .runner import Runner

if TYPE_CHECKING:
    _ParamType = click.ParamType[Any]
else:  # click < 8.5 has no type parameters
    _ParamType = click.ParamType

ENV_PREFIX = "AGENTPLANE_"
Target = Literal["launcher", "serve", "http", "grpc"]
_TARGET_CLASS: dict[Target, type[Any]] = {
    "launcher": LauncherSettings,
    "serve": ServeOptions,
    "http": HttpLimits,
    "grpc": GrpcLimits,
}


class _Off:
    """``none`` given for a limit: switch it off (None), whatever the code set."""

    def __repr__(self) -> str:
        return "none"


OFF: Any = _Off()


class Seconds(_ParamType):
    """A finite number of seconds, at least 0 (``positive``: more than 0)."""

    name = "seconds"

    def __init__(self, *, positive: bool = False) -> None:
        self.positive = positive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        if number < 0 or (self.positive and number == 0):
            self.fail(f"{value!r} must be {'> 0' if self.positive else '>= 0'}", param, ctx)
        return number


class Count(_ParamType):
    """A whole number of at least ``minimum``."""

    name = "count"

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a whole number", param, ctx)
        if number < self.minimum:
            self.fail(f"{value!r} must be at least {self.minimum}", param, ctx)
        return number


class OrNone(_ParamType):
    """``inner``'s values, or ``none`` / ``off``: no such limit."""

    def __init__(self, inner: _ParamType) -> None:
        self.inner = inner
        self.name = f"{inner.name} or none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is OFF or (isinstance(value, str) and value.strip().lower() in ("none", "off")):
            return OFF
        return self.inner.convert(value, param, ctx)


class Items(_ParamType):
    """One item of a list option; its environment variable separates items with commas."""

    name = "text"
    envvar_list_splitter = ","

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        item = str(value).strip()
        if not item:
            self.fail("an empty item (a stray comma?)", param, ctx)
        return item


class Secret(_ParamType):
    """A secret of at least ``minimum`` bytes (UTF-8), as bytes."""

    name = "secret"

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        data = value if isinstance(value, bytes) else str(value).encode()
        if len(data) < self.minimum:
            self.fail(f"must be at least {self.minimum} bytes, got {len(data)}", param, ctx)
        return data


PATH = click.Path(exists=True, dir_okay=False, readable=True)
LIMIT = OrNone(Count(1))
PORT = click.IntRange(0, 65535)


@dataclass(frozen=True)
class Setting:
    """One row: ``--flag`` / ``AGENTPLANE_FLAG`` sets ``field`` of ``target``."""

    flag: str
    target: Target
    field: str
    type: _ParamType
    help: str
    metavar: str | None = None
    # A list: the flag is repeated, the variable separates items with commas.
    multiple: bool = False
    # The built-in default as --help shows it (None: the dataclass field's own default).
    default: str | None = None
    env: str | None = None

    @property
    def envvar(self) -> str:
        return self.env or ENV_PREFIX + self.flag.upper().replace("-", "_")

    @property
    def param(self) -> str:
        return self.flag.replace("-", "_")

    @property
    def is_bool(self) -> bool:
        return isinstance(self.type, click.types.BoolParamType)

    def default_text(self) -> str:
        if self.default is not None:
            return self.default
        fields = dataclasses.fields(_TARGET_CLASS[self.target])
        value = next(field.default for field in fields if field.name == self.field)
        if value is None or value == ():
            return "none"
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, tuple):
            return ",".join(str(item) for item in value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    def option(self) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        declarations = [f"--{self.flag}/--no-{self.flag}" if self.is_bool else f"--{self.flag}"]
        return click.option(
            *declarations,
            self.param,
            type=self.type,
            default=None,
            multiple=self.multiple,
            metavar=self.metavar,
            envvar=self.envvar,
            show_envvar=True,
            help=f"{self.help}  [default: {self.default_text()}]",
        )


def _launcher(flag: str, kind: _ParamType, help: str, metavar: str) -> Setting:
    return Setting(flag, "launcher", flag.replace("-", "_"), kind, help, metavar)


SECONDS = Seconds()
POSITIVE = Seconds(positive=True)

SETTINGS: tuple[Setting, ...] = (
    # Where it listens.
    Setting("host", "serve", "host", click.STRING, "Address to listen on (both ports).", "ADDRESS"),
    Setting("port", "serve", "port", PORT, "HTTP gateway port (0: any free port).", "PORT"),
    Setting("grpc-port", "serve", "grpc_port", PORT, "gRPC port (0: any free port).", "PORT"),
    Setting("allowed-host", "serve", "allowed_hosts", Items(),
            "A Host name the HTTP port answers (repeat it; * for any).", "HOST", multiple=True,
            default="the loopback names on a loopback --host, else any",
            env="AGENTPLANE_ALLOWED_HOSTS"),
    Setting("demo-page", "serve", "demo_page", click.BOOL, "Serve the browser demo page at /demo/."),
    # TLS.
    Setting("tls-cert", "serve", "tls_cert", PATH,
            "PEM certificate chain: serve gRPC and HTTP over TLS (needs --tls-key).", "PATH"),
    Setting("tls-key", "serve", "tls_key", PATH, "PEM private key of --tls-cert.", "PATH"),
    Setting("tls-client-ca", "serve", "tls_client_ca", PATH,
            "PEM CA certificate(s): mutual TLS, a client certificate it issued is required "
            "on both ports.", "PATH"),
    # Who may call.
    Setting("api-token", "serve", "api_token", click.STRING,
            "Bearer token every call must carry (prefer the variable: flags show in ps).",
            "TOKEN", default="none: an open server"),
    Setting("close-token-secret", "serve", "close_token_secret", Secret(16),
            "Secret (16+ bytes) signing close tokens; the same on every node, kept across "
            "restarts.", "SECRET", default="random per process"),
    Setting("cors-allow-origin", "serve", "cors_allow_origins", Items(),
            "An origin browsers may call from (repeat it; * for any).", "ORIGIN", multiple=True,
            default="none but the server's own", env="AGENTPLANE_CORS_ALLOW_ORIGINS"),
    Setting("cors-allow-credentials", "serve", "cors_allow_credentials", click.BOOL,
            "Let browsers send cookies and credentials (needs explicit origins)."),
    Setting("cors-allow-method", "serve", "cors_allow_methods", Items(),
            "An HTTP method cross-origin calls may use (repeat it).", "METHOD", multiple=True,
            env="AGENTPLANE_CORS_ALLOW_METHODS"),
    Setting("cors-allow-header", "serve", "cors_allow_headers", Items(),
            "A request header cross-origin calls may send (repeat it).", "HEADER", multiple=True,
            env="AGENTPLANE_CORS_ALLOW_HEADERS"),
    # Sessions (AgentLauncher).
    _launcher("max-concurrent-sessions", LIMIT, "Most sessions at once (in a cluster: in all).", "N|none"),
    _launcher("max-sessions-per-call", LIMIT, "Most sessions in one call.", "N|none"),
    _launcher("max-sessions-per-node", LIMIT, "Most sessions this node itself runs.", "N|none"),
    _launcher("permits-per-minute", LIMIT, "Most new sessions per minute.", "N|none"),
    _launcher("max-session-duration-seconds", OrNone(SECONDS),
              "A session ends (MAX_DURATION) after this long; 0 or none: never.", "SECONDS|none"),
    _launcher("agent-idle-timeout", OrNone(SECONDS),
              "A session alone in its call ends (IDLE_TIMEOUT) after this long; 0 or none: never.",
              "SECONDS|none"),
    _launcher("create-agent-timeout", POSITIVE, "How long create_agent may take.", "SECONDS"),
    _launcher("adapter-startup-timeout", POSITIVE,
              "How long the agents' family adapter may take to start.", "SECONDS"),
    _launcher("drain-timeout", SECONDS,
              "After SIGTERM, how long running sessions get to finish.", "SECONDS"),
    _launcher("stop-timeout", POSITIVE,
              "How long an ending session's agent gets to stop, then to close (the firm stop).",
              "SECONDS"),
    _launcher("session-retention-seconds", SECONDS,
              "How long an ended session stays readable.", "SECONDS"),
    _launcher("max-retained-sessions", Count(0), "Most ended sessions kept readable.", "N"),
    _launcher("limit-retry-after", OrNone(POSITIVE),
              "Retry hint (RetryInfo, Retry-After) of a Start refused by a session limit.",
              "SECONDS|none"),
    _launcher("metrics-event-interval", SECONDS,
              "Least time between two metrics events of a session.", "SECONDS"),
    # The process.
    Setting("expose-error-details", "serve", "expose_error_details", click.BOOL,
            "Let callers see the text of create_agent's and join_call's exceptions."),
    Setting("gc-freeze", "serve", "gc_freeze", click.BOOL,
            "Keep the held heap out of CPython's full collections (shorter GC pauses)."),
    # A cluster.
    Setting("redis-url", "serve", "redis_url", click.STRING,
            "Join the cluster of the nodes sharing this Redis (needs agentplane[redis]).", "URL",
            default="one node, no Redis"),
    Setting("redis-prefix", "serve", "redis_prefix", click.STRING,
            "Prefix of every Redis key of this cluster (clusters may share a Redis).", "PREFIX"),
    Setting("advertise-address", "serve", "advertise_address", click.STRING,
            "HOST:PORT this node's gRPC port is reached at, as the cluster lists it.",
            "HOST:PORT", default="as bound; the host name when bound to 0.0.0.0 or ::"),
    Setting("cluster-heartbeat", "serve", "cluster_heartbeat", POSITIVE,
            "Seconds between two heartbeats of this node in Redis.", "SECONDS"),
    # The HTTP port's limits (HttpLimits).
    Setting("http-max-connections", "http", "max_connections", Count(0),
            "Most open HTTP connections (0: half the descriptor limit, at most 4096).", "N"),
    Setting("http-max-url-bytes", "http", "max_url_bytes", Count(1), "Longest URL (414).", "BYTES"),
    Setting("http-max-head-bytes", "http", "max_head_bytes", Count(1),
            "Largest request head (431).", "BYTES"),
    Setting("http-max-headers", "http", "max_headers", Count(1),
            "Most header fields in a request (431).", "N"),
    Setting("http-head-timeout", "http", "head_timeout", POSITIVE,
            "How long a request head may take to arrive (408).", "SECONDS"),
    Setting("http-body-timeout", "http", "body_timeout", POSITIVE,
            "How long a request body may take to arrive after its head (408).", "SECONDS"),
    Setting("http-keep-alive-timeout", "http", "keep_alive_timeout", POSITIVE,
            "How long an idle keep-alive connection stays open (whole seconds).", "SECONDS"),
    # The gRPC port's limits (GrpcLimits).
    Setting("grpc-max-message-bytes", "grpc", "max_message_bytes", Count(1),
            "Largest gRPC message (RESOURCE_EXHAUSTED).", "BYTES"),
    Setting("grpc-max-connection-buffer-bytes", "grpc", "max_connection_buffer_bytes", Count(1),
            "Bytes of unfinished messages one connection may hold.", "BYTES"),
    Setting("grpc-max-header-list-bytes", "grpc", "max_header_list_bytes", Count(1024),
            "Largest header list of a call.", "BYTES"),
    Setting("grpc-max-connections", "grpc", "max_connections", Count(1),
            "Most open gRPC connections.", "N",
            default="a quarter of the descriptor limit, at most 4096"),
    Setting("grpc-handshake-timeout", "grpc", "handshake_timeout", POSITIVE,
            "How long a connection may take to finish the HTTP/2 handshake.", "SECONDS"),
    Setting("grpc-idle-timeout", "grpc", "idle_timeout", POSITIVE,
            "A connection with no call open this long is closed (GOAWAY).", "SECONDS"),
    Setting("grpc-request-timeout", "grpc", "request_timeout", POSITIVE,
            "How long a request may take to arrive whole (DEADLINE_EXCEEDED).", "SECONDS"),
)  # fmt: skip

PRECEDENCE = (
    "Each setting comes from its flag, else its AGENTPLANE_* environment variable, else "
    "--env-file, else what the code passed to AgentLauncher(...) / ServeOptions(...), else "
    "the default shown. List variables separate items with commas; `none` switches off a "
    "limit the code set."
)


def _load_env_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    from dotenv import load_dotenv

    # The real environment wins over the file (uvicorn's --env-file does the same).
    load_dotenv(value, override=False)


def env_file_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--env-file``: a dotenv file loaded before every other option is read."""
    return click.option(
        "--env-file",
        type=PATH,
        default=None,
        is_eager=True,  # loaded before any other option reads the environment
        expose_value=False,
        callback=_load_env_file,
        envvar="AGENTPLANE_ENV_FILE",
        show_envvar=True,
        metavar="PATH",
        help="A dotenv file of variables (AGENTPLANE_* and any the agent reads), loaded "
        "before the options; variables already in the environment win over it.",
    )


def options() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding every setting's option, and ``--env-file``, to a command."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for setting in reversed(SETTINGS):
            command = setting.option()(command)
        return env_file_option()(command)

    return decorate


def given(values: Mapping[str, Any]) -> dict[Setting, Any]:
    """The settings a flag, a variable or --env-file gave, with their values."""
    found: dict[Setting, Any] = {}
    for setting in SETTINGS:
        value = values.get(setting.param)
        if value is None or (setting.multiple and not value):
            continue
        found[setting] = None if value is OFF else value
    return found


def apply(runner: Runner, values: Mapping[str, Any]) -> None:
    """Apply what was given to the runner's launcher and options; ClickException if refused."""
    settings = given(values)
    by_target: dict[Target, dict[str, Any]] = {"launcher": {}, "serve": {}, "http": {}, "grpc": {}}
    for setting, value in settings.items():
        by_target[setting.target][setting.field] = value
    if any(s.field.startswith("cors_") for s in settings) and runner.http_built:
        raise click.ClickException(
            "the CORS settings (--cors-*) cannot change this runner's HTTP app: it was built "
            "before the command line was read (runner.fast_api, or ServeOptions(fast_api=...)); "
            "set them in ServeOptions in the code instead"
        )
    with _refusal():
        if by_target["launcher"]:
            runner.launcher.configure(**by_target["launcher"])
        options = runner.serve_options
        changes = dict(by_target["serve"])
        if by_target["http"]:
            changes["http_limits"] = dataclasses.replace(options.http_limits, **by_target["http"])
        if by_target["grpc"]:
            changes["grpc_limits"] = dataclasses.replace(options.grpc_limits, **by_target["grpc"])
        if changes:
            runner.serve_options = dataclasses.replace(options, **changes)
        tls = runner.serve_options.tls()
        if tls is not None:
            tls.context(alpn=("h2",))  # a file that cannot be used stops here, in one line


@contextlib.contextmanager
def _refusal() -> Iterator[None]:
    """The options' own ValueError/TypeError as one line naming flags, not fields."""
    try:
        yield
    except TlsError as error:
        raise click.ClickException(str(error)) from None
    except (ValueError, TypeError) as error:
        raise click.ClickException(_name_flags(str(error))) from None


def _name_flags(message: str) -> str:
    """``message`` with each field name it mentions followed by its flag and variable."""
    fields = [setting.field for setting in SETTINGS]
    # max_connections is both ports': the text cannot say which, so it stays as it is.
    named = {s.field: s for s in SETTINGS if fields.count(s.field) == 1}
    seen: set[str] = set()

    def name(match: re.Match[str]) -> str:
        field = match.group(0)
        if field in seen:
            return field
        seen.add(field)
        return f"{field} (--{named[field].flag}, {named[field].envvar})"

    pattern = r"\b(" + "|".join(re.escape(field) for field in named) + r")\b"
    return re.sub(pattern, name, message)


def describe(settings: Iterable[Setting] = SETTINGS) -> list[tuple[str, str, str, str]]:
    """(flag, variable, default, help) of each setting: the README's table is checked against it."""
    return [(f"--{s.flag}", s.envvar, s.default_text(), s.help) for s in settings]


def environment_names() -> frozenset[str]:
    """Every variable the settings read."""
    return frozenset(setting.envvar for setting in SETTINGS) | {"AGENTPLANE_ENV_FILE"}
