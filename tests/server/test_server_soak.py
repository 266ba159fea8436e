"""2,000 Start/Close cycles over gRPC leave no tasks, no sessions and little memory behind."""

from __future__ import annotations

import asyncio
import gc

import psutil
import pytest

import agentplane.clients.betterproto as bp
from tests.support import ServerAgents, Servers, settle, wait_until

from .conftest import Clients

CYCLES = 2_000
WORKERS = 8
MIB = 1024 * 1024


async def _cycles(stub: bp.SessionServiceStub, worker: int, count: int) -> None:
    for n in range(count):
        started = await stub.start(bp.StartRequest(call_id=f"soak-{worker}-{n}"), timeout=10)
        closed = await stub.close(bp.CloseRequest(session_id=started.session_id), timeout=10)
        assert closed.session is not None
        assert closed.session.end_reason == bp.EndReason.CLOSED_BY_REQUEST


@pytest.mark.slow
async def test_start_close_cycles_do_not_leak(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    toy.keep = False  # the harness itself must not hold on to sessions
    served = await serve(toy.launcher(max_concurrent_sessions=WORKERS))
    stub = served.stub
    process = psutil.Process()

    # Warm up (connection, codecs, allocator pools), then take the baseline.
    await asyncio.gather(*(_cycles(stub, -w - 1, 25) for w in range(WORKERS)))
    # Every Close was answered with its ended session: nothing of the warm-up is
    # still running but callbacks already scheduled, which settle() lets finish.
    assert served.launcher.stats().in_flight == 0
    await settle()
    gc.collect()
    tasks_before = len(asyncio.all_tasks())
    rss_before = process.memory_info().rss

    per_worker = CYCLES // WORKERS
    await asyncio.wait_for(
        asyncio.gather(*(_cycles(stub, w, per_worker) for w in range(WORKERS))), 60
    )

    await wait_until(lambda: len(asyncio.all_tasks()) <= tasks_before)
    gc.collect()
    stats = served.launcher.stats()
    assert stats.in_flight == 0
    assert stats.started == CYCLES + 25 * WORKERS
    assert stats.ended_by_reason == {"CLOSED_BY_REQUEST": stats.started}
    assert not toy.contexts
    growth = process.memory_info().rss - rss_before
    print(f"RSS growth over {CYCLES} cycles: {growth / MIB:.1f} MiB")
    assert growth < 50 * MIB, f"RSS grew by {growth / MIB:.1f} MiB"
