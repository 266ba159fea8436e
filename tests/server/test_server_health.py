"""grpc.health.v1: readiness ("" and SessionService) and liveness as the launcher changes.

Readiness, asked as service "" (Kubernetes' gRPC probe's default) or
``agentplane.v1.SessionService``, is SERVING only while a Start could be
admitted: warmed up, below capacity and not draining. Service ``liveness``
stays SERVING while the process serves (decision 28).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from agentplane.clients.grpcio import session_service_pb2 as pb
from tests.support import ServerAgents, Servers, wait_until

from .conftest import Clients
from .support import SERVICE, health_check

LIVENESS = "liveness"
READINESS = ("", SERVICE)

SERVING = HealthCheckResponse.SERVING
NOT_SERVING = HealthCheckResponse.NOT_SERVING


async def check(channel: Channel, service: str) -> int:
    reply = await HealthStub(channel).Check(HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


async def readiness(channel: Channel) -> int:
    """The status of both readiness services, which must agree."""
    statuses = {await check(channel, service) for service in READINESS}
    assert len(statuses) == 1, statuses
    return statuses.pop()


async def test_serving_for_liveness_and_readiness(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    channel = served.channel
    assert await readiness(channel) == SERVING
    assert await check(channel, LIVENESS) == SERVING


async def test_not_serving_at_capacity_and_back_after_close(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher(max_concurrent_sessions=1))
    channel = served.channel
    stub = clients.aio_stub(served.grpc_target)

    started = await stub.Start(pb.StartRequest(call_id="only"), timeout=5)
    assert await readiness(channel) == NOT_SERVING
    assert await check(channel, LIVENESS) == SERVING

    await stub.Close(pb.CloseRequest(session_id=started.session_id), timeout=5)
    assert await readiness(channel) == SERVING


async def test_not_serving_as_soon_as_drain_starts(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    channel = served.channel
    session = await served.launcher.start_session("stays")
    await toy.context(session.session_id)

    drain = asyncio.create_task(served.launcher.drain(timeout=5))
    await wait_until(lambda: served.launcher.draining)  # drain() has begun; the session still runs
    assert not drain.done()
    assert await readiness(channel) == NOT_SERVING
    assert await check(channel, LIVENESS) == SERVING
    assert served.launcher.stats().in_flight == 1

    await served.launcher.close_session(session.session_id)
    await asyncio.wait_for(drain, 5)
    assert await readiness(channel) == NOT_SERVING
    assert await check(channel, LIVENESS) == SERVING


@pytest.mark.parametrize("service", READINESS)
async def test_watch_streams_every_change(
    service: str, toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher(max_concurrent_sessions=1))
    channel = served.channel
    stub = clients.aio_stub(served.grpc_target)

    async with HealthStub(channel).Watch.open(timeout=10) as watch:
        await watch.send_message(HealthCheckRequest(service=service), end=True)

        async def next_status() -> int:
            reply = await asyncio.wait_for(watch.recv_message(), 5)
            assert reply is not None
            return int(reply.status)

        assert await next_status() == SERVING
        started = await stub.Start(pb.StartRequest(call_id="w"), timeout=5)
        assert await next_status() == NOT_SERVING
        await stub.Close(pb.CloseRequest(session_id=started.session_id), timeout=5)
        assert await next_status() == SERVING
        drain = asyncio.create_task(served.launcher.drain(timeout=1))
        assert await next_status() == NOT_SERVING
        await drain
        await watch.cancel()


async def test_not_serving_until_warmed_up(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    warm = asyncio.Event()

    async def warmup() -> None:
        await warm.wait()

    launcher = toy.launcher(warmup=warmup)
    served = await serve(launcher, start=False)  # listening; the Runner's warmup waits
    channel = served.channel
    stub = clients.aio_stub(served.grpc_target)

    assert await readiness(channel) == NOT_SERVING
    assert await check(channel, LIVENESS) == SERVING
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Start(pb.StartRequest(call_id="early"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "warming up" in (refused.value.details() or "")

    warm.set()
    await wait_until(lambda: launcher.accepting)
    assert await readiness(channel) == SERVING
    await stub.Start(pb.StartRequest(call_id="on-time"), timeout=5)


async def test_an_unknown_service_is_not_found(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    served = await serve(toy.launcher())
    with pytest.raises(GRPCError) as unknown:
        await check(served.channel, "no.such.Service")
    assert unknown.value.status is Status.NOT_FOUND


async def test_grpcio_health_check_during_drain(
    toy: ServerAgents, serve: Servers, clients: Clients
) -> None:
    """What Kubernetes' gRPC probe (grpc-go) and grpcio clients see, over a grpcio channel.

    (grpcio-health-checking's stub cannot be imported next to grpclib's health
    messages: both register grpc.health.v1 in protobuf's default pool. The call
    is the same: grpcio's channel, the same request and response messages.)
    """
    served = await serve(toy.launcher())
    channel = clients.sync(served.grpc_target)

    async def statuses() -> list[int]:
        return [
            await asyncio.to_thread(health_check, channel, service)
            for service in (*READINESS, LIVENESS)
        ]

    assert await statuses() == [SERVING] * 3
    session = await served.launcher.start_session("stays")
    await toy.context(session.session_id)
    drain = asyncio.create_task(served.launcher.drain(timeout=5))
    await wait_until(lambda: served.launcher.draining)
    # Draining: the probe's default service "" takes the pod out of the
    # endpoints; liveness keeps it from being restarted mid-drain.
    assert await statuses() == [NOT_SERVING, NOT_SERVING, SERVING]
    await served.launcher.close_session(session.session_id)
    await asyncio.wait_for(drain, 5)
    assert (await statuses())[-1] == SERVING
