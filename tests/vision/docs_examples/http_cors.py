# From Vision Agents' docs, "HTTP Server" page: "CORS Configuration", as the docs write it.
#
# Lines that differ from the docs:
#   from agentplane.server import AgentLauncher, Runner, ServeOptions
#                                 (added: Vision Agents' come from vision_agents.core)
#   from tests.vision.docs_examples.http_quickstart import create_agent, join_call
#                                 (added: the page's own, from "Quick Start")
#   the last four lines, added: the snippet builds `options` and leaves serving them to the
#   reader (as the page's "Permissions" does: `Runner(..., serve_options=options).cli()`).
# fmt: off
from agentplane.server import AgentLauncher, Runner, ServeOptions
from tests.vision.docs_examples.http_quickstart import create_agent, join_call

options = ServeOptions(
    cors_allow_origins=["https://myapp.com"],
    cors_allow_methods=["GET", "POST", "DELETE"],
    cors_allow_headers=["Authorization", "Content-Type"],
    cors_allow_credentials=True,
)

Runner(
    AgentLauncher(create_agent=create_agent, join_call=join_call),
    serve_options=options,
).cli()
