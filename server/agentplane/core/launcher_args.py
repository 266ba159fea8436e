"""Vision Agents' ``AgentLauncher`` arguments that agentplane has no use for, checked once.

A launcher written for Vision Agents passes them, positionally or by name; the
launcher takes them and says here what becomes of them: the maintenance
interval has nothing to do (no loop visits the sessions: each one owns its
timers, decision 7), and a registry must be one agentplane can use, or the
launcher refuses it at construction rather than failing on the first Start.
"""

from __future__ import annotations

import logging
import math
from typing import Any

logger = logging.getLogger("agentplane.launcher")

# What agentplane calls on a registry (``registry.SessionRegistry``).
REGISTRY_METHODS = ("admit", "update", "release", "forget", "get")


def check_unused_intervals(maintenance_interval: Any, cleanup_interval: Any) -> None:
    """Accept Vision Agents' maintenance interval (0.6.9) or cleanup interval (its docs).

    Either is a number of seconds (positive, as Vision Agents requires) or None;
    neither changes anything.
    """
    for name, value in (
        ("maintenance_interval", maintenance_interval),
        ("cleanup_interval", cleanup_interval),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be > 0, got {value}")
        logger.debug(
            "%s=%g ignored: agentplane runs no maintenance loop; each session has its own "
            "idle and duration timers",
            name,
            value,
        )


def check_registry(registry: Any) -> None:
    """Refuse a registry agentplane cannot use (Vision Agents' own, say), naming why."""
    if registry is None:
        return
    missing = [name for name in REGISTRY_METHODS if not callable(getattr(registry, name, None))]
    if not missing:
        return
    kind = type(registry)
    where = f"{kind.__module__}.{kind.__qualname__}"
    hint = (
        "Vision Agents' SessionRegistry (its multi-node store) does not work with agentplane; "
        if kind.__module__.split(".")[0] == "vision_agents"
        else ""
    )
    raise TypeError(
        f"registry {where} is not an agentplane SessionRegistry (it lacks "
        f"{', '.join(missing)}): {hint}pass registry=None (in-memory, the default), "
        "agentplane.server.InMemorySessionRegistry() or your own agentplane SessionRegistry"
    )
