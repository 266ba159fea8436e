"""Compatibility with code written for other agent servers (Vision Agents, and its FastAPI idioms).

Adapters only: they translate what such code expects or declares into
agentplane's terms and decide nothing themselves. They never import the
framework they adapt: they read what the user's code already imported.

- ``vision_agents``: ``agentplane.core.agent.AgentAdapter`` for Vision Agents
  agents (warm-up, collector metrics, close).
- ``callbacks``, ``dependencies``, ``fastapi_deps``: FastAPI-style permission
  callbacks and ``get_current_user`` resolved with FastAPI's own machinery
  (optional extra ``agentplane[fastapi]``), over gRPC and HTTP alike.
"""
