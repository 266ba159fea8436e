"""``NodeCommands``: Close and Metrics reach the node that runs the session, at once.

A session's record is in Redis, so any node answers Get; closing it and
reading its live metrics need the node that runs it. The asking node looks
up the owner (the call's hash: session id -> node id) and PUBLISHes the
command on the owner's channel; the owner runs it on its launcher and pushes
the answer onto a reply list the asker waits on (BLPOP, bounded). No one
polls: a cross-node Close costs one PUBLISH, one LPUSH and one BLPOP.

A PUBLISH that reaches no subscriber means the owner is gone (it will be
declared dead within three heartbeats and its sessions end NODE_LOST): the
asker answers UNAVAILABLE at once rather than waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import Any

from agentplane.core.errors import LauncherError, SessionNotFound, Unavailable
from agentplane.core.launcher import AgentLauncher
from agentplane.core.models import SessionRecord

from .keys import ClusterKeys
from .records import record_from_json, record_to_json

logger = logging.getLogger("agentplane.cluster")

# Long enough for the owner to stop an agent (stop_timeout) and answer.
DEFAULT_TIMEOUT = 10.0
# A reply nobody collected (the asker timed out) does not stay in Redis.
REPLY_TTL_SECONDS = 30


class OwnerUnreachable(Unavailable):
    REASON = "OWNER_UNREACHABLE"

    def __init__(self, session_id: str, why: str) -> None:
        super().__init__(
            self.REASON,
            f"the node running session {session_id} cannot be reached ({why}); retry shortly",
        )


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
    ) -> None:
        self.redis = redis
        self.launcher = launcher
        self.node_id = node_id
        self.keys = keys or ClusterKeys()
        self.timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._subscribed = asyncio.Event()

    # ------------------------------------------------------------ serving

    async def start(self) -> None:
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
        await self.start()

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
            op, session_id, reply = command["op"], command["session_id"], command["reply"]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a malformed cluster command: %.200r", data)
            return
        answer: dict[str, Any]
        try:
            if op == "close":
                record = await self.launcher.close_session(session_id)
                answer = {"record": json.loads(record_to_json(record))}
            elif op == "metrics":
                _, metrics = await self.launcher.get_metrics(session_id)
                answer = {"metrics": metrics}
            else:
                answer = {"error": "unknown", "message": f"unknown command {op!r}"}
        except SessionNotFound:
            answer = {"error": "not_found", "message": session_id}
        except LauncherError as error:
            answer = {"error": "failed", "message": str(error)}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(reply, json.dumps(answer))
            pipe.expire(reply, REPLY_TTL_SECONDS)
            await pipe.execute()

    # ------------------------------------------------------------- asking

    async def close(self, record: SessionRecord) -> SessionRecord:
        answer = await self._ask("close", record)
        return record_from_json(json.dumps(answer["record"]))

    async def metrics(self, record: SessionRecord) -> dict[str, float]:
        answer = await self._ask("metrics", record)
        return {str(k): float(v) for k, v in answer["metrics"].items()}

    async def _ask(self, op: str, record: SessionRecord) -> dict[str, Any]:
        session_id = record.session_id
        owner = await self.redis.hget(self.keys.call(record.call_id), session_id)
        if owner is None:
            # No slot: it ended meanwhile (or was never admitted): the record says how.
            raise OwnerUnreachable(session_id, "it holds no slot")
        owner_id = owner.decode() if isinstance(owner, bytes) else str(owner)
        if owner_id == self.node_id:
            # Ours, yet not running here: it is ending this very moment.
            raise OwnerUnreachable(session_id, "it is ending on this node")
        reply = f"{self.keys.prefix}reply:{secrets.token_hex(8)}"
        command = json.dumps({"op": op, "session_id": session_id, "reply": reply})
        if not await self.redis.publish(self.keys.commands(owner_id), command):
            raise OwnerUnreachable(session_id, f"node {owner_id} is not listening")
        seconds = max(1, round(self.timeout))
        popped = await self.redis.blpop([reply], timeout=seconds)
        if popped is None:
            raise OwnerUnreachable(session_id, f"node {owner_id} did not answer in {seconds} s")
        answer: dict[str, Any] = json.loads(popped[1])
        if answer.get("error") == "not_found":
            raise SessionNotFound(session_id)
        if "error" in answer:
            raise OwnerUnreachable(session_id, str(answer.get("message", "")))
        return answer
