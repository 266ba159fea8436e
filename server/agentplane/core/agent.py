"""The agent contract: everything agentplane asks of a user's agent, in one place.

agentplane never requires a base class. It calls the two functions it is given
and probes the agent they return for optional methods:

``create_agent(**metadata)``
    Sync or async; returns the agent. Start's ``metadata`` become keywords.
``join_call(agent, call_type, call_id, **kwargs)``
    Async; runs the agent in the call until it is done. It gets the session's
    ``SessionContext`` as ``session=`` when it declares a ``session``
    parameter or ``**kwargs``. Returning ends the session COMPLETED, raising
    ends it ERROR; it is cancelled when the session ends for any other reason.
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
from collections.abc import Awaitable, Callable
from typing import Any

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
    """Whether ``join_call`` should be given ``session=``."""
    try:
        params = inspect.signature(join_call).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD or p.name == "session" for p in params)


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
