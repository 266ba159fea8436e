"""agentplane's server: the launcher, its grpclib service and the Runner.

Example (``my_agent.py``)::

    from agentplane.server import AgentLauncher, Runner

    async def create_agent(**metadata): ...
    async def join_call(agent, call_type, call_id, **kwargs): ...

    Runner(AgentLauncher(create_agent=create_agent, join_call=join_call)).cli()
"""

from .auth import PermissionDenied, RequestContext, Unauthenticated
from .launcher import (
    AgentLauncher,
    EndReason,
    InMemorySessionRegistry,
    SessionContext,
    SessionRecord,
    SessionRegistry,
    SessionState,
    current_session,
)
from .options import ServeOptions
from .runner import Runner

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
    "current_session",
]
