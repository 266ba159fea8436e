"""The HTTP gateway's backend inside ``agentplane serve``: SessionAPI, no network hop.

Errors take the same one path as over gRPC (``agentplane.service.status``),
raised as the gateway's ``RpcError`` with no gRPC detour, so an HTTP caller of
the embedded gateway gets exactly the status and details an HTTP caller of a
standalone gateway (which proxies over gRPC) gets, unexpected errors included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

from google.protobuf.message import Message
from grpclib.const import Status

from agentplane.core import AgentLauncher
from agentplane.gateway.backend import CallInfo
from agentplane.gateway.bindings import Binding
from agentplane.gateway.errors import RpcError
from agentplane.service.api import SessionAPI
from agentplane.service.auth import RequestContext
from agentplane.service.status import ErrorStatus, error_status

_SERVICE = "/agentplane.v1.SessionService/"


class InProcessBackend:
    """Answers the gateway's calls with the server's own ``SessionAPI``."""

    # Get answers the same message while a session is unchanged (GetAnswers):
    # the gateway renders it once. The other answers are new each call.
    shared_answers = frozenset({_SERVICE + "Get"})

    def __init__(self, api: SessionAPI, launcher: AgentLauncher) -> None:
        self._launcher = launcher
        self._unary: dict[str, Callable[[Any, RequestContext], Awaitable[Message]]] = {
            _SERVICE + "Start": api.start,
            _SERVICE + "Close": api.close,
            _SERVICE + "Get": api.get,
            _SERVICE + "Metrics": api.metrics,
            _SERVICE + "ListSessions": api.list_sessions,
        }
        self._streams: dict[
            str, Callable[[Any, RequestContext, Any], Awaitable[AsyncIterator[Any]]]
        ]
        self._streams = {_SERVICE + "StreamEvents": api.open_events}

    async def unary(self, binding: Binding, request: Message, call: CallInfo) -> Message:
        handler = self._unary.get(binding.rpc_path)
        if handler is None:
            raise RpcError(Status.UNIMPLEMENTED, f"{binding.rpc_path} is not served here")
        context = RequestContext(binding.rpc_path, _Metadata(call), call.peer)
        try:
            return await handler(request, context)
        except Exception as error:  # cancellation (a BaseException) goes on as it is
            raise rpc_error(error_status(error, binding.rpc_path)) from None

    async def open_stream(
        self, binding: Binding, request: Message, call: CallInfo
    ) -> AsyncIterator[Message]:
        opener = self._streams.get(binding.rpc_path)
        if opener is None:
            raise RpcError(Status.UNIMPLEMENTED, f"{binding.rpc_path} is not served here")
        context = RequestContext(binding.rpc_path, _Metadata(call), call.peer)
        try:
            # Caught-up watchers' events go out through call.live when it can.
            events = await opener(request, context, call.live)
        except Exception as error:
            raise rpc_error(error_status(error, binding.rpc_path)) from None
        return events  # what it raises later: stream_error

    def stream_error(self, binding: Binding, error: Exception) -> RpcError:
        """A failure of an open stream, as the gateway sends it (the one error table)."""
        return rpc_error(error_status(error, binding.rpc_path))

    async def ready(self) -> bool:
        return self._launcher.accepting

    async def aclose(self) -> None:
        pass


class _Metadata(Mapping[str, str]):
    """The call's metadata as a dict, built when a hook first reads it (never, without auth)."""

    __slots__ = ("_call", "_dict")

    def __init__(self, call: CallInfo) -> None:
        self._call = call
        self._dict: dict[str, str] | None = None

    def _built(self) -> dict[str, str]:
        if self._dict is None:
            self._dict = dict(self._call.metadata)
        return self._dict

    def __getitem__(self, key: str) -> str:
        return self._built()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._built().get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())

    def __repr__(self) -> str:
        return repr(self._built())


def rpc_error(status: ErrorStatus) -> RpcError:
    """``status`` as the gateway renders it (an empty message reads as the code's name,
    as it does when the status came over gRPC)."""
    code = Status(status.code)
    return RpcError(code, status.message or code.name, status.details)
