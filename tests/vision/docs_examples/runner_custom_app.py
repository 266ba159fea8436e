# From Vision Agents' docs, "Running Agents" (the Runner page): "Using a Custom FastAPI
# Instance", as the docs write it.
#
# Lines that differ from the docs:
#   from agentplane.server import AgentLauncher, Runner, ServeOptions
#                                 (added: Vision Agents' come from vision_agents.core)
#   from tests.vision.docs_examples.server_example import create_agent, join_call
#                                 (added: the page's own "Basic Example" does not start
#                                 under vision-agents 0.6.9, see runner_basic.py)
#   the last two lines, added: running `runner` (`runner.cli()`, as in the "Basic Example").
# fmt: off
from fastapi import FastAPI

from agentplane.server import AgentLauncher, Runner, ServeOptions
from tests.vision.docs_examples.server_example import create_agent, join_call

app = FastAPI(
    title="My Agent Server",
    description="Custom agent server with additional features",
    version="1.0.0",
)

# Add your own routes before passing to Runner
@app.get("/custom")
def custom_endpoint():
    return {"message": "Custom endpoint"}

runner = Runner(
    AgentLauncher(create_agent=create_agent, join_call=join_call),
    serve_options=ServeOptions(fast_api=app),
)

if __name__ == "__main__":
    runner.cli()
