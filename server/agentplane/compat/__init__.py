"""Adapters for agent frameworks whose agents expect more of their host than the plain contract.

Each module here implements ``agentplane.core.agent.AgentAdapter`` for one
framework and imports only ``agentplane.core`` (never the framework: it reads
what the user's code already imported). ``vision_agents``: Vision Agents.
"""
