"""Fixtures of the Vision Agents tests: the real package, offline, behind a real server.

The whole folder is skipped where vision-agents is not installed (it is in the
``test`` extra). Each test gets a fresh model folder for the multi-speaker
filter (the tiny Silero-shaped model of ``vad_model.py``), fresh warm-up
counts, and the ``serve`` fixture of the server tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

pytest.importorskip("vision_agents.core")

from tests.support import Servers

from .standins import Agents, reset_counts
from .vad_model import write_model


@pytest.fixture(autouse=True)
def _fresh_counts() -> Iterator[None]:
    reset_counts()
    yield
    reset_counts()


@pytest.fixture
def agents(tmp_path: Path) -> Agents:
    """``create_agent`` of real Vision Agents agents with offline stand-in plugins."""
    model_dir = tmp_path / "vad"
    write_model(model_dir)
    return Agents(model_dir)


@pytest.fixture
async def serve() -> AsyncIterator[Servers]:
    """``await serve(launcher)``: a real server on 127.0.0.1:0, stopped after the test."""
    servers = Servers()
    try:
        yield servers
    finally:
        await servers.aclose()
