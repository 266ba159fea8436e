# From Vision Agents' "Agent Server Example" README (examples/08_agent_server_example),
# "Running Agent HTTP Server": "Creating the Agent", "Joining a Call" and "Running with
# Runner", one after the other, as the docs write them.
#
# Lines that differ from the docs: the imports only. The snippets show none; added:
#   from typing import Any, Dict
#   from agentplane.server import AgentLauncher, Runner   (Vision Agents: vision_agents.core)
#   from vision_agents.core import Agent, User            (as with Vision Agents)
#   from tests.vision.standins import deepgram, elevenlabs, gemini, getstream
#                                     (Vision Agents: from vision_agents.plugins import ...)
#   from tests.vision.docs_examples.placeholders import get_weather_by_location
#                                     (left to the reader by the docs)
# ruff: noqa: UP006, UP035
# fmt: off
from typing import Any, Dict

from vision_agents.core import Agent, User

from agentplane.server import AgentLauncher, Runner
from tests.vision.docs_examples.placeholders import get_weather_by_location
from tests.vision.standins import deepgram, elevenlabs, gemini, getstream


async def create_agent(**kwargs) -> Agent:
    llm = gemini.LLM("gemini-2.5-flash-lite")

    agent = Agent(
        edge=getstream.Edge(),
        agent_user=User(name="My happy AI friend", id="agent"),
        instructions="You're a voice AI assistant...",
        llm=llm,
        tts=elevenlabs.TTS(),
        stt=deepgram.STT(eager_turn_detection=True),
    )

    @llm.register_function(description="Get current weather for a location")
    async def get_weather(location: str) -> Dict[str, Any]:
        return await get_weather_by_location(location)

    return agent


async def join_call(agent: Agent, call_type: str, call_id: str, **kwargs) -> None:
    call = await agent.create_call(call_type, call_id)

    async with agent.join(call):
        await agent.simple_response("tell me something interesting")
        await agent.finish()


if __name__ == "__main__":
    Runner(
        AgentLauncher(create_agent=create_agent, join_call=join_call),
    ).cli()
