"""Who is told about the launcher: lifecycle hooks and readiness listeners.

An observer must never break the lifecycle (a raise inside one would strand a
half-started or half-ended session), so every call is guarded and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from .models import SessionRecord

logger = logging.getLogger("agentplane.launcher")


class LauncherHooks(Protocol):
    """Observers of the launcher (operator metrics, audit logs)."""

    def session_started(self, record: SessionRecord, start_seconds: float) -> None: ...
    def session_ended(self, record: SessionRecord) -> None: ...
    def admission_rejected(self, reason: str) -> None: ...


class Observers:
    """The hooks, and the listeners of ``accepting`` (told only of changes)."""

    def __init__(self, hooks: tuple[LauncherHooks, ...]) -> None:
        self._hooks = hooks
        self._accepting_listeners: list[Callable[[bool], None]] = []
        self._last_accepting: bool | None = None

    def add_hooks(self, hooks: LauncherHooks) -> None:
        self._hooks = (*self._hooks, hooks)

    def call(self, method: str, *args: Any) -> None:
        for hook in self._hooks:
            try:
                getattr(hook, method)(*args)
            except Exception:
                logger.exception("hook %s.%s() raised", type(hook).__name__, method)

    def add_accepting_listener(self, listener: Callable[[bool], None], accepting: bool) -> None:
        self._accepting_listeners.append(listener)
        if self._last_accepting is None:
            # Nothing was announced yet: what this listener is told now is
            # what every listener knows, so the next change is the first one.
            self._last_accepting = accepting
        self._tell(listener, accepting)

    def accepting_is(self, accepting: bool) -> None:
        """Tell every listener, if ``accepting`` changed since they were last told."""
        if accepting != self._last_accepting:
            self._last_accepting = accepting
            for listener in self._accepting_listeners:
                self._tell(listener, accepting)

    @staticmethod
    def _tell(listener: Callable[[bool], None], accepting: bool) -> None:
        try:
            listener(accepting)
        except Exception:
            logger.exception("accepting listener %r raised", listener)
