"""SIGTERM ends the process within a known bound whatever the agents do (issue 12).

Agents that swallow cancellation (tests/server/stubborn_agent.py) are logged by
task name and left behind; the process still exits 0.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import grpc
from google.protobuf import struct_pb2

from agentplane.clients.grpcio import session_service_pb2 as pb
from agentplane.clients.grpcio import session_service_pb2_grpc as pb_grpc
from agentplane.server.process import FINAL_GRACE

from .support import Proc, console_script, sync_error

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


def test_start_answers_at_create_agent_timeout_although_the_factory_ignores_it(
    procs: Start,
) -> None:
    proc = _serve(procs)
    metadata = struct_pb2.Struct()
    metadata.update({"stubborn_create": True})
    with grpc.insecure_channel(f"127.0.0.1:{proc.grpc_port()}") as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        began = time.monotonic()
        error = sync_error(stub.Start, pb.StartRequest(call_id="c1", metadata=metadata), timeout=10)
        # create_agent_timeout (0.5 s) + the launcher's cancel grace (1 s), not the 10 s deadline.
        assert time.monotonic() - began < 5
        assert error.code == grpc.StatusCode.INTERNAL
        assert error.reason == "AGENT_START_FAILED"
        # The stubborn factory still holds one of the two slots.
        stub.Start(pb.StartRequest(call_id="c2"), timeout=5)
        full = sync_error(stub.Start, pb.StartRequest(call_id="c3"), timeout=5)
        assert full.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert full.reason == "MAX_CONCURRENT_SESSIONS"
    proc.send(signal.SIGTERM)
    assert proc.wait(EXIT_BOUND) == 0
    assert "agentplane-create-" in proc.text().split("left behind")[-1]
