"""Tests of the transport-free launcher core (agentplane.core)."""
