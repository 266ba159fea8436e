"""SIGTERM ends the process within a known bound whatever the agents do (issue 12).

Agents that swallow cancellation (tests/server/stubborn_agent.py) are logged by
task name and left behind; the process still exits 0.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import grpc

from agentplane.clients.grpcio import session_service_pb2 as pb
from agentplane.clients.grpcio import session_service_pb2_grpc as pb_grpc
from agentplane.server.process import FINAL_GRACE

from .support import Proc, console_script

Start = Callable[[list[str]], Proc]
AGENT = "tests.server.stubborn_agent:launcher"
# stubborn_agent.py: drain_timeout 0.5, stop_timeout 0.5, create_agent_timeout 0.5.
# The bound of agentplane.server.process: drain + 2 x stop + two listener closes
# (at most 5 s each, instant here) + FINAL_GRACE; plus process start-up slack.
EXIT_BOUND = 0.5 + 2 * 0.5 + FINAL_GRACE + 10.0


def _serve(procs: Start) -> Proc:
    proc = procs(
        [console_script("agentplane"), "serve", "--grpc-port", "0", "--port", "0", "--agent", AGENT]
    )
    proc.wait_for("agentplane ready")
    return proc


def test_sigterm_exits_zero_although_join_call_ignores_cancellation(procs: Start) -> None:
    proc = _serve(procs)
    with grpc.insecure_channel(f"127.0.0.1:{proc.grpc_port()}") as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        started = stub.Start(pb.StartRequest(call_id="stubborn"), timeout=5)
    signalled = time.monotonic()
    proc.send(signal.SIGTERM)
    assert proc.wait(EXIT_BOUND) == 0
    assert time.monotonic() - signalled < EXIT_BOUND
    log = proc.text()
    assert f"session {started.session_id} ended: shutdown" in log
    assert "ignored cancellation" in log
    # The task is named after its session in the final report.
    assert f"agentplane-session-{started.session_id}" in log.split("left behind")[-1]
    assert "join_call swallowed a cancellation" in proc.text("stdout")
