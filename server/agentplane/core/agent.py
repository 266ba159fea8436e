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
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import AgentStartFailed

logger = logging.getLogger("agentplane.launcher")

CreateAgent = Callable[..., Any]
JoinCall = Callable[..., Awaitable[None]]
CLOSE_METHODS = ("close", "aclose", "finish")


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


async def close_agent(agent: Any, session_id: str, grace: float) -> None:
    """Call the agent's first close method, for at most ``grace`` seconds; never raises."""
    if agent is None:
        return
    for name in CLOSE_METHODS:
        closer = getattr(agent, name, None)
        if callable(closer):
            try:
                await asyncio.wait_for(maybe_await(closer()), grace)
            except TimeoutError:
                logger.error("agent.%s() of session %s timed out", name, session_id)
            except Exception:
                logger.exception("agent.%s() of session %s raised", name, session_id)
            return
