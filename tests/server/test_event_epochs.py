"""A watcher that resumes against a restarted server is told of the gap, never skipped (issue 12)."""

from __future__ import annotations

import asyncio

from agentplane.clients.betterproto import StartRequest, StreamEventsRequest, StreamEventsResponse
from agentplane.testing import serving
from tests.support import FakeAgents


async def _read(
    stub: object, request: StreamEventsRequest, count: int
) -> list[StreamEventsResponse]:
    seen: list[StreamEventsResponse] = []

    async def read() -> None:
        async for event in stub.stream_events(request):  # type: ignore[attr-defined]
            seen.append(event)
            if len(seen) == count:
                return

    await asyncio.wait_for(read(), 10)
    return seen


async def test_a_resume_against_a_restarted_server_starts_with_a_gap() -> None:
    # The server before the restart: a watcher reads up to cursor 2.
    async with serving(FakeAgents().launcher()) as first:
        for n in range(2):  # one event (started) each
            await first.stub.start(StartRequest(call_id=f"before-{n}"), timeout=5)
        before = await _read(first.stub, StreamEventsRequest(after_cursor=0), 2)
    old_epoch, old_cursor = before[-1].epoch, before[-1].cursor
    assert old_epoch and old_cursor == 2

    # The restarted server has already published more than that.
    async with serving(FakeAgents().launcher()) as second:
        for n in range(4):
            await second.stub.start(StartRequest(call_id=f"after-{n}"), timeout=5)
        seen = await _read(
            second.stub, StreamEventsRequest(after_cursor=old_cursor, epoch=old_epoch), 1 + 4
        )
        assert seen[0].gap is not None and seen[0].gap.after_cursor == old_cursor
        assert seen[0].epoch != old_epoch
        # Every event of the new server, from its first: cursors 1 and 2 are not skipped.
        assert [e.cursor for e in seen[1:]] == [1, 2, 3, 4]
        assert {e.epoch for e in seen} == {seen[0].epoch}

        # Resuming with the new epoch continues without a gap or a duplicate.
        again = await _read(
            second.stub, StreamEventsRequest(after_cursor=2, epoch=seen[-1].epoch), 2
        )
        assert [e.cursor for e in again] == [3, 4]
