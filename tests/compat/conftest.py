"""Fixtures of the compatibility tests: each transport-parametrized test runs over all three."""

from __future__ import annotations

import pytest

from tests.support import GatewayAgents

from .support import TRANSPORTS


@pytest.fixture
def agents() -> GatewayAgents:
    return GatewayAgents()


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)
