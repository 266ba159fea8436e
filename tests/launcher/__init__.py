"""Tests of the transport-free launcher core (agentplane.server.launcher)."""
