# From Vision Agents' docs, "Running Agents" (the Runner page): "Configuration with
# ServeOptions", as the docs write it.
#
# Lines that differ from the docs:
#   from agentplane.server import AgentLauncher, Runner, ServeOptions
#                                 (Vision Agents: from vision_agents.core import Runner, ...)
#   from tests.vision.docs_examples.server_example import create_agent, join_call
#                                 (added: the page's own "Basic Example" does not start
#                                 under vision-agents 0.6.9, see runner_basic.py)
#   the last two lines, added: the snippet builds `runner` and leaves running it to the
#   reader (`runner.cli()`, as in the "Basic Example").
# ruff: noqa: I001
# fmt: off
from agentplane.server import AgentLauncher, Runner, ServeOptions

from tests.vision.docs_examples.server_example import create_agent, join_call

runner = Runner(
    AgentLauncher(create_agent=create_agent, join_call=join_call),
    serve_options=ServeOptions(
        cors_allow_origins=["https://myapp.com"],
        cors_allow_methods=["GET", "POST", "DELETE"],
        cors_allow_headers=["Authorization"],
        cors_allow_credentials=True,
    ),
)

if __name__ == "__main__":
    runner.cli()
