"""The agent contract: everything agentplane asks of a user's agent, in one place.

agentplane never requires a base class. It calls the two functions it is given
and probes the agent they return for optional methods:

``create_agent(**metadata)``
    Sync or async; returns the agent. Start's ``metadata`` become keywords,
    so each key must be one it takes (a named parameter, or any with
    ``**kwargs``) and every parameter without a default must be given: a
    Start that breaks this is refused with INVALID_ARGUMENT naming the keys,
    before any agent is created. Vision Agents calls it with no keywords.
``join_call(agent, call_type, call_id, **kwargs)``
    Async; runs the agent in the call until it is done. It gets the session's
    ``SessionContext`` as ``session=`` only when it names a ``session``
    parameter; ``**kwargs`` alone gets nothing extra (a ``join_call`` written
    for Vision Agents may forward its kwargs elsewhere). Anywhere inside the
    session (``create_agent`` included) ``current_session()`` answers it.
    Returning ends the session COMPLETED, raising ends it ERROR; it is
    cancelled when the session ends for any other reason.
``agent.set_video_track_override_path(path)`` (only with ``run --video-track-override``)
    Called after ``create_agent`` and before ``join_call``, as Vision Agents does.
``agent.edge.open_demo_for_agent(agent, call_type, call_id)`` (optional, ``run`` only)
    Opens the agent's demo UI once the session started, as Vision Agents'
    ``run`` does; ``run --no-demo`` skips it.
``agent.close()`` / ``agent.aclose()`` / ``agent.finish()`` (optional)
    Sync or async; the first one present is called once, after ``join_call``
    has stopped, within the launcher's ``stop_timeout``.
``agent.idle_for()`` (optional)
    Seconds the agent has been alone in its call (0 while anyone is there).
    With it, the idle timeout asks the agent; without it, the idle clock runs
    from the participants reported through ``SessionContext``.
``agent.metrics.to_dict()`` (optional)
    The agent's own metrics collector; its numeric values are merged into
    the session's metrics whenever they are read.

Every probe is guarded: an agent method that raises is logged and treated as
absent for that call, never as a launcher failure.

Agent adapters
--------------

A family of agents whose framework expects more of its host than the above (a
warm-up before the first call, say) gets an ``AgentAdapter``, given to the
launcher as ``agent_adapter=`` (the Runner installs the Vision Agents one,
``agentplane.compat.vision_agents``, by itself when the user's code imported
``vision_agents``). The core calls it at two points and never imports it:

``await adapter.startup(create_agent)``
    Once, in ``AgentLauncher.start()``, before the user's ``warmup()`` and
    before the launcher is ready (readiness and gRPC health say NOT_SERVING until it
    returns). ``create_agent()`` makes an agent with no metadata, bounded by
    ``create_agent_timeout``; the adapter closes what it makes. The whole
    hook is bounded by the launcher's ``adapter_startup_timeout``: past it, or
    when it raises, ``start()`` raises ``AgentStartFailed`` and the launcher
    never becomes ready. Cancelling ``start()`` cancels the hook.
``await adapter.prepare(agent)``
    Each session, right after ``create_agent`` and before ``join_call``,
    inside the same ``create_agent_timeout`` (a Start that times out cancels
    it, as it cancels ``create_agent``). Returns ``None`` when the adapter
    does not handle ``agent``: the plain contract above applies, unchanged.
    Otherwise it returns an ``AdaptedAgent``, which the core then asks
    instead of probing the agent: ``idle_for()`` for the idle timeout,
    ``metrics()`` for the collector, ``close()`` once ``join_call`` stopped
    (within ``stop_timeout``). When it raises, the agent is closed and the
    Start fails with ``AgentStartFailed``.

An adapted agent's ``metrics()`` declares every key of its collector: a key
without a value yet maps to ``None`` and is reported as NaN (not omitted, not
0), and integer counters stay integers. While anyone watches the session's
events (the session or the feed of all sessions), the session reads it every
``metrics_event_interval`` and publishes ``metrics_updated`` when it changed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import AgentStartFailed

logger = logging.getLogger("agentplane.launcher")

CreateAgent = Callable[..., Any]
JoinCall = Callable[..., Awaitable[None]]
CLOSE_METHODS = ("close", "aclose", "finish")


class AdaptedAgent(Protocol):
    """An agent as its adapter presents it to the core (what ``prepare`` returns)."""

    def idle_for(self) -> float:
        """Seconds the agent has been alone in its call (0 while anyone is there)."""
        ...

    def metrics(self) -> Mapping[str, float | None]:
        """Every key of the agent's collector; None where it has no value yet."""
        ...

    async def close(self) -> None:
        """Close the agent after ``join_call`` stopped, leaving no task of it pending."""
        ...


class AgentAdapter(Protocol):
    """Hooks for a family of agents (see "Agent adapters" above)."""

    async def startup(self, create_agent: Callable[[], Awaitable[Any]]) -> None:
        """Once, before the launcher is ready (a warm-up, say)."""
        ...

    async def prepare(self, agent: Any) -> AdaptedAgent | None:
        """Each session, before ``join_call``; None: not an agent of this family."""
        ...


async def maybe_await(value: Any) -> Any:
    """``value``, awaited first if the user's callable returned an awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value


def takes_session(join_call: Callable[..., Any]) -> bool:
    """Whether ``join_call`` names a ``session`` parameter (``**kwargs`` alone does not)."""
    try:
        params = inspect.signature(join_call).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "session" and p.kind in _BY_KEYWORD for p in params)


_BY_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True, slots=True)
class Keywords:
    """The keyword arguments a callable takes: ``names`` (None: any) and those it requires."""

    names: frozenset[str] | None = None
    required: frozenset[str] = frozenset()

    @classmethod
    def of(cls, function: Callable[..., Any]) -> Keywords:
        """What ``function`` takes; anything when its signature cannot be read."""
        try:
            params = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            return cls()
        by_keyword = [p for p in params if p.kind in _BY_KEYWORD]
        required = frozenset(p.name for p in by_keyword if p.default is p.empty)
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return cls(None, required)
        return cls(frozenset(p.name for p in by_keyword), required)

    def unknown(self, given: Iterable[str]) -> list[str]:
        """The keys of ``given`` the callable does not take, in order."""
        names = self.names
        return [] if names is None else [key for key in given if key not in names]

    def missing(self, given: Iterable[str]) -> list[str]:
        """The required keywords ``given`` lacks, sorted."""
        return sorted(self.required.difference(given))


def module_of(function: Any) -> str:
    """The module that defines ``function`` (a function, method, class, partial or callable)."""
    function = getattr(function, "func", function)  # functools.partial
    module = getattr(function, "__module__", None)
    if not isinstance(module, str):
        module = type(function).__module__  # an instance with __call__
    return module


def set_video_track_override(agent: Any, path: str) -> None:
    """Vision Agents' ``run --video-track-override``: the agent plays ``path`` instead."""
    setter = getattr(agent, "set_video_track_override_path", None)
    if not callable(setter):
        raise AgentStartFailed(
            f"a video track override was asked for, but the agent ({type(agent).__name__}) "
            "has no set_video_track_override_path() method"
        )
    setter(path)


async def open_demo(agent: Any, call_type: str, call_id: str) -> bool:
    """Open the agent's demo UI where it has one (Vision Agents' ``run``); never raises."""
    opener = getattr(getattr(agent, "edge", None), "open_demo_for_agent", None)
    if not callable(opener):
        return False
    try:
        await maybe_await(opener(agent, call_type, call_id))
    except Exception:
        logger.exception("agent.edge.open_demo_for_agent() raised")
        return False
    return True


def has_idle_for(agent: Any) -> bool:
    return callable(getattr(agent, "idle_for", None))


def idle_for(agent: Any, session_id: str) -> float:
    """How long ``agent`` says it has been alone; 0 (busy) when it cannot say."""
    try:
        idle = float(agent.idle_for())
    except Exception:
        logger.exception("agent.idle_for() of session %s raised", session_id)
        return 0.0
    if not math.isfinite(idle) or idle < 0:
        # A NaN delay would corrupt the loop's timer heap: count it as busy.
        logger.warning("agent.idle_for() of session %s returned %r", session_id, idle)
        return 0.0
    return idle


def collector_values(agent: Any, session_id: str) -> dict[str, Any] | None:
    """What the agent's own metrics collector reports, if it has one."""
    to_dict = getattr(getattr(agent, "metrics", None), "to_dict", None)
    if not callable(to_dict):
        return None
    try:
        values = to_dict()
    except Exception:
        logger.exception("agent.metrics.to_dict() of session %s raised", session_id)
        return None
    return values if isinstance(values, dict) else None


def adapted_metrics(adapted: AdaptedAgent, session_id: str) -> Mapping[str, float | None] | None:
    """What an adapted agent's collector declares, or None when it cannot say."""
    try:
        values = adapted.metrics()
    except Exception:
        logger.exception("the adapted agent's metrics() of session %s raised", session_id)
        return None
    return values if isinstance(values, Mapping) else None


async def close_agent(
    agent: Any, session_id: str, grace: float, adapted: AdaptedAgent | None = None
) -> None:
    """Close the agent (its adapter's way, or its first close method) within ``grace``.

    Never raises.
    """
    if adapted is not None:
        try:
            await _within(adapted.close(), grace)
        except TimeoutError:
            logger.error("closing the agent of session %s timed out", session_id)
        except Exception:
            logger.exception("closing the agent of session %s raised", session_id)
        return
    if agent is None:
        return
    for name in CLOSE_METHODS:
        closer = getattr(agent, name, None)
        if callable(closer):
            try:
                await _within(closer(), grace)
            except TimeoutError:
                logger.error("agent.%s() of session %s timed out", name, session_id)
            except Exception:
                logger.exception("agent.%s() of session %s raised", name, session_id)
            return


async def _within(result: Any, grace: float) -> None:
    """Await ``result`` (if awaitable) in this task, cancelled past ``grace`` (TimeoutError).

    In this task rather than wait_for's own: a close that returns at once costs
    no task, and one that returned a plain value no timer either.
    """
    if inspect.isawaitable(result):
        async with asyncio.timeout(grace):
            await result
