# From Vision Agents' docs, "Running Agents" (the Runner page), "Authentication &
# Permissions": "Custom User Identification" and "Permission Callbacks", one after the
# other, as the docs write them.
#
# Lines that differ from the docs:
#   from agentplane.server import get_session
#                                 (Vision Agents: vision_agents.core.runner.http.dependencies,
#                                 which vision-agents 0.6.9 no longer has)
#   from agentplane.server import AgentLauncher, Runner, ServeOptions
#                                 (added: Vision Agents' come from vision_agents.core)
#   from tests.vision.docs_examples.placeholders import validate_token_and_get_user
#                                 (added: left to the reader by the docs)
#   from tests.vision.docs_examples.server_example import create_agent, join_call
#                                 (added: the page's own "Basic Example" does not start
#                                 under vision-agents 0.6.9, see runner_basic.py)
#   the last two lines, added: running the second `runner` (`runner.cli()`).
# `from vision_agents.core import AgentSession` stays: it only annotates the session.
# ruff: noqa: F811, I001, UP045
# fmt: off
from dataclasses import dataclass

from fastapi import Header, HTTPException

from typing import Optional

from fastapi import Depends, HTTPException

from vision_agents.core import AgentSession
from agentplane.server import get_session

from agentplane.server import AgentLauncher, Runner, ServeOptions
from tests.vision.docs_examples.placeholders import validate_token_and_get_user
from tests.vision.docs_examples.server_example import create_agent, join_call


@dataclass
class User:
    id: str
    name: str

    def has_permission(self, permission: str) -> bool:
        # Implement your permission logic here
        return True


async def get_current_user(authorization: str = Header(None)) -> User:
    """Extract and validate the current user from the request."""
    if not authorization:
        raise HTTPException(status_code=401, detail="Authorization required")

    # Validate the token and retrieve user from your database
    user = await validate_token_and_get_user(authorization)
    return user


runner = Runner(
    AgentLauncher(create_agent=create_agent, join_call=join_call),
    serve_options=ServeOptions(
        get_current_user=get_current_user,
    ),
)


async def can_start_session(
    user: User = Depends(get_current_user),
) -> bool:
    """Check if the user can start a new agent session."""
    # Check user permissions
    if not user.has_permission("start_session"):
        raise HTTPException(status_code=403, detail="Permission denied")
    return True


# In your permission callbacks, you can access the requested AgentSession
async def can_view_session(
    user: User = Depends(get_current_user),
    session: Optional[AgentSession] = Depends(get_session),
) -> bool:
    """Check if the user can view a session."""
    if session and session.created_by != user.id:
        raise HTTPException(status_code=403, detail="Not your session")
    return True


async def can_close_session(
    user: User = Depends(get_current_user),
    session: Optional[AgentSession] = Depends(get_session),
):
    """Only allow users to close their own sessions."""
    if session and session.created_by != user.id:
        raise HTTPException(
            status_code=403, detail="Cannot close another user's session"
        )


runner = Runner(
    AgentLauncher(create_agent=create_agent, join_call=join_call),
    serve_options=ServeOptions(
        get_current_user=get_current_user,
        can_start_session=can_start_session,
        can_view_session=can_view_session,
        can_close_session=can_close_session,
    ),
)

if __name__ == "__main__":
    runner.cli()
