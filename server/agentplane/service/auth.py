"""Authentication and permissions, enforced once for every transport.

Both the grpclib service and the HTTP gateway hand each call to
``SessionAPI`` with a ``RequestContext``; ``AuthPolicy`` decides there, so a
gRPC and an HTTP caller always get the same answer.

The hooks are async callables from ``ServeOptions``. They deny by raising
``Unauthenticated`` or ``PermissionDenied`` (returning ``False`` from a
``can_*`` hook also denies). Example::

    async def get_current_user(ctx: RequestContext) -> str:
        token = ctx.bearer_token()
        if token is None:
            raise Unauthenticated("a bearer token is required")
        return await users.lookup(token)        # stored as the session's created_by

    async def can_close_session(ctx: RequestContext, session: SessionRecord | None) -> None:
        if session is not None and session.created_by != ctx.user:
            raise PermissionDenied("only the user who started a session may close it")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentplane.core.errors import LauncherError
from agentplane.core.models import SessionRecord


class Unauthenticated(LauncherError):
    """The caller did not prove who it is (gRPC UNAUTHENTICATED, HTTP 401)."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(LauncherError):
    """The caller may not do this (gRPC PERMISSION_DENIED, HTTP 403)."""

    reason = "PERMISSION_DENIED"


class Refused(LauncherError):
    """A hook refused with a status of its own choosing.

    ``code`` is the gRPC status code (``google.rpc.Code``), ``reason`` the
    ``ErrorInfo`` reason; ``retry_after`` (seconds) becomes ``RetryInfo``. What
    a FastAPI-style callback's ``HTTPException`` becomes when its status is
    neither 401 nor 403 (429: RESOURCE_EXHAUSTED, say).
    """

    def __init__(
        self, code: int, reason: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.retry_after = retry_after


@dataclass(slots=True)  # not frozen: one is built per call, and frozen costs a setattr a field
class RequestContext:
    """What the server knows about the caller of one RPC.

    ``metadata`` has lower-case keys (gRPC metadata, or HTTP headers as the
    gateway forwards them); ``user`` is what ``get_current_user`` returned;
    ``path_fields`` the request's ``call_id`` and ``session_id`` where the RPC
    names them (what the HTTP routes carry in their path), set by ``SessionAPI``.
    Read-only by agreement: each step of a call (authenticated, naming its
    ids) gets a new one, and a hook must not change the one it is given.
    """

    method: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    peer: str | None = None
    user: Any = None
    path_fields: Mapping[str, str] = field(default_factory=dict)

    def bearer_token(self) -> str | None:
        """The token of an ``authorization: Bearer <token>`` entry, if any."""
        value = self.metadata.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()


GetCurrentUser = Callable[[RequestContext], Awaitable[Any]]
SessionCheck = Callable[[RequestContext, SessionRecord | None], Awaitable[Any]]
StartCheck = Callable[[RequestContext], Awaitable[Any]]


def user_id(user: Any) -> str:
    """The string stored as ``created_by`` for a user object."""
    if user is None:
        return ""
    if isinstance(user, str):
        return user
    ident = getattr(user, "id", None)
    return str(ident if ident is not None else user)


class AuthPolicy:
    """Applies the bearer token, the user hook and the permission hooks.

    ``api_token`` (from ``AGENTPLANE_API_TOKEN`` by default) switches on the
    built-in check: every call needs ``authorization: Bearer <api_token>``.
    """

    def __init__(
        self,
        *,
        api_token: str | None = None,
        get_current_user: GetCurrentUser | None = None,
        can_start_session: StartCheck | None = None,
        can_close_session: SessionCheck | None = None,
        can_view_session: SessionCheck | None = None,
        can_view_metrics: SessionCheck | None = None,
        close_token_secret: bytes,
    ) -> None:
        self._api_token = api_token or None
        self._get_current_user = get_current_user
        self._can_start = can_start_session
        self._can_close = can_close_session
        self._can_view = can_view_session
        self._can_view_metrics = can_view_metrics
        self._secret = close_token_secret
        # Without a token and hooks nothing ever reads a call's context.
        self.reads_context = api_token is not None or any(
            hook is not None
            for hook in (
                get_current_user,
                can_start_session,
                can_close_session,
                can_view_session,
                can_view_metrics,
            )
        )

    @property
    def enabled(self) -> bool:
        """True when callers must identify themselves (close tokens are issued)."""
        return self._api_token is not None or self._get_current_user is not None

    async def authenticate(self, ctx: RequestContext) -> RequestContext:
        """Check credentials and resolve the user; returns ctx with ``user`` set."""
        if self._api_token is not None:
            token = ctx.bearer_token()
            if token is None:
                raise Unauthenticated("missing bearer token: send 'authorization: Bearer <token>'")
            if not hmac.compare_digest(token.encode(), self._api_token.encode()):
                raise Unauthenticated("invalid bearer token")
        user: Any = None
        if self._get_current_user is not None:
            user = await self._get_current_user(ctx)
        # The constructor, not dataclasses.replace: a third of the cost.
        return RequestContext(ctx.method, ctx.metadata, ctx.peer, user, ctx.path_fields)

    @staticmethod
    async def _apply(check: Callable[..., Awaitable[Any]] | None, what: str, *args: Any) -> None:
        if check is None:
            return
        if await check(*args) is False:
            raise PermissionDenied(f"not allowed to {what}")

    # Each check tests for its hook before making the _apply coroutine.
    async def check_start(self, ctx: RequestContext) -> None:
        if self._can_start is not None:
            await self._apply(self._can_start, "start a session", ctx)

    async def check_close(self, ctx: RequestContext, session: SessionRecord | None) -> None:
        if self._can_close is not None:
            await self._apply(self._can_close, "close this session", ctx, session)

    async def check_view(self, ctx: RequestContext, session: SessionRecord | None) -> None:
        if self._can_view is not None:
            await self._apply(self._can_view, "view this session", ctx, session)

    async def check_view_metrics(self, ctx: RequestContext, session: SessionRecord | None) -> None:
        if self._can_view_metrics is not None:
            await self._apply(self._can_view_metrics, "view this session's metrics", ctx, session)

    def close_token(self, session_id: str) -> str:
        """The secret that lets its holder close ``session_id`` and nothing else."""
        digest = hmac.new(self._secret, session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def close_token_valid(self, session_id: str, token: str) -> bool:
        return hmac.compare_digest(self.close_token(session_id).encode(), token.encode())
