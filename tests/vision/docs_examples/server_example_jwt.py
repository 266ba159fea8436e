# From Vision Agents' "Agent Server Example" README (examples/08_agent_server_example),
# "Permission Callbacks & Authentication": "Example: JWT Authentication with Database
# Lookup" and "How `get_current_user` Works", one after the other, as the docs write them.
#
# Lines that differ from the docs:
#   from tests.vision.docs_examples.placeholders import decode_jwt, get_user_by_id
#                                 (Vision Agents: from myapp.auth import ...: the reader's)
#   from tests.vision.docs_examples.placeholders import get_db
#                                 (Vision Agents: from myapp.database import get_db)
#   from tests.vision.docs_examples.placeholders import AsyncSession
#                                 (Vision Agents: from sqlalchemy.ext.asyncio import ...)
#   from agentplane.server import get_session
#                                 (Vision Agents: vision_agents.core.runner.http.dependencies,
#                                 which vision-agents 0.6.9 no longer has)
#   from agentplane.server import AgentLauncher, Runner, ServeOptions
#   from tests.vision.docs_examples.server_example import create_agent, join_call
#                                 (added: the README's own agent)
#   the `runner = ...` and `runner.cli()` lines at the end, added: the docs leave wiring
#   the callbacks to the reader (as in their "Configuration" section).
# `from vision_agents.core import AgentSession` stays: it only annotates the session.
# ruff: noqa: F811, I001, UP045
# fmt: off
from fastapi import Depends, Header, HTTPException
from tests.vision.docs_examples.placeholders import decode_jwt, get_user_by_id
from tests.vision.docs_examples.placeholders import get_db
from tests.vision.docs_examples.placeholders import AsyncSession

from typing import Optional

from fastapi import Depends, HTTPException

from vision_agents.core import AgentSession
from agentplane.server import get_session

from agentplane.server import AgentLauncher, Runner, ServeOptions
from tests.vision.docs_examples.server_example import create_agent, join_call


async def get_current_user(
    authorization: str = Header(...),
    db: AsyncSession = Depends(get_db),
):
    """Resolve the current user from JWT token."""
    if not authorization.startswith("Bearer "):
        raise HTTPException(status_code=401, detail="Invalid authorization header")

    token = authorization.split(" ")[1]
    payload = decode_jwt(token)  # Raises if invalid

    user = await get_user_by_id(db, payload["user_id"])
    if not user:
        raise HTTPException(status_code=401, detail="User not found")

    return user


async def can_start_session(
    user=Depends(get_current_user),
    db: AsyncSession = Depends(get_db),
):
    """Check if user has permission to start agent sessions."""
    if not user.has_permission("agents:start"):
        raise HTTPException(status_code=403, detail="Insufficient permissions")

    # Check rate limits, quotas, etc.
    if await user.exceeded_session_quota(db):
        raise HTTPException(status_code=429, detail="Session quota exceeded")


# In your permission callbacks, you can access the session creator
async def can_close_session(
    session_id: str,
    current_user=Depends(get_current_user),
    session: Optional[AgentSession] = Depends(get_session),
):
    """Only allow users to close their own sessions."""
    if session and session.created_by != current_user.id:
        raise HTTPException(
            status_code=403, detail="Cannot close another user's session"
        )


runner = Runner(
    AgentLauncher(create_agent=create_agent, join_call=join_call),
    serve_options=ServeOptions(
        get_current_user=get_current_user,
        can_start_session=can_start_session,
        can_close_session=can_close_session,
    ),
)

if __name__ == "__main__":
    runner.cli()
