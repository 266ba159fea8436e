"""What every test folder shares: fake agents, bounded waits, real servers, a virtual clock.

``from tests.support import FakeAgents, wait_until, serving, ...``. Nothing in
here decides an outcome by sleeping: tests wait for a condition (bounded),
for an event a fake agent sets, or advance a virtual clock.
"""

from agentplane.testing import Served, WaitTimeout, serving, wait_until

from .agents import (
    SERVER_OPTIONS,
    FakeAgent,
    FakeAgents,
    GatewayAgents,
    ServerAgents,
    join_call,
    joined,
)
from .clock import VirtualClockLoop
from .events import collect, ended_event_of, kinds
from .servers import KINDS, Deployment, Servers, deploy, open_options
from .waiting import settle, wait_ended, wait_until_sync

__all__ = [
    "KINDS",
    "SERVER_OPTIONS",
    "Deployment",
    "FakeAgent",
    "FakeAgents",
    "GatewayAgents",
    "Served",
    "ServerAgents",
    "Servers",
    "VirtualClockLoop",
    "WaitTimeout",
    "collect",
    "deploy",
    "ended_event_of",
    "join_call",
    "joined",
    "kinds",
    "open_options",
    "serving",
    "settle",
    "wait_ended",
    "wait_until",
    "wait_until_sync",
]
