"""The dependencies agentplane answers in FastAPI-style permission callbacks.

``get_session`` (exported by ``agentplane.server``) and what stands in for a
callback's ``Depends(get_current_user)``. Plain functions of a Starlette
request: importing them loads nothing of FastAPI.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from agentplane.core import SessionRecord

# What a permission callback's request carries besides its headers.
SESSION_KEY = "agentplane.session"
USER_KEY = "agentplane.user"
CONTEXT_KEY = "agentplane.context"

# Vision Agents' own dependencies (its 0.3 line, which the reference docs
# describe), answered by agentplane when a callback depends on them. Looked up
# in sys.modules only: if a callback uses them, the user's code imported them.
VISION_AGENTS_DEPENDENCIES = "vision_agents.core.runner.http.dependencies"


def get_session(request: Request) -> SessionRecord | None:
    """FastAPI dependency: the session a permission callback is asked about.

    In a ``ServeOptions`` callback, ``session: SessionRecord | None =
    Depends(get_session)`` is the session of the call (None for Start).
    Vision Agents' ``vision_agents.core.runner.http.dependencies.get_session``
    answers the same there.
    """
    try:
        session: SessionRecord | None = request.scope[SESSION_KEY]
    except KeyError:
        raise RuntimeError(
            "get_session answers in ServeOptions permission callbacks only"
        ) from None
    return session


def current_user(request: Request) -> Any:
    """FastAPI dependency: what ``get_current_user`` answered for this call."""
    return request.scope.get(USER_KEY)
