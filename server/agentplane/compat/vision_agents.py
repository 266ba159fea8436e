"""Vision Agents agents under agentplane: what Vision Agents' own launcher does for them.

agentplane never imports ``vision_agents``: ``adapter_for`` answers an adapter
only when the package is already imported (``sys.modules``), that is when the
user's code uses it, and every check below reads classes from the modules
already loaded. The Runner installs the adapter by itself
(``AgentLauncher.agent_adapter``, see ``agentplane.core.agent``); an agent that
is not a ``vision_agents.core.Agent`` keeps the plain agent contract.

What this module relies on (vision-agents 0.6.9; a different version that lacks
one of these degrades to the plain contract for that part, and says so in the
log):

* ``vision_agents.core.Agent``: the class agents are recognised by.
* ``vision_agents.core.warmup.WarmupCache`` and ``Warmable``: a component is
  warm-able when it is a ``Warmable``; ``await component.warmup(cache)`` loads
  its resource once per class and cache (``on_warmup``) and hands it to each
  instance (``on_warmed_up``), so a second agent's warm-up is cheap.
* The warm-able parts of an agent, as Vision Agents' ``AgentLauncher``
  (``_warmup_agent``) lists them: ``agent.llm``, ``.tts``, ``.stt``,
  ``.turn_detection``, ``.processors`` and the private
  ``agent._multi_speaker_filter`` (the default ``FirstSpeakerWinsFilter``
  loads Silero VAD in its warm-up and raises ``warmup() must be called before
  process_audio()`` without it: the agent goes deaf as soon as two people talk).
* ``agent.idle_for()`` (seconds alone on the call, 0 before it joined),
  ``agent.metrics.to_dict()`` (all 25 keys of ``AgentMetrics``: counters as
  ints, averages as None until they have a value), ``agent.close()`` (safe to
  call twice; ``agent.closed``), and the private ``agent._close`` and
  ``agent.close`` code objects, to recognise the quirk below.

The self-close quirk (0.6.9): when the call ends by itself, the edge's
``CallEndedEvent`` handler (an event-manager task) awaits ``agent.close()``,
whose shielded ``_close`` task ends with ``events.shutdown()``, which cancels
and awaits every handler task, that handler included; the cancelled handler
then waits for ``_close``. Each waits for the other forever: ``join_call``
returns (``finish()`` saw the call end), and the next full garbage collection
destroys the two pending tasks, logging ``Task was destroyed but it is
pending!`` twice at ERROR. ``_AdaptedAgent.close`` recognises the pair and
cancels the ``_close`` task once: ``events.shutdown()`` swallows that
cancellation, so the close completes (the agent ends ``closed``, every
component closed) and the handler then finishes, cancelled, as it was asked to.

Warm-up timing: ``startup`` creates one agent, warms it and closes it, before
the launcher is ready (as Vision Agents' launcher does), when ``create_agent``
comes from a module that imports ``vision_agents``; otherwise the first session
pays the full warm-up. ``prepare`` warms each session's agent with the same
cache before ``join_call``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import FrameType, ModuleType
from typing import Any

from agentplane.core import agent as agent_contract

logger = logging.getLogger("agentplane.compat.vision_agents")

__all__ = ["VisionAgentsAdapter", "adapter_for", "is_vision_agent"]

PACKAGE = "vision_agents"
# How long closing an agent whose own close is under way may wait for it, in
# all (the launcher's stop_timeout bounds the whole close too).
DEFAULT_CLOSE_SETTLE = 5.0
# How often a close under way is looked at for the self-close quirk.
SETTLE_POLL = (0.005, 0.1)


def _loaded(name: str) -> ModuleType | None:
    """``name`` if the user's code already imported it; never imports anything."""
    return sys.modules.get(name)


def _agent_class() -> type | None:
    core = _loaded(f"{PACKAGE}.core")
    cls = getattr(core, "Agent", None)
    return cls if isinstance(cls, type) else None


def is_vision_agent(agent: Any) -> bool:
    """Whether ``agent`` is a ``vision_agents.core.Agent`` (False when it is not loaded)."""
    cls = _agent_class()
    return cls is not None and isinstance(agent, cls)


def _from_package(value: Any) -> bool:
    name = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
    return isinstance(name, str) and (name == PACKAGE or name.startswith(PACKAGE + "."))


def uses_vision_agents(create_agent: Callable[..., Any]) -> bool:
    """Whether the module defining ``create_agent`` refers to anything of ``vision_agents``."""
    target: Any = create_agent
    while isinstance(target, functools.partial):
        target = target.func
    target = inspect.unwrap(target)
    namespace = getattr(target, "__globals__", None)
    if namespace is None:
        module = inspect.getmodule(target) or inspect.getmodule(type(target))
        namespace = vars(module) if module is not None else {}
    return any(_from_package(value) for value in list(namespace.values()))


def adapter_for(create_agent: Callable[..., Any]) -> VisionAgentsAdapter | None:
    """The adapter a launcher of ``create_agent`` needs, or None without Vision Agents.

    None unless ``vision_agents.core`` is already imported. The adapter warms an
    agent at start-up only when ``create_agent``'s module uses ``vision_agents``
    (a server of other agents in a process that happens to import it creates no
    extra agent).
    """
    if _loaded(f"{PACKAGE}.core") is None:
        return None
    return VisionAgentsAdapter(warm_at_startup=uses_vision_agents(create_agent))


class VisionAgentsAdapter:
    """The ``AgentAdapter`` of Vision Agents agents (see the module docstring).

    Example (what ``Runner`` does by itself)::

        launcher = AgentLauncher(create_agent, join_call,
                                 agent_adapter=VisionAgentsAdapter())
    """

    def __init__(
        self, *, warm_at_startup: bool = True, close_settle: float = DEFAULT_CLOSE_SETTLE
    ) -> None:
        self.warm_at_startup = warm_at_startup
        self.close_settle = close_settle
        self._cache: Any = None
        # Tasks of an agent's own close that outlived their bound: referenced
        # until they finish, so the collector never destroys them pending.
        self._held: set[asyncio.Task[Any]] = set()
        #: How many warm-ups ran (start-up and sessions) and the last one's seconds.
        self.warmups = 0
        self.last_warmup_seconds = 0.0

    @property
    def held_tasks(self) -> int:
        """Tasks of agents' own closes still running past their bound."""
        return len(self._held)

    # ------------------------------------------------------------ the hooks

    async def startup(self, create_agent: Callable[[], Awaitable[Any]]) -> None:
        """Create one agent, warm its parts into the shared cache, close it."""
        if not self.warm_at_startup:
            return
        agent = await create_agent()
        try:
            if is_vision_agent(agent):
                await self.warm(agent)
                logger.info("Vision Agents warm-up done in %.2f s", self.last_warmup_seconds)
            else:
                logger.info("create_agent made no Vision Agents agent: nothing to warm up")
        finally:
            if is_vision_agent(agent):
                await _AdaptedAgent(agent, self).close()
            else:
                await agent_contract.close_agent(agent, "start-up", self.close_settle)

    async def prepare(self, agent: Any) -> agent_contract.AdaptedAgent | None:
        """Warm a session's agent with the shared cache (cheap once cached)."""
        if not is_vision_agent(agent):
            return None
        await self.warm(agent)
        return _AdaptedAgent(agent, self)

    # --------------------------------------------------------------- warm-up

    async def warm(self, agent: Any) -> None:
        """``await part.warmup(cache)`` for every warm-able part of ``agent``, together."""
        cache = self._warmup_cache()
        warmable: Any = _warmable_class()
        if cache is None or warmable is None:
            logger.warning("vision_agents.core.warmup is missing: agents are not warmed up")
            return
        parts: list[Any] = [
            getattr(agent, "llm", None),
            getattr(agent, "tts", None),
            getattr(agent, "stt", None),
            getattr(agent, "turn_detection", None),
            getattr(agent, "_multi_speaker_filter", None),
            *(getattr(agent, "processors", None) or ()),
        ]
        started = time.perf_counter()
        await asyncio.gather(*(p.warmup(cache) for p in parts if isinstance(p, warmable)))
        self.last_warmup_seconds = time.perf_counter() - started
        self.warmups += 1

    def _warmup_cache(self) -> Any:
        if self._cache is None:
            module = _loaded(f"{PACKAGE}.core.warmup")
            cache_class = getattr(module, "WarmupCache", None)
            if cache_class is None:
                return None
            self._cache = cache_class()
        return self._cache

    def hold(self, tasks: set[asyncio.Task[Any]]) -> None:
        for task in tasks:
            if not task.done():
                self._held.add(task)
                task.add_done_callback(self._held.discard)


def _warmable_class() -> type | None:
    cls = getattr(_loaded(f"{PACKAGE}.core.warmup"), "Warmable", None)
    return cls if isinstance(cls, type) else None


class _AdaptedAgent:
    """A Vision Agents agent as the core asks it (``agentplane.core.agent.AdaptedAgent``)."""

    __slots__ = ("_adapter", "agent")

    def __init__(self, agent: Any, adapter: VisionAgentsAdapter) -> None:
        self.agent = agent
        self._adapter = adapter

    def idle_for(self) -> float:
        return float(self.agent.idle_for())

    def metrics(self) -> Mapping[str, float | None]:
        values: Mapping[str, float | None] = self.agent.metrics.to_dict()
        return values

    async def close(self) -> None:
        """Finish a close the agent began itself (the quirk), then close it."""
        agent = self.agent
        if getattr(agent, "closed", False):
            return
        lock = getattr(agent, "_close_lock", None)
        if lock is not None and lock.locked():
            closing = _own_close_task(agent)
            if closing is not None:
                await self._settle(closing)
        await agent.close()

    async def _settle(self, closing: asyncio.Task[Any]) -> None:
        """Wait for the agent's own ``_close`` task; end it if it waits on its own handler."""
        agent = self.agent
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._adapter.close_settle
        stuck: set[asyncio.Task[Any]] = set()
        poll, longest = SETTLE_POLL
        try:
            while not closing.done():
                stuck = _handlers_waiting_on_close(agent, closing)
                remaining = deadline - loop.time()
                if stuck:
                    logger.debug(
                        "agent %s waits on its own close (vision-agents' self-close); finishing it",
                        getattr(agent, "id", "?"),
                    )
                    # events.shutdown() swallows this: the close completes.
                    closing.cancel()
                    await asyncio.wait({closing, *stuck}, timeout=max(remaining, 0.0))
                    break
                if remaining <= 0:
                    break
                await asyncio.wait({closing}, timeout=min(poll, remaining))
                poll = min(poll * 2, longest)
        finally:
            left = {task for task in (closing, *stuck) if not task.done()}
            if left:
                logger.warning(
                    "%d task(s) of agent %s's own close still run after %.1f s; "
                    "keeping them until they finish",
                    len(left),
                    getattr(agent, "id", "?"),
                    self._adapter.close_settle,
                )
                self._adapter.hold(left)


def _code_of(agent: Any, name: str) -> Any:
    return getattr(getattr(type(agent), name, None), "__code__", None)


def _frames(coro: Any) -> Iterator[FrameType]:
    """The frames of the coroutine chain ``coro`` is suspended in, outermost first."""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None)
        if frame is None:
            return
        yield frame
        coro = getattr(coro, "cr_await", None)


def _in_method(coro: Any, code: Any, owner: Any) -> bool:
    return any(f.f_code is code and f.f_locals.get("self") is owner for f in _frames(coro))


def _own_close_task(agent: Any) -> asyncio.Task[Any] | None:
    """The pending task running ``agent._close()`` (started by ``agent.close()``)."""
    code = _code_of(agent, "_close")
    if code is None:
        return None
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        if frame is not None and frame.f_code is code and frame.f_locals.get("self") is agent:
            return task
    return None


def _handlers_waiting_on_close(agent: Any, closing: asyncio.Task[Any]) -> set[asyncio.Task[Any]]:
    """The event-handler tasks that ``closing`` waits for while they wait for it.

    ``closing`` (the agent's ``_close`` task) is inside an ``EventManager``'s
    ``shutdown()``, which cancelled and awaits the manager's handler tasks; a
    handler task that was cancelled and is still inside ``agent.close()`` waits
    for ``closing`` in turn. Empty while there is no such pair.
    """
    manager = getattr(_loaded(f"{PACKAGE}.core.events.manager"), "EventManager", None)
    close_code = _code_of(agent, "close")
    if not isinstance(manager, type) or close_code is None:
        return set()
    in_shutdown = any(
        f.f_code.co_name == "shutdown" and isinstance(f.f_locals.get("self"), manager)
        for f in _frames(closing.get_coro())
    )
    if not in_shutdown:
        return set()
    # Frames' locals are read only where the code is known (a read keeps a
    # snapshot of them alive as long as the frame).
    manager_code = {f.__code__ for f in vars(manager).values() if inspect.isfunction(f)}
    found: set[asyncio.Task[Any]] = set()
    for task in asyncio.all_tasks():
        if task.done() or not task.cancelling():
            continue
        coro = task.get_coro()
        root = getattr(coro, "cr_frame", None)
        if root is None or root.f_code not in manager_code:
            continue  # not a handler task of an event manager
        if _in_method(coro, close_code, agent):
            found.add(task)
    return found
