"""The cluster's event stream against a real redis-server: dense cursors, epochs, trimming."""

from __future__ import annotations

import asyncio
import json
import math
import time

import pytest
import redis.asyncio as aioredis

from agentplane.cluster import ClusterKeys
from agentplane.cluster.events import RedisEventStream
from agentplane.cluster.records import (
    error_from_dict,
    error_to_dict,
    event_from_json,
    event_to_json,
    record_from_json,
    record_to_json,
)
from agentplane.core.errors import (
    AdmissionRejected,
    AgentStartFailed,
    Draining,
    FieldViolation,
    IdempotencyConflict,
    InvalidArgument,
    LauncherError,
    NotReady,
    SessionNotFound,
    Unavailable,
)
from agentplane.core.models import EndReason, EventKind, SessionRecord, SessionState


def encoded(session_id: str, n: int) -> str:
    return event_to_json(session_id, "call", 1.0, EventKind.AGENT, {"name": "n", "data": {"n": n}})


async def test_appends_from_many_nodes_get_dense_cursors_in_stream_order(
    redis_url: str, keys: ClusterKeys
) -> None:
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        a, b = (RedisEventStream(c, keys=keys) for c in clients)

        async def ship(stream: RedisEventStream, name: str) -> list[str]:
            epochs = []
            for batch in range(20):
                epoch, _ = await stream.append([encoded(name, batch * 10 + i) for i in range(10)])
                epochs.append(epoch)
            return epochs

        epochs = await asyncio.gather(ship(a, "node-a"), ship(b, "node-b"))
        assert len({*epochs[0], *epochs[1]}) == 1  # one stream, one epoch
        read = await a.read(0, count=1000)
        assert read.epoch == epochs[0][0]
        assert [e.cursor for e in read.events] == list(range(1, 401))
        # Each node's events stay in the order it appended them.
        for name in ("node-a", "node-b"):
            mine = [e.payload["data"]["n"] for e in read.events if e.session_id == name]
            assert mine == list(range(200))
        later = await b.read(390)
        assert [e.cursor for e in later.events] == list(range(391, 401))
    finally:
        for client in clients:
            await client.aclose()


async def test_a_blocked_reader_wakes_when_another_node_appends(
    redis_url: str, keys: ClusterKeys
) -> None:
    reader_client, writer_client = (aioredis.Redis.from_url(redis_url) for _ in range(2))
    try:
        reader = RedisEventStream(reader_client, keys=keys)
        writer = RedisEventStream(writer_client, keys=keys)
        await writer.append([encoded("s", 0)])
        waiting = asyncio.create_task(reader.read(1, block_ms=10_000))
        await asyncio.sleep(
            0.05
        )  # let the XREAD block (if it returned early, the test still holds)
        began = time.monotonic()
        await writer.append([encoded("s", 1)])
        batch = await asyncio.wait_for(waiting, 10)
        assert [e.cursor for e in batch.events] == [2]
        assert time.monotonic() - began < 5  # woken by the append, not by the 10 s bound
    finally:
        await reader_client.aclose()
        await writer_client.aclose()


async def test_the_stream_is_capped_and_says_what_it_still_holds(
    redis: aioredis.Redis, keys: ClusterKeys
) -> None:
    stream = RedisEventStream(redis, keys=keys, max_length=50)
    for batch in range(50):
        await stream.append([encoded("s", batch * 10 + i) for i in range(10)])
    oldest = await stream.oldest()
    assert oldest is not None and 300 < oldest <= 451  # trimmed to about 50 entries
    read = await stream.read(0, count=1000)
    assert read.events[0].cursor == oldest and read.events[-1].cursor == 500


async def test_a_redis_that_lost_its_data_starts_a_new_epoch(
    redis: aioredis.Redis, keys: ClusterKeys
) -> None:
    stream = RedisEventStream(redis, keys=keys)
    first_epoch, first = await stream.append([encoded("s", 0), encoded("s", 1)])
    assert first == 1
    await redis.delete(keys.events, keys.events_meta)  # what a restart without persistence does
    second_epoch, again = await stream.append([encoded("s", 2)])
    assert again == 1 and second_epoch != first_epoch
    assert (await stream.read(0)).epoch == second_epoch


async def _blocked(client: aioredis.Redis) -> bool:
    return any("b" in c["flags"] and c["cmd"] == "xread" for c in await client.client_list())


def test_every_kind_of_event_round_trips() -> None:
    record = SessionRecord("s1", "c1", "default", 10.0, created_by="u", metadata={"a": [1, "x"]})
    ended = SessionRecord(
        "s1",
        "c1",
        "default",
        10.0,
        state=SessionState.ENDED,
        end_reason=EndReason.COMPLETED,
        ended_at=12.0,
        final_metrics={"m": 1.5},
    )
    payloads = {
        EventKind.STARTED: {"session": record},
        EventKind.STATE_CHANGED: {
            "previous_state": SessionState.STARTING,
            "state": SessionState.RUNNING,
        },
        EventKind.METRICS_UPDATED: {"metrics": {"fps": 30.0}},
        EventKind.ENDED: {"session": ended, "metrics": {"m": 1.5}},
        EventKind.AGENT: {"name": "joined", "data": {"who": "bot", "n": 1}},
    }
    for kind, payload in payloads.items():
        event = event_from_json(7, event_to_json("s1", "c1", 3.5, kind, payload))
        assert (event.cursor, event.session_id, event.call_id, event.time, event.kind) == (
            7,
            "s1",
            "c1",
            3.5,
            kind,
        )
        assert event.payload == payload


def test_records_and_events_keep_nan_metrics() -> None:
    """Vision Agents' figures with no value yet are NaN; the cluster's JSON keeps them."""
    record = SessionRecord(
        session_id="s",
        call_id="c",
        call_type="default",
        started_at=1.0,
        final_metrics={"x": float("nan")},
    )
    again = record_from_json(record_to_json(record))
    assert again.final_metrics is not None and math.isnan(again.final_metrics["x"])
    event = event_from_json(
        3, event_to_json("s", "c", 1.0, EventKind.METRICS_UPDATED, {"metrics": {"x": float("nan")}})
    )
    assert math.isnan(event.payload["metrics"]["x"])


@pytest.mark.parametrize(
    "error",
    [
        AdmissionRejected("MAX_SESSIONS_PER_CALL", "full", 2.5),
        InvalidArgument([FieldViolation("call_id", "must not be empty")]),
        SessionNotFound("s1"),
        Draining(),
        NotReady(),
        AgentStartFailed("create_agent raised"),
        IdempotencyConflict("key reused"),
        Unavailable("CLUSTER_UNAVAILABLE", "no redis"),
    ],
)
def test_launcher_errors_cross_nodes_as_they_were_raised(error: LauncherError) -> None:
    again = error_from_dict(json.loads(json.dumps(error_to_dict(error))))
    assert type(again) is type(error)
    assert (again.reason, again.message) == (error.reason, error.message)
    assert getattr(again, "retry_after", None) == getattr(error, "retry_after", None)
    assert getattr(again, "violations", None) == getattr(error, "violations", None)
