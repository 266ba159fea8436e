# From Vision Agents' docs, "HTTP Server" page: "Custom FastAPI App", as the docs write it.
#
# Lines that differ from the docs:
#   from agentplane.server import AgentLauncher, Runner, ServeOptions
#                                 (added: Vision Agents' come from vision_agents.core)
#   from tests.vision.docs_examples.http_quickstart import create_agent, join_call
#                                 (added: the page's own, from "Quick Start")
#   the last four lines, added: the snippet builds `options` and leaves serving them to the
#   reader (as the page's "Permissions" does: `Runner(..., serve_options=options).cli()`).
# fmt: off
from fastapi import FastAPI

from agentplane.server import AgentLauncher, Runner, ServeOptions
from tests.vision.docs_examples.http_quickstart import create_agent, join_call

app = FastAPI(title="My Agent API")

@app.get("/custom")
async def custom_endpoint():
    return {"status": "ok"}

options = ServeOptions(fast_api=app)

Runner(
    AgentLauncher(create_agent=create_agent, join_call=join_call),
    serve_options=options,
).cli()
