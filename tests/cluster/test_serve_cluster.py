"""Three ``agentplane serve`` processes on one redis-server act as one admission domain."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import redis.asyncio as aioredis

from agentplane.clients.grpcio import session_pb2
from agentplane.clients.grpcio import session_service_pb2 as pb
from agentplane.clients.grpcio import session_service_pb2_grpc as pb_grpc
from agentplane.cluster import ClusterKeys
from tests.server.support import Proc, console_script
from tests.support import wait_until

from .conftest import free_port, start_redis

PORTS = ("--host", "127.0.0.1", "--port", "0", "--grpc-port", "0", "--no-demo-page")


@contextlib.contextmanager
def serve_nodes(redis_url: str, keys: ClusterKeys, count: int = 3) -> Iterator[list[Proc]]:
    """``count`` real ``agentplane serve`` processes in one cluster, once all are ready."""
    started = [
        Proc(
            [
                console_script("agentplane"),
                "serve",
                "--agent",
                "tests.cluster.cluster_agent:make_launcher",
                *PORTS,
                "--redis-url",
                redis_url,
                "--redis-prefix",
                keys.prefix,  # each test its own cluster
                "--http-log-level",
                "WARNING",
            ]
        )
        for _ in range(count)
    ]
    try:
        for proc in started:
            proc.wait_for("agentplane ready", timeout=30)
        yield started
    finally:
        for proc in started:
            with contextlib.suppress(Exception):
                proc.send(signal.SIGTERM)
        for proc in started:
            # The second signal ends what still runs at once (no 30 s drain).
            with contextlib.suppress(Exception):
                proc.wait_for("draining", timeout=5)
                proc.send(signal.SIGTERM)
        for proc in started:
            with contextlib.suppress(Exception):
                proc.wait(20)
            proc.kill()


@contextlib.asynccontextmanager
async def grpc_stubs(procs: list[Proc]) -> AsyncIterator[list[pb_grpc.SessionServiceStub]]:
    """A stub on its own channel for each node's gRPC port."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{proc.grpc_port()}") for proc in procs]
    try:
        yield [pb_grpc.SessionServiceStub(channel) for channel in channels]
    finally:
        for channel in channels:
            await channel.close()


@pytest.fixture
def nodes(redis_url: str, keys: ClusterKeys) -> Iterator[list[Proc]]:
    with serve_nodes(redis_url, keys) as started:
        yield started


async def _start(stub: pb_grpc.SessionServiceStub, call_id: str) -> str:
    try:
        await stub.Start(pb.StartRequest(call_id=call_id), timeout=30)
    except grpc.aio.AioRpcError as error:
        return error.code().name
    return "OK"


async def test_three_nodes_admit_exactly_the_cluster_limit(nodes: list[Proc]) -> None:
    async with grpc_stubs(nodes) as stubs:
        # 100 concurrent Starts at each node against a cluster-wide limit of 50.
        outcomes = await asyncio.gather(*(_start(stubs[n % 3], f"call-{n}") for n in range(300)))
        assert outcomes.count("OK") == 50, outcomes
        assert outcomes.count("RESOURCE_EXHAUSTED") == 250, [p.text()[-3000:] for p in nodes]
        # One session per call across the cluster: the same call on another node is refused.
        more = await asyncio.gather(*(_start(stubs[n], "shared") for n in range(3)))
        assert sorted(more) == ["RESOURCE_EXHAUSTED"] * 3  # the cluster is full


async def test_any_node_answers_get_for_any_session(nodes: list[Proc]) -> None:
    async with grpc_stubs(nodes) as stubs:
        started = await stubs[0].Start(pb.StartRequest(call_id="seen-everywhere"), timeout=30)
        sid = started.session_id
        for stub in stubs:
            got = await stub.Get(pb.GetRequest(session_id=sid), timeout=10)
            assert got.session.session_id == sid and got.session.call_id == "seen-everywhere"
        # Every node lists the whole cluster's sessions, in one order.
        other = (await stubs[1].Start(pb.StartRequest(call_id="listed"), timeout=30)).session_id
        for stub in stubs:
            listed = await stub.ListSessions(pb.ListSessionsRequest(), timeout=10)
            assert [s.session_id for s in listed.sessions] == [other, sid]
            in_call = await stub.ListSessions(
                pb.ListSessionsRequest(call_id="listed", page_size=1), timeout=10
            )
            assert [s.session_id for s in in_call.sessions] == [other]
            assert not in_call.next_page_token
        # The per-call limit is the cluster's: node 2 refuses a second session in the call.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stubs[2].Start(pb.StartRequest(call_id="seen-everywhere"), timeout=30)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "in the cluster" in (refused.value.details() or "")


async def test_a_killed_nodes_sessions_end_node_lost_and_free_their_slots(
    nodes: list[Proc],
) -> None:
    ports = [proc.grpc_port() for proc in nodes]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for port in ports[:2]]
    victim = grpc.aio.insecure_channel(f"127.0.0.1:{ports[2]}")
    try:
        survivor = pb_grpc.SessionServiceStub(channels[0])
        doomed = pb_grpc.SessionServiceStub(victim)
        ids = [
            (await doomed.Start(pb.StartRequest(call_id=f"lost-{n}"), timeout=30)).session_id
            for n in range(3)
        ]
        nodes[2].popen.kill()  # kill -9: no drain, no goodbye
        began = time.monotonic()

        async def all_lost() -> bool:
            for sid in ids:
                got = await survivor.Get(pb.GetRequest(session_id=sid), timeout=10)
                if got.session.end_reason != session_pb2.END_REASON_NODE_LOST:
                    return False
            return True

        # Three heartbeats (1 s each) make a node dead; the next sweep ends its sessions.
        await wait_until(all_lost, timeout=15, interval=0.1)
        took = time.monotonic() - began
        assert took < 8, f"NODE_LOST after {took:.1f} s"
        got = await survivor.Get(pb.GetRequest(session_id=ids[0]), timeout=10)
        assert got.session.state == session_pb2.SESSION_STATE_ENDED
        # Their slots are free: each call takes a new session (one per call) at once.
        for n in range(3):
            await survivor.Start(pb.StartRequest(call_id=f"lost-{n}"), timeout=30)
        assert "node_lost" in nodes[0].text() + nodes[1].text()
    finally:
        for channel in (*channels, victim):
            await channel.close()


async def test_close_and_metrics_through_any_node_reach_the_owner_at_once(
    nodes: list[Proc],
) -> None:
    async with grpc_stubs(nodes) as stubs:
        latencies = []
        for n in range(5):
            sid = (await stubs[2].Start(pb.StartRequest(call_id=f"far-{n}"), timeout=30)).session_id

            # Live metrics of a session running on node 2, read through node 0.
            async def counted(sid: str = sid) -> bool:
                got = await stubs[0].Metrics(pb.MetricsRequest(session_id=sid), timeout=10)
                return got.metrics.get("frames__total") == 7

            await wait_until(counted, timeout=10)
            began = time.monotonic()
            closed = await stubs[1].Close(pb.CloseRequest(session_id=sid), timeout=30)
            latencies.append(time.monotonic() - began)
            assert closed.session.state == session_pb2.SESSION_STATE_ENDED
            assert closed.session.end_reason == session_pb2.END_REASON_CLOSED_BY_REQUEST
        # The owner ended them (no poll: well under Vision Agents' 5 s).
        nodes[2].wait_for(r"session \S+ ended: closed_by_request")
        assert max(latencies) < 2, latencies
        # Closing an unknown session anywhere is NOT_FOUND, as on one node.
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stubs[0].Close(pb.CloseRequest(session_id="no-such-session"), timeout=10)
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND


def _kind(event: pb.StreamEventsResponse) -> str:
    return str(event.WhichOneof("event"))


async def test_a_watcher_sees_every_nodes_events_and_moves_between_nodes_with_its_cursor(
    nodes: list[Proc],
) -> None:
    async with grpc_stubs(nodes) as stubs:
        # A watcher of every session, on node 0, from its first event on.
        watch = stubs[0].StreamEvents(pb.StreamEventsRequest(after_cursor=0), timeout=60)
        sid = (await stubs[1].Start(pb.StartRequest(call_id="watched"), timeout=30)).session_id
        seen = []
        async for event in watch:
            seen.append(event)
            if _kind(event) == "started" and event.session_id == sid:
                break
        watch.cancel()  # its connection to node 0 drops
        assert all(_kind(e) != "gap" for e in seen)
        last = seen[-1]
        # Meanwhile the session is closed through node 2 ...
        await stubs[2].Close(pb.CloseRequest(session_id=sid), timeout=30)
        # ... and the watcher resumes on node 2 with its cursor and epoch: no gap, no duplicate.
        resumed = stubs[2].StreamEvents(
            pb.StreamEventsRequest(session_id=sid, after_cursor=last.cursor, epoch=last.epoch),
            timeout=30,
        )
        rest = [event async for event in resumed]
        assert [_kind(e) for e in rest] == ["state_changed", "state_changed", "ended"]
        assert rest[0].cursor > last.cursor and {e.epoch for e in rest} == {last.epoch}
        assert rest[-1].ended.session.end_reason == session_pb2.END_REASON_CLOSED_BY_REQUEST
        # The same events, under the same cursors, through the HTTP port of node 0.
        http_port = int(nodes[0].wait_for(r"agentplane HTTP listening on \S+:(\d+)").group(1))
        resume = {"accept": "text/event-stream", "last-event-id": f"{last.epoch}:{last.cursor}"}
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http,
            http.stream("GET", f"/sessions/{sid}/events", headers=resume) as response,
        ):
            assert response.status_code == 200
            ids = [line[4:] async for line in response.aiter_lines() if line.startswith("id: ")]
        assert ids == [f"{e.epoch}:{e.cursor}" for e in rest]


async def test_a_draining_node_places_new_starts_and_its_sessions_stay_visible(
    nodes: list[Proc],
) -> None:
    async with grpc_stubs(nodes) as stubs:
        held = (await stubs[0].Start(pb.StartRequest(call_id="held"), timeout=30)).session_id
        http_port = int(nodes[0].wait_for(r"agentplane HTTP listening on \S+:(\d+)").group(1))
        nodes[0].send(signal.SIGTERM)  # drains: its session keeps running
        nodes[0].wait_for("draining")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            assert (await http.get("/ready")).status_code == 400
            # A Start that reaches the draining node runs on another one.
            placed = await http.post("/sessions", json={"call_id": "during-drain"})
            assert placed.status_code == 201, placed.text
        placed_id = placed.json()["session_id"]
        line = f"session {placed_id} started"
        await wait_until(lambda: any(line in proc.text() for proc in nodes), timeout=10)
        assert [line in proc.text() for proc in nodes].count(True) == 1
        assert line not in nodes[0].text()
        # The draining node's session is visible from the others until it ends ...
        got = await stubs[1].Get(pb.GetRequest(session_id=held), timeout=10)
        assert got.session.state == session_pb2.SESSION_STATE_RUNNING
        # ... and closing it through another node lets the drain finish.
        await stubs[2].Close(pb.CloseRequest(session_id=held), timeout=30)
        assert nodes[0].wait(30) == 0
        got = await stubs[1].Get(pb.GetRequest(session_id=held), timeout=10)
        assert got.session.end_reason == session_pb2.END_REASON_CLOSED_BY_REQUEST


async def test_the_http_routes_of_any_node_answer_for_any_session(nodes: list[Proc]) -> None:
    ports = [proc.grpc_port() for proc in nodes]
    http_ports = [
        int(proc.wait_for(r"agentplane HTTP listening on \S+:(\d+)").group(1)) for proc in nodes
    ]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ports[2]}") as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        sid = (await stub.Start(pb.StartRequest(call_id="over-http"), timeout=30)).session_id
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_ports[0]}") as http:
        got = await http.get(f"/calls/over-http/sessions/{sid}")
        assert got.status_code == 200 and got.json()["state"] == "SESSION_STATE_RUNNING"

        async def counted() -> bool:
            metrics = await http.get(f"/sessions/{sid}/metrics")
            return bool(metrics.json()["metrics"].get("frames__total") == 7)

        await wait_until(counted, timeout=10)  # live metrics from node 2
        closed = await http.delete(f"/sessions/{sid}")
        assert closed.status_code == 200
        assert closed.json()["end_reason"] == "END_REASON_CLOSED_BY_REQUEST"
        # The same errors as one node gives.
        missing = await http.get("/sessions/6e1f1c5a-0000-4000-8000-000000000000")
        assert missing.status_code == 404 and "not found" in missing.json()["message"]
    nodes[2].wait_for(rf"session {sid} ended: closed_by_request")


@pytest.mark.parametrize("keeps_data", [True, False], ids=["snapshot", "empty"])
async def test_a_redis_outage_under_load_loses_no_session_from_view(
    tmp_path: Path, keys: ClusterKeys, keeps_data: bool
) -> None:
    port = free_port()
    redis = start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        with serve_nodes(url, keys) as procs:
            http_ports = [
                int(p.wait_for(r"agentplane HTTP listening on \S+:(\d+)").group(1)) for p in procs
            ]
            async with grpc_stubs(procs) as stubs, httpx.AsyncClient() as http:
                # Two sessions on each node (a Start runs where it lands while there is room).
                owned = {
                    (
                        await stubs[n].Start(pb.StartRequest(call_id=f"c{n}-{i}"), timeout=30)
                    ).session_id: n
                    for n in range(3)
                    for i in range(2)
                }
                codes: collections.Counter[str] = collections.Counter()
                stop = asyncio.Event()

                async def load(stub: pb_grpc.SessionServiceStub) -> None:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        for call in (
                            stub.Get(pb.GetRequest(session_id=sid), timeout=10) for sid in owned
                        ):
                            try:
                                await call
                                codes["OK"] += 1
                            except grpc.aio.AioRpcError as error:
                                codes[error.code().name] += 1
                        codes[await _start(stub, f"load-{id(stub)}-{n}")] += 1

                async def ready(n: int) -> int:
                    return (await http.get(f"http://127.0.0.1:{http_ports[n]}/ready")).status_code

                loaders = [asyncio.create_task(load(stub)) for stub in stubs]
                if keeps_data:
                    admin = aioredis.Redis.from_url(url)
                    with contextlib.suppress(Exception):  # the server closes the connection
                        await admin.execute_command("SHUTDOWN", "SAVE")
                    await admin.aclose()
                else:
                    redis.kill()
                redis.wait(10)

                async def none_ready() -> bool:
                    return [await ready(n) for n in range(3)] == [400, 400, 400]

                await wait_until(none_ready, timeout=15)
                # Down: each node still answers for its own sessions, and closes them.
                for sid, n in owned.items():
                    got = await stubs[n].Get(pb.GetRequest(session_id=sid), timeout=10)
                    assert got.session.state == session_pb2.SESSION_STATE_RUNNING
                closed = next(iter(owned))
                await stubs[owned[closed]].Close(pb.CloseRequest(session_id=closed), timeout=10)
                redis = start_redis(port, tmp_path)  # back: with its snapshot, or empty

                async def all_ready() -> bool:
                    return [await ready(n) for n in range(3)] == [200, 200, 200]

                await wait_until(all_ready, timeout=15)
                stop.set()
                await asyncio.gather(*loaders)
                # Nothing but answers a client can act on, throughout.
                assert set(codes) <= {"OK", "UNAVAILABLE", "RESOURCE_EXHAUSTED"}, codes
                assert codes["UNAVAILABLE"] > 0 and codes["OK"] > 0
                # No session lost from view, from any node, each as it is.
                for stub in stubs:
                    for sid in owned:
                        got = await stub.Get(pb.GetRequest(session_id=sid), timeout=10)
                        if sid == closed:
                            assert (
                                got.session.end_reason == session_pb2.END_REASON_CLOSED_BY_REQUEST
                            )
                        else:
                            assert got.session.state == session_pb2.SESSION_STATE_RUNNING
                assert "node_lost" not in "".join(p.text() for p in procs)
                assert await _start(stubs[0], "after") == "OK"
    finally:
        redis.kill()
        redis.wait(10)
