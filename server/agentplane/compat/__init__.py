"""Compatibility with code written for other agent servers (Vision Agents' FastAPI idioms).

Adapters only: they translate what such code declares into the service
layer's terms (``agentplane.service``) and never decide anything themselves.
"""
