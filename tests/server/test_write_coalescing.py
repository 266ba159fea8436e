"""Consecutive writes to one gRPC connection go out as one socket write (rpc/coalesce.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from agentplane.rpc.coalesce import CoalescingTransport, WriteBatch


class _Counting:
    """A real socket transport that records each write it is given."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@dataclass
class _Peer:
    """What the loopback server received on each connection, in order of arrival."""

    received: list[bytearray] = field(default_factory=list)
    closed: list[bool] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def until(self, condition: Callable[[], bool]) -> None:
        async def wait() -> None:
            async with self.changed:
                await self.changed.wait_for(condition)

        await asyncio.wait_for(wait(), 5)

    async def note(self) -> None:
        async with self.changed:
            self.changed.notify_all()


@pytest.fixture
async def link() -> AsyncIterator[tuple[_Peer, list[_Counting], WriteBatch]]:
    """Two loopback connections whose client sides share one WriteBatch."""
    peer = _Peer()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(peer.received)
        peer.received.append(bytearray())
        peer.closed.append(False)
        await peer.note()
        while chunk := await reader.read(65536):
            peer.received[index] += chunk
            await peer.note()
        peer.closed[index] = True
        await peer.note()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    sides: list[_Counting] = []
    for _ in range(2):
        transport, _protocol = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        sides.append(_Counting(transport))
        await peer.until(lambda: len(peer.received) == len(sides))
    try:
        yield peer, sides, WriteBatch()
    finally:
        for side in sides:
            side.transport.abort()
        server.close()
        await server.wait_closed()


def _wrap(side: _Counting, batch: WriteBatch) -> CoalescingTransport:
    return CoalescingTransport(side, batch)  # type: ignore[arg-type]


async def test_a_run_of_writes_is_one_write_sent_when_another_connection_writes(
    link: tuple[_Peer, list[_Counting], WriteBatch],
) -> None:
    peer, (a, b), batch = link
    first, second = _wrap(a, batch), _wrap(b, batch)
    first.write(b"one ")
    first.write(b"")
    first.write(b"two")
    assert a.writes == []  # still gathering: no other connection wrote yet
    second.write(b"x")
    assert a.writes == [b"one two"]
    assert b.writes == []
    await asyncio.sleep(0)  # one pass of the loop: its end sends the rest
    assert b.writes == [b"x"]
    await peer.until(lambda: peer.received[0] == b"one two" and peer.received[1] == b"x")


async def test_the_end_of_the_loop_pass_sends_a_lone_run(
    link: tuple[_Peer, list[_Counting], WriteBatch],
) -> None:
    peer, (a, _), batch = link
    first = _wrap(a, batch)
    first.write(b"alone")
    first.write(b"!")
    await asyncio.sleep(0)
    assert a.writes == [b"alone!"]
    first.write(b" again")
    await asyncio.sleep(0)
    assert a.writes == [b"alone!", b" again"]
    await peer.until(lambda: peer.received[0] == b"alone! again")


async def test_close_sends_what_is_pending_first(
    link: tuple[_Peer, list[_Counting], WriteBatch],
) -> None:
    peer, (a, _), batch = link
    first = _wrap(a, batch)
    first.write(b"last words")
    first.close()
    await peer.until(lambda: peer.closed[0])
    assert peer.received[0] == b"last words"
    assert batch.current is None


async def test_abort_drops_what_is_pending(
    link: tuple[_Peer, list[_Counting], WriteBatch],
) -> None:
    peer, (a, b), batch = link
    first = _wrap(a, batch)
    first.write(b"never sent")
    first.abort()
    await peer.until(lambda: peer.closed[0])
    assert peer.received[0] == b""
    assert a.writes == []
    # The batch forgot it: another connection's write does not touch it.
    _wrap(b, batch).write(b"x")
    assert a.writes == []


async def test_writes_to_a_closed_connection_are_dropped(
    link: tuple[_Peer, list[_Counting], WriteBatch],
) -> None:
    _, (a, _), batch = link
    first = _wrap(a, batch)
    first.write(b"late")
    a.transport.close()
    await asyncio.sleep(0)
    assert a.writes == []
    assert first.is_closing()  # the rest passes through
