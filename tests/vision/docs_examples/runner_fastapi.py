# From Vision Agents' docs, "Running Agents" (the Runner page): "Customizing the Default
# FastAPI App", as the docs write it.
#
# Lines that differ from the docs:
#   from agentplane.server import AgentLauncher, Runner
#                                 (added: Vision Agents' come from vision_agents.core)
#   from tests.vision.docs_examples.server_example import create_agent, join_call
#                                 (added: the page's own "Basic Example" does not start
#                                 under vision-agents 0.6.9, see runner_basic.py)
#   the last two lines, added: running `runner` (`runner.cli()`, as in the "Basic Example").
# fmt: off
from fastapi.middleware.gzip import GZipMiddleware

from agentplane.server import AgentLauncher, Runner
from tests.vision.docs_examples.server_example import create_agent, join_call

runner = Runner(AgentLauncher(create_agent=create_agent, join_call=join_call))

# Adding a custom endpoint
@runner.fast_api.get("/custom")
def custom_endpoint():
    return {"message": "Custom endpoint"}

# Add custom middleware
runner.fast_api.add_middleware(GZipMiddleware, minimum_size=1000)

if __name__ == "__main__":
    runner.cli()
