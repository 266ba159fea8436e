"""What the gateway calls: a ``Backend`` answers RPCs for it.

Every implementation shares every line of HTTP handling: one inside the
server's own process (no network hop), or ``GrpcUpstream``, which proxies over
gRPC. Each raises ``RpcError`` with the server's status and details, so HTTP
callers get the same answers either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from .bindings import Binding


@dataclass(frozen=True, slots=True)
class CallInfo:
    """Who is calling: forwarded metadata (lower-case keys) and the client address."""

    metadata: Sequence[tuple[str, str]]
    peer: str | None


class Backend(Protocol):
    """Answers the RPCs behind the HTTP bindings."""

    async def unary(self, binding: Binding, request: Message, call: CallInfo) -> Message:
        """One request, one response; raises ``RpcError``."""
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
        """
        ...

    async def ready(self) -> bool:
        """Whether the service behind the gateway is ready for new work now."""
        ...

    async def aclose(self) -> None:
        """Release connections; calls in flight end."""
        ...
