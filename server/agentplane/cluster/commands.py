"""``NodeCommands``: Close and Metrics reach the node that runs the session, at once;
a Start a node cannot take is placed on another.

A session's record is in Redis, so any node answers Get; closing it and
reading its live metrics need the node that runs it. The asking node looks
up the owner (the call's hash: session id -> node id) and PUBLISHes the
command on the owner's channel; the owner runs it on its launcher and pushes
the answer onto a reply list the asker waits on (BLPOP, bounded). No one
polls: a cross-node Close costs one PUBLISH, one LPUSH and one BLPOP.

A PUBLISH that reaches no subscriber means the owner is gone (it will be
declared dead within three heartbeats and its sessions end NODE_LOST): the
asker answers UNAVAILABLE at once rather than waiting.

Placement: a node that is draining or full (``max_sessions_per_node``) sends
a Start to the live node with the most room (fewest sessions held, by the
cluster's own count, which admission keeps exact; capacity and draining as
the nodes advertise them at each heartbeat). The chosen node admits it
against the cluster's limits as any Start; if it turns out full or draining
itself, the next candidate is tried (three at most). The caller was
authenticated and checked by the node it reached; the chosen node runs the
agent and owns the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from agentplane.core.errors import AdmissionRejected, LauncherError, SessionNotFound, Unavailable
from agentplane.core.launcher import AgentLauncher
from agentplane.core.models import SessionRecord

from .keys import ClusterKeys
from .node import NodeInfo
from .records import error_from_dict, error_to_dict, record_from_json, record_to_json

logger = logging.getLogger("agentplane.cluster")

# Long enough for the owner to stop an agent (stop_timeout) and answer.
DEFAULT_TIMEOUT = 10.0
# A reply nobody collected (the asker timed out) does not stay in Redis.
REPLY_TTL_SECONDS = 30
# Nodes a Start is offered to before the asker gives up.
PLACEMENT_TRIES = 3
# Beyond create_agent's own timeout: the hand-over and the answer.
START_MARGIN_SECONDS = 5.0


class OwnerUnreachable(Unavailable):
    REASON = "OWNER_UNREACHABLE"

    def __init__(self, session_id: str, why: str) -> None:
        super().__init__(
            self.REASON,
            f"the node running session {session_id} cannot be reached ({why}); retry shortly",
        )


class _NodeUnreachable(Exception):
    """A command reached no node, or its node did not answer in time."""


class NodeCommands:
    """Send commands to other nodes and serve this node's (see the module doc)."""

    def __init__(
        self,
        redis: Any,
        launcher: AgentLauncher,
        node_id: str,
        *,
        keys: ClusterKeys | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        live_nodes: Callable[[], Awaitable[list[NodeInfo]]] | None = None,
    ) -> None:
        self.redis = redis
        self._live_nodes = live_nodes
        self.launcher = launcher
        self.node_id = node_id
        self.keys = keys or ClusterKeys()
        self.timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._subscribed = asyncio.Event()

    # ------------------------------------------------------------ serving

    async def listen(self) -> None:
        """Listen on this node's channel (returns once subscribed)."""
        self._subscribed.clear()
        self._task = asyncio.get_running_loop().create_task(
            self._listen(self.node_id), name=f"agentplane-cluster-commands-{self.node_id}"
        )
        await asyncio.wait_for(self._subscribed.wait(), self.timeout)

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._handlers) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None

    async def rename(self, node_id: str) -> None:
        """Listen under a new node id (the node rejoined)."""
        await self.stop()
        self.node_id = node_id
        await self.listen()

    async def _listen(self, node_id: str) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.keys.commands(node_id))
            self._subscribed.set()
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                task = asyncio.get_running_loop().create_task(self._serve(message["data"]))
                self._handlers.add(task)
                task.add_done_callback(self._handlers.discard)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _serve(self, data: bytes | str) -> None:
        try:
            command = json.loads(data)
            op, reply = command["op"], command["reply"]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a malformed cluster command: %.200r", data)
            return
        answer: dict[str, Any]
        try:
            if op == "close":
                record = await self.launcher.close_session(command["session_id"])
                answer = {"record": json.loads(record_to_json(record))}
            elif op == "metrics":
                _, metrics = await self.launcher.get_metrics(command["session_id"])
                answer = {"metrics": metrics}
            elif op == "start":
                record = await self.launcher.start_session(
                    command["call_id"],
                    command["call_type"],
                    metadata=command["metadata"],
                    idempotency_key=command["idempotency_key"],
                    created_by=command["created_by"],
                    video_track_override_path=command["video_track_override_path"],
                    place_elsewhere=False,  # handed over once, never again
                )
                answer = {"record": json.loads(record_to_json(record))}
            else:
                answer = {
                    "error": {
                        "type": "Unavailable",
                        "reason": "UNKNOWN_COMMAND",
                        "message": f"unknown command {op!r}",
                    }
                }
        except LauncherError as error:
            answer = {"error": error_to_dict(error)}
        except (KeyError, TypeError) as error:
            logger.warning("ignored a malformed cluster command %.200r: %r", data, error)
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(reply, json.dumps(answer))
            pipe.expire(reply, REPLY_TTL_SECONDS)
            await pipe.execute()

    # ------------------------------------------------------------- asking

    async def close(self, record: SessionRecord) -> SessionRecord:
        answer = await self._ask_owner("close", record)
        return record_from_json(json.dumps(answer["record"]))

    async def metrics(self, record: SessionRecord) -> dict[str, float]:
        answer = await self._ask_owner("metrics", record)
        return {str(k): float(v) for k, v in answer["metrics"].items()}

    async def start(
        self, record: SessionRecord, video_track_override_path: str | None
    ) -> SessionRecord | None:
        """Place a Start on the node with the most room (see the module doc)."""
        command = {
            "op": "start",
            "call_id": record.call_id,
            "call_type": record.call_type,
            "metadata": record.metadata,
            "idempotency_key": record.idempotency_key,
            "created_by": record.created_by,
            "video_track_override_path": video_track_override_path,
        }
        timeout = self.launcher.create_agent_timeout + START_MARGIN_SECONDS
        for node_id in (await self.candidates())[:PLACEMENT_TRIES]:
            try:
                answer = await self._ask(node_id, command, timeout)
            except _NodeUnreachable:
                continue  # gone since it last advertised: the next one
            if "error" in answer:
                error = error_from_dict(answer["error"])
                if isinstance(error, Unavailable) or (
                    isinstance(error, AdmissionRejected) and error.reason == "MAX_SESSIONS_PER_NODE"
                ):
                    continue  # it filled up or began draining meanwhile
                raise error
            return record_from_json(json.dumps(answer["record"]))
        return None

    async def candidates(self) -> list[str]:
        """Other live nodes with room, the fewest sessions first."""
        if self._live_nodes is None:
            return []
        nodes = await self._live_nodes()
        held = {_text(k): int(v) for k, v in (await self.redis.hgetall(self.keys.counts)).items()}
        ranked = []
        for node in nodes:
            fields = node.fields
            if node.node_id == self.node_id or fields.get("draining") == "1":
                continue
            count = held.get(node.node_id, 0)
            capacity = int(fields.get("capacity") or 0)  # 0: no cap of its own
            if capacity and count >= capacity:
                continue
            ranked.append((count, node.node_id))
        return [node_id for _, node_id in sorted(ranked)]

    async def _ask_owner(self, op: str, record: SessionRecord) -> dict[str, Any]:
        session_id = record.session_id
        owner = await self.redis.hget(self.keys.call(record.call_id), session_id)
        if owner is None:
            # No slot: it ended meanwhile (or was never admitted): the record says how.
            raise OwnerUnreachable(session_id, "it holds no slot")
        owner_id = _text(owner)
        if owner_id == self.node_id:
            # Ours, yet not running here: it is ending this very moment.
            raise OwnerUnreachable(session_id, "it is ending on this node")
        try:
            answer = await self._ask(owner_id, {"op": op, "session_id": session_id}, self.timeout)
        except _NodeUnreachable as unreachable:
            raise OwnerUnreachable(session_id, str(unreachable)) from None
        if "error" in answer:
            error = error_from_dict(answer["error"])
            if isinstance(error, SessionNotFound):
                raise SessionNotFound(session_id)
            raise OwnerUnreachable(session_id, error.message)
        return answer

    async def _ask(
        self, node_id: str, command: dict[str, Any], wait_seconds: float
    ) -> dict[str, Any]:
        """Send ``command`` to ``node_id`` and wait for its answer (bounded)."""
        reply = f"{self.keys.prefix}reply:{secrets.token_hex(8)}"
        if not await self.redis.publish(
            self.keys.commands(node_id), json.dumps({**command, "reply": reply})
        ):
            raise _NodeUnreachable(f"node {node_id} is not listening")
        seconds = max(1, round(wait_seconds))
        popped = await self.redis.blpop([reply], timeout=seconds)
        if popped is None:
            raise _NodeUnreachable(f"node {node_id} did not answer in {seconds} s")
        answer: dict[str, Any] = json.loads(popped[1])
        return answer


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
