# From Vision Agents' docs, "Running Agents" (the Runner page): "Session Limits & Resource
# Management", as the docs write it.
#
# Lines that differ from the docs:
#   from agentplane.server import AgentLauncher, Runner
#                                 (added: Vision Agents' come from vision_agents.core)
#   from tests.vision.docs_examples.server_example import create_agent, join_call
#                                 (added: the page's own "Basic Example" does not start
#                                 under vision-agents 0.6.9, see runner_basic.py)
#   the last two lines, added: running `runner` (`runner.cli()`, as in the "Basic Example").
# fmt: off
from agentplane.server import AgentLauncher, Runner
from tests.vision.docs_examples.server_example import create_agent, join_call

runner = Runner(
    AgentLauncher(
        create_agent=create_agent,
        join_call=join_call,
        max_concurrent_sessions=10,       # Limit total concurrent agents
        max_sessions_per_call=1,          # One agent per call
        max_session_duration_seconds=3600, # 1 hour max per session
        agent_idle_timeout=120.0,         # Disconnect after 2 min alone
    )
)

if __name__ == "__main__":
    runner.cli()
