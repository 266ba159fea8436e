# From Vision Agents' docs, "HTTP Server" page: "Quick Start", a complete file, as the
# docs write it.
#
# Lines that differ from the docs:
#   from vision_agents.core import Agent, User
#   from agentplane.server import AgentLauncher, Runner
#                                 (Vision Agents: from vision_agents.core import Agent,
#                                 AgentLauncher, Runner, User)
#   from tests.vision.standins import gemini, deepgram, elevenlabs, getstream
#                                 (Vision Agents: from vision_agents.plugins import ...)
# ruff: noqa: I001
# fmt: off
from vision_agents.core import Agent, User
from agentplane.server import AgentLauncher, Runner
from tests.vision.standins import gemini, deepgram, elevenlabs, getstream

async def create_agent(**kwargs) -> Agent:
    return Agent(
        edge=getstream.Edge(),
        agent_user=User(name="Assistant", id="agent"),
        instructions="You're a helpful voice assistant.",
        llm=gemini.LLM("gemini-2.5-flash"),
        tts=elevenlabs.TTS(),
        stt=deepgram.STT(),
    )

async def join_call(agent: Agent, call_type: str, call_id: str, **kwargs) -> None:
    call = await agent.create_call(call_type, call_id)
    async with agent.join(call):
        await agent.finish()

if __name__ == "__main__":
    Runner(AgentLauncher(create_agent=create_agent, join_call=join_call)).cli()
