"""``GrpcUpstream``: the gateway's backend when it proxies to a remote server.

Generic over the bindings: each call goes out by its gRPC path with the
binding's protobuf classes, so a newly annotated RPC needs no code here.
Every unary call has a deadline; streams live until either side ends them.
Readiness is the upstream's ``grpc.health.v1`` status of ``service`` ("", the
server as a whole, unless told which service to ask about).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from ssl import SSLContext

from google.protobuf.message import Message
from grpclib.client import Channel, Stream
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from .backend import CallInfo
from .bindings import Binding
from .errors import RpcError


class GrpcUpstream:
    """Proxies calls to a gRPC server at ``host:port``.

    Example::

        upstream = GrpcUpstream("10.0.0.5", 50051, service="example.v1.Shelves")
        app = create_app(upstream, services=[shelves_service], ...)
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 60.0,
        ready_timeout: float = 2.0,
        service: str = "",
        ssl: SSLContext | None = None,
    ) -> None:
        self.address = f"{host}:{port}"
        # ssl: TLS to the upstream (the context's ALPN must offer h2; with a
        # client certificate loaded, mutual TLS).
        self._channel = Channel(host, port, ssl=ssl)
        self._timeout = timeout
        self._ready_timeout = ready_timeout
        self._service = service

    def _unavailable(self, error: BaseException) -> RpcError:
        detail = str(error) or type(error).__name__
        return RpcError(Status.UNAVAILABLE, f"upstream {self.address} unavailable: {detail}")

    async def unary(self, binding: Binding, request: Message, call: CallInfo) -> Message:
        try:
            async with self._channel.request(
                binding.rpc_path,
                Cardinality.UNARY_UNARY,
                binding.request_type,
                binding.response_type,
                timeout=self._timeout,
                metadata=list(call.metadata),
            ) as stream:
                await stream.send_message(request, end=True)
                reply = await stream.recv_message()
                if reply is None:
                    raise RpcError(Status.INTERNAL, "upstream sent no response")
                return reply
        except GRPCError as error:
            raise RpcError.from_grpc(error) from None
        except TimeoutError:
            raise RpcError(
                Status.DEADLINE_EXCEEDED, f"upstream did not answer within {self._timeout:g} s"
            ) from None
        except (OSError, StreamTerminatedError) as error:
            raise self._unavailable(error) from None

    async def open_stream(
        self, binding: Binding, request: Message, call: CallInfo
    ) -> AsyncIterator[Message]:
        stream: Stream[Message, Message] = self._channel.request(
            binding.rpc_path,
            Cardinality.UNARY_STREAM,
            binding.request_type,
            binding.response_type,
            metadata=list(call.metadata),
        )
        await stream.__aenter__()
        try:
            await stream.send_message(request, end=True)
            # The server answers headers once its checks passed, or an error.
            await asyncio.wait_for(stream.recv_initial_metadata(), self._timeout)
        except BaseException as error:
            await _abandon(stream, error)
            if isinstance(error, GRPCError):
                raise RpcError.from_grpc(error) from None
            if isinstance(error, TimeoutError):
                raise RpcError(
                    Status.DEADLINE_EXCEEDED, "upstream did not open the stream in time"
                ) from None
            if isinstance(error, (OSError, StreamTerminatedError)):
                raise self._unavailable(error) from None
            raise
        return self._messages(stream)

    async def _messages(self, stream: Stream[Message, Message]) -> AsyncIterator[Message]:
        finished = False
        try:
            while True:
                message = await stream.recv_message()
                if message is None:
                    await stream.recv_trailing_metadata()
                    finished = True
                    return
                yield message
        except GRPCError as error:
            finished = True
            raise RpcError.from_grpc(error) from None
        except (OSError, StreamTerminatedError) as error:
            raise self._unavailable(error) from None
        finally:
            if finished:
                await stream.__aexit__(None, None, None)
            else:
                # Closed early (the HTTP client went away): resetting the
                # HTTP/2 stream cancels the call on the server at once.
                await _abandon(stream, asyncio.CancelledError())

    async def ready(self) -> bool:
        try:
            reply = await HealthStub(self._channel).Check(
                HealthCheckRequest(service=self._service), timeout=self._ready_timeout
            )
        except (GRPCError, TimeoutError, OSError, StreamTerminatedError):
            return False
        return bool(reply.status == HealthCheckResponse.SERVING)

    async def aclose(self) -> None:
        self._channel.close()


async def _abandon(stream: Stream[Message, Message], error: BaseException) -> None:
    """Leave a stream early: grpclib resets it when exited with an error."""
    with contextlib.suppress(Exception):
        await stream.__aexit__(type(error), error, error.__traceback__)
