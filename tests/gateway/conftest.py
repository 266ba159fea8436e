"""Fixtures of the gateway tests: each test runs against both deployments."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from .support import KINDS, Agents, Deployment, deploy


@pytest.fixture
def agents() -> Agents:
    return Agents()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def gw(kind: str, agents: Agents) -> AsyncIterator[Deployment]:
    """A default deployment of the kind under test (no auth, no limits)."""
    async with deploy(kind, agents.launcher()) as deployment:
        yield deployment


@pytest.fixture
def deploy_kind(kind: str) -> Callable[..., AbstractAsyncContextManager[Deployment]]:
    """``async with deploy_kind(launcher, options) as gw`` in the kind under test."""

    def factory(*args: Any, **kwargs: Any) -> AbstractAsyncContextManager[Deployment]:
        return deploy(kind, *args, **kwargs)

    return factory
