# From Vision Agents' "Agent Server Example" README (examples/08_agent_server_example),
# "Configuration": the ServeOptions example, as the docs write it.
#
# Lines that differ from the docs:
#   from agentplane.server import AgentLauncher, Runner, ServeOptions
#                                 (Vision Agents: from vision_agents.core import Runner, ...)
#   from tests.vision.docs_examples.server_example import create_agent, join_call
#                                 (added: the README's own, from "Creating the Agent")
#   the last two lines, added: the snippet builds `runner` and leaves running it to the
#   reader (`.cli()`, as in "Running with Runner").
# ruff: noqa: F401, I001
# fmt: off
from agentplane.server import AgentLauncher, Runner, ServeOptions
from fastapi import Depends, HTTPException, Header

from tests.vision.docs_examples.server_example import create_agent, join_call


# Custom authentication
async def verify_api_key(x_api_key: str = Header(...)):
    if x_api_key != "secret-key":
        raise HTTPException(status_code=401, detail="Invalid API key")


# Custom permission check
async def can_start(x_api_key: str = Header(...)):
    await verify_api_key(x_api_key)


runner = Runner(
    AgentLauncher(create_agent=create_agent, join_call=join_call),
    serve_options=ServeOptions(
        # CORS settings
        cors_allow_origins=["https://myapp.com"],
        cors_allow_methods=["GET", "POST", "DELETE"],
        cors_allow_headers=["*"],
        cors_allow_credentials=True,

        # Permission callbacks (can use FastAPI Depends)
        can_start_session=can_start,
        can_close_session=can_start,
        can_view_session=can_start,
        can_view_metrics=can_start,
        get_current_user=verify_api_key,
    ),
)

if __name__ == "__main__":
    runner.cli()
