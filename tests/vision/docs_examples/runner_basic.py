# From Vision Agents' docs, "Running Agents" (the Runner page): "Basic Example", a complete
# file, as the docs write it.
#
# Lines that differ from the docs:
#   from vision_agents.core import Agent, User
#   from agentplane.server import AgentLauncher, Runner
#                                 (Vision Agents: from vision_agents.core import Agent,
#                                 AgentLauncher, Runner, User)
#   from tests.vision.standins import deepgram, elevenlabs, gemini, getstream
#                                 (Vision Agents: from vision_agents.plugins import ...)
#
# It does not start, under Vision Agents' own server either: vision-agents 0.6.9 registers
# async functions only, and create_agent's synchronous `get_weather` raises ValueError
# (test_docs_examples.py marks its test xfail with that reason).
# ruff: noqa: I001
# fmt: off
import logging
from dotenv import load_dotenv
from vision_agents.core import Agent, User
from agentplane.server import AgentLauncher, Runner
from tests.vision.standins import deepgram, elevenlabs, gemini, getstream

load_dotenv()
logging.basicConfig(level=logging.INFO)


async def create_agent(**kwargs) -> Agent:
    """Factory function that creates and configures an agent."""
    agent = Agent(
        edge=getstream.Edge(),
        agent_user=User(name="Assistant", id="agent"),
        instructions="You are a helpful voice assistant.",
        llm=gemini.LLM("gemini-2.5-flash-lite"),
        tts=elevenlabs.TTS(),
        stt=deepgram.STT(eager_turn_detection=True),
    )

    @agent.llm.register_function(description="Get the current weather for a location")
    def get_weather(location: str) -> str:
        return f"The weather in {location} is sunny and 72°F."

    return agent


async def join_call(agent: Agent, call_type: str, call_id: str, **kwargs) -> None:
    """Called when the agent should join a call."""
    call = await agent.create_call(call_type, call_id)

    async with agent.join(call):
        await agent.simple_response("Hello! How can I help you today?")
        await agent.finish()


if __name__ == "__main__":
    runner = Runner(AgentLauncher(create_agent=create_agent, join_call=join_call))
    runner.cli()
