"""The start-up summary: one log record, once both ports serve.

Example (``agentplane serve``)::

    agentplane ready
      version  agentplane 0.1.0, Python 3.11.7
      agent    demo agent
      auth     off: no API token, no permission hooks (anyone who reaches the ports may start agents)
      limits   no cap on sessions, any per call, no start rate limit, no duration limit, idle 60 s, drain 30 s
      node     single node
      gRPC     127.0.0.1:50051 (plaintext)
      HTTP     http://127.0.0.1:8000/
      docs     http://127.0.0.1:8000/docs
      demo     http://127.0.0.1:8000/demo/
      metrics  http://127.0.0.1:8000/metrics
      health   http://127.0.0.1:8000/health  ready: http://127.0.0.1:8000/ready

The first line stays ``agentplane ready`` (scripts wait for it). The same
fields go on the record as ``summary`` (a dict), which the JSON format writes.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentplane.http.app import package_version

if TYPE_CHECKING:
    from .options import ServeOptions
    from .runner import Runner

_HOOKS = (
    "get_current_user",
    "can_start_session",
    "can_close_session",
    "can_view_session",
    "can_view_metrics",
)


@dataclass(frozen=True)
class StartupSummary:
    text: str
    fields: dict[str, Any]


def _count(value: int | None, what: str, off: str) -> str:
    return off if value is None else f"{value} {what}"


def _address(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}"


def agent_label(runner: Runner) -> str:
    if runner.agent_label:
        return runner.agent_label
    create = runner.launcher.create_agent
    module = getattr(create, "__module__", None) or "?"
    name = getattr(create, "__qualname__", None) or type(create).__name__
    if module == "agentplane.demo.agent":
        return "demo agent"
    return f"{module}:{name} (create_agent)"


def auth_state(runner: Runner) -> str:
    options = runner.serve_options
    hooks = [name for name in _HOOKS if getattr(options, name) is not None]
    parts = []
    if options.api_token:
        parts.append("API token (Authorization: Bearer)")
    if hooks:
        parts.append("hooks " + ", ".join(hooks))
    if not parts:
        return (
            "off: no API token, no permission hooks (anyone who reaches the ports may start agents)"
        )
    return "on: " + "; ".join(parts)


def limits_text(runner: Runner) -> str:
    launcher = runner.launcher
    limits = launcher.limits
    parts = [
        _count(limits.max_concurrent_sessions, "sessions at once", "no cap on sessions"),
        _count(limits.max_sessions_per_call, "per call", "any per call"),
        _count(limits.permits_per_minute, "starts/min", "no start rate limit"),
    ]
    if limits.max_sessions_per_node is not None:
        parts.append(f"{limits.max_sessions_per_node} on this node")
    duration = launcher.max_session_duration
    parts.append("no duration limit" if duration is None else f"{duration:g} s long at most")
    idle = launcher.idle_timeout
    parts.append("no idle timeout" if idle is None else f"idle {idle:g} s")
    parts.append(f"drain {launcher.drain_timeout:g} s")
    return ", ".join(parts)


def _tls_note(options: ServeOptions) -> str:
    if not options.tls_cert:
        return " (plaintext)"
    return " (TLS, client certificates required)" if options.tls_client_ca else " (TLS)"


def startup_summary(runner: Runner, host: str) -> StartupSummary:
    options = runner.serve_options
    grpc_port = runner.grpc.port if runner.grpc is not None else None
    node = (
        f"cluster node {runner.cluster.node_id} (Redis, keys {options.redis_prefix}*)"
        if runner.cluster is not None
        else "single node"
    )
    rows: list[tuple[str, str]] = [
        ("version", f"agentplane {package_version()}, Python {platform.python_version()}"),
        ("agent", agent_label(runner)),
        ("auth", auth_state(runner)),
        ("limits", limits_text(runner)),
        ("node", node),
        ("gRPC", _address(host, grpc_port) + _tls_note(options)),
    ]
    if runner.http_port is not None:
        scheme = "https" if options.tls_cert else "http"
        base = f"{scheme}://{_address(host, runner.http_port)}"
        rows.append(("HTTP", base + "/"))
        if options.fast_api is None:  # our app: the documented routes are there
            rows.append(("docs", base + "/docs"))
            if options.demo_page:
                rows.append(("demo", base + "/demo/"))
            rows.append(("metrics", base + "/metrics"))
            rows.append(("health", f"{base}/health  ready: {base}/ready"))
    width = max(len(name) for name, _ in rows)
    text = "agentplane ready\n" + "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)
    return StartupSummary(text, {name: value for name, value in rows})
