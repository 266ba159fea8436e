"""What the gateway calls: a ``Backend`` answers RPCs for it.

Every implementation shares every line of HTTP handling: one inside the
server's own process (no network hop), or ``GrpcUpstream``, which proxies over
gRPC. Each raises ``RpcError`` with the server's status and details, so HTTP
callers get the same answers either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from google.protobuf.message import Message

from .bindings import Binding
from .headers import forwarded_metadata


class CallInfo:
    """Who is calling: forwarded metadata (lower-case keys) and the client address.

    From an HTTP request (``from_http``) the metadata is built from the headers
    the first time it is read (``headers.forwarded_metadata``): a backend whose
    calls need none of it (no auth configured) never pays for it.

    ``live`` is set for a server stream whose HTTP server can write the
    response body at once (``streaming.LiveMessages``): a backend may hand it
    a message instead of yielding it; True means it was sent, False that the
    backend must yield it. It never blocks.
    """

    __slots__ = ("_client", "_headers", "_metadata", "live", "peer")

    def __init__(self, metadata: Sequence[tuple[str, str]], peer: str | None) -> None:
        self._metadata: Sequence[tuple[str, str]] | None = metadata
        self._headers: Sequence[tuple[bytes, bytes]] = ()
        self._client: str | None = None
        self.peer = peer
        self.live: Callable[[Message], bool] | None = None

    @classmethod
    def from_http(
        cls, headers: Sequence[tuple[bytes, bytes]], client: tuple[str, int] | None
    ) -> CallInfo:
        # Set field by field: one per request, and __init__ would set half of them twice.
        call = _new_call(cls)
        call._metadata = None
        call._headers = headers
        if client:
            call._client = client[0]
            call.peer = f"{client[0]}:{client[1]}"
        else:
            call._client = call.peer = None
        call.live = None
        return call

    @property
    def metadata(self) -> Sequence[tuple[str, str]]:
        if self._metadata is None:
            self._metadata = forwarded_metadata(self._headers, self._client)
        return self._metadata

    def __repr__(self) -> str:
        return f"CallInfo(metadata={self.metadata!r}, peer={self.peer!r})"


_new_call = object.__new__


class Backend(Protocol):
    """Answers the RPCs behind the HTTP bindings."""

    async def unary(self, binding: Binding, request: Message, call: CallInfo) -> Message:
        """One request, one response; raises ``RpcError``.

        A response must not be changed once returned. A backend that returns
        the same message object again for some RPCs (the embedded server, for
        a Get of a session that has not changed) may name their gRPC paths in
        ``shared_answers``; the gateway then remembers what it rendered for
        those and sends the same bytes again (``codec.RenderMemo``).
        """
        ...

    async def open_stream(
        self, binding: Binding, request: Message, call: CallInfo
    ) -> AsyncIterator[Message]:
        """Check and open a server stream.

        Errors known before the first message (authentication, NOT_FOUND, ...)
        are raised here; later ones by the iterator. Closing the iterator
        (``aclose()``) cancels the call at once. A yielded message must not be
        changed afterwards: the same object may be yielded to many streams, and
        the gateway renders it once for all of them (see ``streaming``).
        A backend may send messages through ``call.live`` rather than yield
        them, when it has one (see ``CallInfo``): in order, never both ways
        for one message. The iterator raises ``RpcError``; a backend whose iterator raises
        its own exceptions instead may define ``stream_error(binding,
        exception) -> RpcError``, which the gateway then applies to them
        (one call at the end of a stream, not a wrapper around every message).
        """
        ...

    async def ready(self) -> bool:
        """Whether the service behind the gateway is ready for new work now."""
        ...

    async def aclose(self) -> None:
        """Release connections; calls in flight end."""
        ...
