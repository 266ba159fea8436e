# From Vision Agents' docs, "HTTP Server" page: "Permissions", as the docs write it.
#
# Lines that differ from the docs:
#   from agentplane.server import Runner, AgentLauncher, ServeOptions
#                                 (Vision Agents: from vision_agents.core import ...)
#   from tests.vision.docs_examples.http_quickstart import create_agent, join_call
#                                 (added: the page's own, from "Quick Start")
# ruff: noqa: F401, I001
# fmt: off
from fastapi import Depends, Header, HTTPException
from agentplane.server import Runner, AgentLauncher, ServeOptions

from tests.vision.docs_examples.http_quickstart import create_agent, join_call

async def verify_api_key(x_api_key: str = Header(...)):
    if x_api_key != "secret-key":
        raise HTTPException(status_code=401, detail="Invalid API key")

options = ServeOptions(
    can_start_session=verify_api_key,
    can_close_session=verify_api_key,
    can_view_session=verify_api_key,
    can_view_metrics=verify_api_key,
)

Runner(
    AgentLauncher(create_agent=create_agent, join_call=join_call),
    serve_options=options,
).cli()
