"""2,000 Start/Close cycles over gRPC leave no tasks, no sessions and little memory behind."""

from __future__ import annotations

import asyncio
import gc

import psutil
import pytest

import agentplane.clients.betterproto as bp

from .conftest import Clients
from .support import Servers, Toy

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
async def test_start_close_cycles_do_not_leak(toy: Toy, serve: Servers, clients: Clients) -> None:
    toy.keep = False  # the harness itself must not hold on to sessions
    served = await serve(toy.launcher(max_concurrent_sessions=WORKERS))
    stub = bp.SessionServiceStub(clients.grpclib(served.port))
    process = psutil.Process()

    # Warm up (connection, codecs, allocator pools), then take the baseline.
    await asyncio.gather(*(_cycles(stub, -w - 1, 25) for w in range(WORKERS)))
    await asyncio.sleep(0.1)
    gc.collect()
    tasks_before = len(asyncio.all_tasks())
    rss_before = process.memory_info().rss

    per_worker = CYCLES // WORKERS
    await asyncio.wait_for(
        asyncio.gather(*(_cycles(stub, w, per_worker) for w in range(WORKERS))), 60
    )

    for _ in range(100):
        if len(asyncio.all_tasks()) <= tasks_before:
            break
        await asyncio.sleep(0.02)
    gc.collect()
    assert len(asyncio.all_tasks()) <= tasks_before
    stats = served.launcher.stats()
    assert stats.in_flight == 0
    assert stats.started == CYCLES + 25 * WORKERS
    assert stats.ended_by_reason == {"CLOSED_BY_REQUEST": stats.started}
    assert not toy.contexts
    growth = process.memory_info().rss - rss_before
    print(f"RSS growth over {CYCLES} cycles: {growth / MIB:.1f} MiB")
    assert growth < 50 * MIB, f"RSS grew by {growth / MIB:.1f} MiB"
