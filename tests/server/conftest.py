"""Fixtures of the server integration tests: real servers, real clients, real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
from grpclib.client import Channel
from grpclib.config import Configuration

from agentplane.clients.grpcio import session_service_pb2_grpc as pb_grpc
from tests.support import ServerAgents, Servers


@pytest.fixture
def toy() -> ServerAgents:
    """The fake agents of the server tests (tests/support/agents.py)."""
    return ServerAgents()


@pytest.fixture
async def serve() -> AsyncIterator[Servers]:
    """``await serve(launcher, options)`` serves a launcher on 127.0.0.1:0 (gRPC only):
    ``agentplane.testing.serving`` through tests/support, stopped when the test ends."""
    servers = Servers()
    try:
        yield servers
    finally:
        await servers.aclose()


@dataclass
class Clients:
    """Client channels of every stack; all closed when the test ends."""

    _grpclib: list[Channel] = field(default_factory=list)
    _aio: list[grpc.aio.Channel] = field(default_factory=list)
    _sync: list[grpc.Channel] = field(default_factory=list)

    def grpclib(self, port: int, config: Configuration | None = None) -> Channel:
        channel = Channel("127.0.0.1", port, config=config)
        self._grpclib.append(channel)
        return channel

    def aio(self, target: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(target)
        self._aio.append(channel)
        return channel

    def sync(self, target: str) -> grpc.Channel:
        channel = grpc.insecure_channel(target)
        self._sync.append(channel)
        return channel

    def aio_stub(self, target: str) -> pb_grpc.SessionServiceStub:
        return pb_grpc.SessionServiceStub(self.aio(target))

    def sync_stub(self, target: str) -> pb_grpc.SessionServiceStub:
        return pb_grpc.SessionServiceStub(self.sync(target))

    async def aclose(self) -> None:
        for channel in self._grpclib:
            channel.close()
        for aio_channel in self._aio:
            await aio_channel.close()
        for sync_channel in self._sync:
            sync_channel.close()


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    made = Clients()
    try:
        yield made
    finally:
        await made.aclose()
