"""ServeOptions: how the server is exposed and who may do what.

Mirrors the reference agent server's ``ServeOptions`` names. Frozen: options
are fixed once the server starts.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentplane.compat.callbacks import native_hooks
from agentplane.http.limits import HttpLimits
from agentplane.net import TlsFiles
from agentplane.rpc.transport import GrpcLimits
from agentplane.service.auth import AuthPolicy

API_TOKEN_ENV = "AGENTPLANE_API_TOKEN"
CLOSE_TOKEN_SECRET_ENV = "AGENTPLANE_CLOSE_TOKEN_SECRET"
REDIS_URL_ENV = "AGENTPLANE_REDIS_URL"


def _env_token() -> str | None:
    return os.environ.get(API_TOKEN_ENV) or None


def _env_redis_url() -> str | None:
    return os.environ.get(REDIS_URL_ENV) or None


def _env_secret() -> bytes:
    # Set it for close tokens that survive restarts and work on every node;
    # otherwise each process makes its own.
    value = os.environ.get(CLOSE_TOKEN_SECRET_ENV)
    return value.encode() if value else secrets.token_bytes(32)


@dataclass(frozen=True)
class ServeOptions:
    """Server options.

    Auth callbacks (``get_current_user``, ``can_*``) come in two shapes, told
    apart by their signature (``agentplane.compat.callbacks``): a native hook
    takes the ``RequestContext`` first (annotated so, or not annotated), is
    async, gets the ``SessionRecord`` or None second in the session checks,
    and denies by raising ``Unauthenticated`` / ``PermissionDenied``; anything
    else is a FastAPI dependency as the Vision Agents docs write them
    (``x_api_key: str = Header(...)``, ``Depends(get_session)``, raising
    ``HTTPException``), resolved with FastAPI (``agentplane[fastapi]``) from
    the call's headers, ids and session. A ``can_*`` callback that returns
    ``False`` denies too. ``api_token`` (default: the
    ``AGENTPLANE_API_TOKEN`` environment variable) turns on a built-in bearer
    token check for every call; unset, the server is open.

    CORS: no other origin by default (the reference allows every origin
    *with* credentials); a wildcard origin never allows credentials, and
    ``cors_allow_credentials=True`` needs explicit origins.

    ``allowed_hosts``: the Host names the HTTP port answers (DNS rebinding);
    None: the loopback names for a loopback ``host``, any otherwise; ``*``:
    any. ``http_limits``: head size and time, keep-alive, connection cap.
    ``grpc_limits``: the gRPC port's bounds: ``max_message_bytes`` (4 MiB;
    a larger message is refused with RESOURCE_EXHAUSTED before its body is
    read), ``max_header_list_bytes`` (16 KiB), ``handshake_timeout`` (10 s),
    ``idle_timeout`` (300 s without a call open: GOAWAY), ``request_timeout``
    (30 s for a request to arrive whole),
    ``max_connections`` (a quarter of the descriptor limit, at most 4096).

    ``tls_cert`` and ``tls_key`` (PEM paths) serve both ports over TLS (the
    gRPC port offers ALPN h2); ``tls_client_ca`` adds mutual TLS: a client
    without a certificate that CA issued is refused during the handshake.

    The command line (``agentplane serve``, ``python my_agent.py serve``)
    sets every field an operator tunes from a flag or an ``AGENTPLANE_*``
    variable (``agentplane.server.config``); what neither gives keeps the
    value given here.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int = 50051
    api_token: str | None = field(default_factory=_env_token)
    close_token_secret: bytes = field(default_factory=_env_secret, repr=False)
    # Native hooks (GetCurrentUser, StartCheck, SessionCheck) or FastAPI dependencies.
    get_current_user: Callable[..., Any] | None = None
    can_start_session: Callable[..., Any] | None = None
    can_close_session: Callable[..., Any] | None = None
    can_view_session: Callable[..., Any] | None = None
    can_view_metrics: Callable[..., Any] | None = None
    cors_allow_origins: Sequence[str] = ()
    cors_allow_methods: Sequence[str] = ("*",)
    cors_allow_headers: Sequence[str] = ("*",)
    cors_allow_credentials: bool = False
    allowed_hosts: Sequence[str] | None = None
    http_limits: HttpLimits = field(default_factory=HttpLimits)
    grpc_limits: GrpcLimits = field(default_factory=GrpcLimits)
    fast_api: Any = None
    demo_page: bool = True
    # Keep objects known to be alive (the start-up heap, survivors of each
    # full collection) out of CPython's full passes, so held sessions cause
    # no long event-loop pauses (gc_tuning.py). False: CPython's own policy.
    gc_freeze: bool = True
    # Callers see the text of create_agent's and join_call's exceptions (a
    # failed Start's message, a session's error_message); by default only the
    # exception's type and an error id to find the traceback in the log
    # (decision 29). Or AgentLauncher(expose_error_details=True).
    expose_error_details: bool = False
    # A cluster (agentplane.cluster, issue 14; needs agentplane[redis]): the
    # nodes sharing this Redis admit against one set of limits. None: one node.
    redis_url: str | None = field(default_factory=_env_redis_url)
    # The gRPC address other nodes reach this one at (behind NAT, in a pod);
    # None: host:grpc_port as bound.
    advertise_address: str | None = None
    # Every key of the cluster starts with it: clusters can share one Redis.
    redis_prefix: str = "agentplane:"
    cluster_heartbeat: float = 1.0
    # TLS on both ports (PEM files: the certificate chain and its key);
    # tls_client_ca: mutual TLS, every client must present a certificate it issued.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None

    def __post_init__(self) -> None:
        for name in ("port", "grpc_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise ValueError(f"{name} must be a TCP port (0-65535), got {value}")
        if self.cors_allow_credentials and "*" in self.cors_allow_origins:
            raise ValueError(
                "cors_allow_credentials=True needs explicit cors_allow_origins: browsers "
                "refuse credentials with a wildcard origin"
            )
        if self.cluster_heartbeat <= 0:
            raise ValueError("cluster_heartbeat must be positive")
        if len(self.close_token_secret) < 16:
            raise ValueError("close_token_secret must be at least 16 bytes")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both, or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")

    def tls(self) -> TlsFiles | None:
        """The ports' TLS files, or None: plain TCP."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return TlsFiles(self.tls_cert, self.tls_key, self.tls_client_ca)

    def auth_policy(self) -> AuthPolicy:
        """The policy of these options, FastAPI-style callbacks adapted (FastAPI loaded only then)."""
        hooks = native_hooks(
            get_current_user=self.get_current_user,
            can_start_session=self.can_start_session,
            can_close_session=self.can_close_session,
            can_view_session=self.can_view_session,
            can_view_metrics=self.can_view_metrics,
        )
        return AuthPolicy(
            api_token=self.api_token,
            get_current_user=hooks["get_current_user"],
            can_start_session=hooks["can_start_session"],
            can_close_session=hooks["can_close_session"],
            can_view_session=hooks["can_view_session"],
            can_view_metrics=hooks["can_view_metrics"],
            close_token_secret=self.close_token_secret,
        )
