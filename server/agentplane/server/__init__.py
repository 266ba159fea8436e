"""agentplane's public API: the launcher, the Runner and what they take.

This is the one place users import from; the layers behind it
(``agentplane.core``, ``.service``, ``.rpc``, ``.http``, ``.ops``) are
importable too, but only these names are promised.

Example (``my_agent.py``)::

    from agentplane.server import AgentLauncher, Runner

    async def create_agent(**metadata): ...
    async def join_call(agent, call_type, call_id, **kwargs): ...

    Runner(AgentLauncher(create_agent=create_agent, join_call=join_call)).cli()
"""

import importlib.metadata

from agentplane.compat.dependencies import get_session
from agentplane.core import (
    AgentLauncher,
    EndReason,
    InMemorySessionRegistry,
    SessionContext,
    SessionRecord,
    SessionRegistry,
    SessionState,
    current_session,
)
from agentplane.service.auth import PermissionDenied, RequestContext, Unauthenticated

from .options import ServeOptions
from .runner import Runner

# Written once, in pyproject.toml; read from the installed distribution.
__version__ = importlib.metadata.version("agentplane")

__all__ = [
    "AgentLauncher",
    "EndReason",
    "InMemorySessionRegistry",
    "PermissionDenied",
    "RequestContext",
    "Runner",
    "ServeOptions",
    "SessionContext",
    "SessionRecord",
    "SessionRegistry",
    "SessionState",
    "Unauthenticated",
    "__version__",
    "current_session",
    "get_session",
]
