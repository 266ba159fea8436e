"""Real server processes: `agentplane serve` with SIGTERM drains, the demo agent,
`agentplane run`, and a user's own file run as `python my_agent.py serve`.

These are synchronous tests: the server is another process, the clients are
grpcio sync stubs.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import struct_pb2
from grpclib.health.v1.health_pb2 import HealthCheckResponse

from agentplane.clients.grpcio import session_pb2
from agentplane.clients.grpcio import session_service_pb2 as pb
from agentplane.clients.grpcio import session_service_pb2_grpc as pb_grpc
from tests.support import wait_until_sync

from .support import REPO_ROOT, SERVICE, Proc, console_script, health_check, sync_error

Start = Callable[[list[str]], Proc]
SERVING = HealthCheckResponse.SERVING
NOT_SERVING = HealthCheckResponse.NOT_SERVING


def serve_args(*extra: str) -> list[str]:
    return [console_script("agentplane"), "serve", "--grpc-port", "0", "--port", "0", *extra]


def metadata(**values: Any) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def ended_lines(proc: Proc) -> dict[str, str]:
    """session id -> end reason, from the server's log."""
    found = re.findall(r"session (\S+) ended: (\w+)", proc.text())
    return dict(found)


def test_sigterm_drains_then_exits_zero(procs: Start) -> None:
    proc = procs(serve_args("--agent", "tests.support.agents:drain_runner"))
    port = proc.grpc_port()
    proc.wait_for("agentplane ready")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        stuck = [stub.Start(pb.StartRequest(call_id=f"stuck-{n}"), timeout=5) for n in range(2)]
        finishing = stub.Start(
            pb.StartRequest(call_id="finishing", metadata=metadata(run_for=1.0)), timeout=5
        )
        assert health_check(channel, SERVICE) == SERVING
        # A watcher of every session stays connected through the drain.
        feed = stub.StreamEvents(pb.StreamEventsRequest())
        feed.initial_metadata()  # subscribed
        ended: dict[str, int] = {}
        feed_end: list[grpc.StatusCode] = []

        def watch() -> None:
            try:
                for event in feed:
                    if event.WhichOneof("event") == "ended":
                        ended[event.session_id] = event.ended.session.end_reason
            except grpc.RpcError as error:
                assert isinstance(error, grpc.Call)
                feed_end.append(error.code())
            else:
                feed_end.append(feed.code())

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        signalled = time.monotonic()
        proc.send(signal.SIGTERM)
        proc.wait_for(r"SIGTERM: draining")
        # Readiness ("" and the SessionService) drops at once; liveness stays up while draining.
        assert health_check(channel, SERVICE) == NOT_SERVING
        assert health_check(channel, "") == NOT_SERVING
        assert health_check(channel, "liveness") == SERVING
        refused = sync_error(stub.Start, pb.StartRequest(call_id="late"), timeout=5)
        assert refused.code == grpc.StatusCode.UNAVAILABLE
        assert refused.reason == "DRAINING"
        # Running sessions are still served while they drain.
        got = stub.Get(pb.GetRequest(session_id=stuck[0].session_id), timeout=5)
        assert got.session.state == 2  # RUNNING

        code = proc.wait(15)
        took = time.monotonic() - signalled
        watcher.join(5)
    assert code == 0, proc.text()
    # drain_timeout is 2 s; the open stream must not hold the exit up.
    assert 1.8 <= took < 6, took
    assert "did not close" not in proc.text()
    ends = ended_lines(proc)
    assert ends[finishing.session_id] == "completed"  # finished within the drain window
    for started in stuck:
        assert ends[started.session_id] == "shutdown"
    assert "agentplane stopped" in proc.text()
    # The watcher saw every session end, with the same reasons, before the server went away.
    assert ended == {
        finishing.session_id: session_pb2.END_REASON_COMPLETED,
        stuck[0].session_id: session_pb2.END_REASON_SHUTDOWN,
        stuck[1].session_id: session_pb2.END_REASON_SHUTDOWN,
    }
    assert not watcher.is_alive()
    # The feed ends cleanly after the last events, not with a broken connection.
    assert feed_end == [grpc.StatusCode.OK]


def test_second_sigterm_stops_at_once(procs: Start) -> None:
    proc = procs(serve_args("--agent", "tests.support.agents:slow_drain_runner"))
    port = proc.grpc_port()
    proc.wait_for("agentplane ready")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        started = [stub.Start(pb.StartRequest(call_id=f"s{n}"), timeout=5) for n in range(2)]

    signalled = time.monotonic()
    proc.send(signal.SIGTERM)
    proc.wait_for(r"SIGTERM: draining \(up to 30 s\)")
    proc.send(signal.SIGTERM)
    code = proc.wait(15)
    took = time.monotonic() - signalled
    assert code == 0, proc.text()
    assert took < 5, took  # drain_timeout is 30 s
    assert "SIGTERM again" in proc.text()
    ends = ended_lines(proc)
    assert [ends[s.session_id] for s in started] == ["shutdown", "shutdown"]


def test_demo_agent_end_to_end(procs: Start) -> None:
    proc = procs(serve_args())
    port = proc.grpc_port()
    proc.wait_for("agentplane ready")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        started = stub.Start(pb.StartRequest(call_id="demo-call"), timeout=5)
        sid = started.session_id

        def two_frames() -> Any:
            metrics = stub.Metrics(pb.MetricsRequest(session_id=sid), timeout=5).metrics
            return metrics if metrics.get("video_frames_processed__total", 0) >= 2 else None

        # One frame a second: the second one comes about a second in.
        metrics = wait_until_sync(two_frames, timeout=15, interval=0.1)
        assert metrics["video_processing_latency_ms__avg"] > 0
        assert metrics["video_frames_processed__total"] >= 2
        assert (
            metrics["video_processing_latency_ms__count"]
            == metrics["video_frames_processed__total"]
        )

        events = stub.StreamEvents(
            pb.StreamEventsRequest(session_id=sid, after_cursor=0), timeout=5
        )
        joined = None
        for event in events:
            if event.WhichOneof("event") == "agent_event" and event.agent_event.name == "joined":
                joined = event
                break
        events.cancel()
        assert joined is not None
        assert dict(joined.agent_event.data)["call_id"] == "demo-call"

        closed = stub.Close(pb.CloseRequest(session_id=sid), timeout=5)
        assert closed.session.end_reason == 2  # CLOSED_BY_REQUEST

    proc.send(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.text()


def test_run_console_until_sigint(procs: Start) -> None:
    proc = procs([console_script("agentplane"), "run", "--call-id", "x"])
    started = proc.wait_for(r"session (\S+) started in call x \(default\)", name="stdout")
    proc.wait_for(r"event joined:", name="stdout")
    proc.send(signal.SIGINT)
    assert proc.wait(15) == 0, proc.text("stdout") + proc.text()
    ended = proc.wait_for(r"session (\S+) ended: (\S+)", name="stdout")
    assert ended.group(1) == started.group(1)
    assert ended.group(2) == "closed_by_request"


def test_user_file_serve(procs: Start) -> None:
    script = REPO_ROOT / "tests" / "server" / "standalone_agent.py"
    proc = procs([sys.executable, str(script), "serve", "--grpc-port", "0", "--port", "0"])
    port = proc.grpc_port()
    proc.wait_for("agentplane ready")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        started = stub.Start(pb.StartRequest(call_id="mine"), timeout=5)
        assert stub.Get(pb.GetRequest(session_id=started.session_id), timeout=5).session.state == 2
    proc.send(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.text()
    assert ended_lines(proc)[started.session_id] == "shutdown"


def test_user_file_serve_keeps_its_serve_options(procs: Start) -> None:
    """Flags left out of `serve` keep the file's ServeOptions (grpc_port=0 here, not 50051)."""
    script = REPO_ROOT / "tests" / "server" / "configured_agent.py"
    proc = procs([sys.executable, str(script), "serve"])
    port = proc.grpc_port()
    assert port != 50051
    http = proc.wait_for(r"agentplane HTTP listening on 127\.0\.0\.1:(\d+)")
    assert int(http.group(1)) not in (0, 8000)
    proc.wait_for("agentplane ready")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        refused = sync_error(stub.Start, pb.StartRequest(call_id="mine"), timeout=5)
        assert refused.code == grpc.StatusCode.UNAUTHENTICATED  # the file's api_token holds
        started = stub.Start(
            pb.StartRequest(call_id="mine"),
            metadata=(("authorization", "Bearer file-token"),),
            timeout=5,
        )
        assert started.close_token
    proc.send(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.text()
