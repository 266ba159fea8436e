"""Real processes configured without code: a user's file under AGENTPLANE_* variables and
--env-file, ``agentplane serve`` over mTLS with ``agentplane gateway`` dialling it, and
a start refused in one line for a key that does not match its certificate (issue 15)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from agentplane.clients.grpcio import session_service_pb2 as pb
from agentplane.clients.grpcio import session_service_pb2_grpc as pb_grpc
from agentplane.net import client_context
from tests.server.support import REPO_ROOT, console_script, subprocess_env, sync_error
from tests.support.tls import Pki

BEARER = "authorization"


def test_a_users_file_takes_its_limits_and_token_from_env_and_env_file(
    procs: Any, tmp_path: Path
) -> None:
    # configured_agent.py sets api_token="file-token" in its ServeOptions and no limit.
    env_file = tmp_path / "node.env"
    env_file.write_text("AGENTPLANE_MAX_CONCURRENT_SESSIONS=1\nAGENTPLANE_API_TOKEN=file-loses\n")
    script = REPO_ROOT / "tests" / "server" / "configured_agent.py"
    proc = procs(
        [sys.executable, str(script), "serve", "--env-file", str(env_file)],
        env={"AGENTPLANE_API_TOKEN": "env-token"},
    )
    port = proc.grpc_port()
    proc.wait_for("agentplane ready")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        for token in ("file-token", "file-loses"):  # the code's, and the file's (env wins)
            refused = sync_error(
                stub.Start,
                pb.StartRequest(call_id="c"),
                metadata=((BEARER, f"Bearer {token}"),),
                timeout=5,
            )
            assert refused.code == grpc.StatusCode.UNAUTHENTICATED
        auth = ((BEARER, "Bearer env-token"),)
        assert stub.Start(pb.StartRequest(call_id="first"), metadata=auth, timeout=5).session_id
        full = sync_error(stub.Start, pb.StartRequest(call_id="second"), metadata=auth, timeout=5)
        assert full.code == grpc.StatusCode.RESOURCE_EXHAUSTED  # the file's limit of 1
        assert full.reason == "MAX_CONCURRENT_SESSIONS"
    proc.send(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.text()


def test_serve_over_mtls_with_the_gateway_dialling_it(procs: Any, pki: Pki) -> None:
    server = procs(
        [console_script("agentplane"), "serve", "--grpc-port", "0", "--port", "0",
         "--agent", "tests.support.agents:drain_runner"],
        env={"AGENTPLANE_TLS_CERT": pki.server_cert, "AGENTPLANE_TLS_KEY": pki.server_key,
             "AGENTPLANE_TLS_CLIENT_CA": pki.ca},
    )  # fmt: skip
    port = server.grpc_port()
    http_port = int(server.wait_for(r"agentplane HTTP listening on 127\.0\.0\.1:(\d+)").group(1))
    server.wait_for("agentplane serves TLS")
    server.wait_for("agentplane ready")
    server.wait_for(r"^\s+health\s")  # the summary's last line
    assert "(TLS, client certificates required)" in server.text()
    assert f"https://127.0.0.1:{http_port}/docs" in server.text()

    # grpcio with the CA's client certificate; without one the handshake is refused.
    read = Path
    good = grpc.ssl_channel_credentials(
        read(pki.ca).read_bytes(),
        read(pki.client_key).read_bytes(),
        read(pki.client_cert).read_bytes(),
    )
    with grpc.secure_channel(f"127.0.0.1:{port}", good) as channel:
        assert pb_grpc.SessionServiceStub(channel).Start(pb.StartRequest(call_id="g"), timeout=10)
    bare = grpc.ssl_channel_credentials(read(pki.ca).read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{port}", bare) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.SessionServiceStub(channel).Start(pb.StartRequest(call_id="x"), timeout=5)
        assert isinstance(refused.value, grpc.Call)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # HTTPS on the HTTP port, with the client certificate.
    context = client_context(pki.ca, pki.client_cert, pki.client_key, alpn=())
    with httpx.Client(verify=context, timeout=10) as http:
        assert http.get(f"https://127.0.0.1:{http_port}/health").status_code == 200

    # The client CLI with the CA's client certificate lists what grpcio started.
    cli = [console_script("agentplane"), "sessions", "list", "-o", "json",
           "--server", f"127.0.0.1:{port}", "--tls-ca", pki.ca]  # fmt: skip
    client_cert = ["--tls-cert", pki.client_cert, "--tls-key", pki.client_key]
    listed = subprocess.run(
        [*cli, *client_cert], env=subprocess_env(), capture_output=True, text=True, timeout=30
    )
    assert listed.returncode == 0, listed.stderr
    assert '"call_id":"g"' in listed.stdout.replace(" ", ""), listed.stdout
    refused_cli = subprocess.run(
        cli, env=subprocess_env(), capture_output=True, text=True, timeout=30
    )
    assert refused_cli.returncode == 64 + 14, refused_cli.stderr  # UNAVAILABLE: no certificate

    gateway = procs(
        [console_script("agentplane"), "gateway", "--upstream", f"127.0.0.1:{port}", "--port", "0",
         "--upstream-tls-ca", pki.ca, "--upstream-tls-cert", pki.client_cert,
         "--upstream-tls-key", pki.client_key],
    )  # fmt: skip
    gateway_port = int(gateway.wait_for(r"agentplane gateway on 127\.0\.0\.1:(\d+)").group(1))
    with httpx.Client(base_url=f"http://127.0.0.1:{gateway_port}", timeout=10) as http:
        assert http.get("/ready").status_code == 200
        assert http.post("/sessions", json={"call_id": "through-gateway"}).status_code == 201
    for proc in (gateway, server):
        proc.send(signal.SIGTERM)
        assert proc.wait(20) == 0, proc.text()


def test_a_key_that_does_not_match_is_one_line_and_no_port(pki: Pki) -> None:
    result = subprocess.run(
        [console_script("agentplane"), "serve", "--grpc-port", "0", "--port", "0",
         "--tls-cert", pki.server_cert, "--tls-key", pki.wrong_key],
        env=subprocess_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: TLS key {pki.wrong_key} does not match certificate {pki.server_cert}"
    )
    assert "listening" not in result.stderr
    bad_env = subprocess.run(
        [console_script("agentplane"), "serve"],
        env={**subprocess_env(), "AGENTPLANE_DRAIN_TIMEOUT": "soon"},
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad_env.returncode == 2
    assert "Traceback" not in bad_env.stderr
    last = bad_env.stderr.strip().splitlines()[-1]
    assert "--drain-timeout" in last and "AGENTPLANE_DRAIN_TIMEOUT" in last
