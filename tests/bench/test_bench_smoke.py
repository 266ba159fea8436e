"""The benchmark harness runs end to end for a few seconds against agentplane alone.

The full run (with the peer, the Vision Agents agent server, in its own
environment) is by hand: ``./dev bench``. This checks that the harness still
drives every scenario against the current server and writes its report.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_run_measures_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-peer", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    raw = json.loads((out / "raw.json").read_text())
    (sample,) = raw["samples"]["agentplane"]
    (noop,) = raw["samples"]["noop"]
    assert raw["samples"]["peer"] == []
    for kind in ("betterproto", "grpcio"):
        assert sample[f"lifecycle/{kind}/rate"] > 0
        assert sample[f"lifecycle/{kind}/errors"] == 0
        assert sample[f"read/{kind}/rate"] > 0
        assert noop[f"noop/{kind}/rate"] > 0
    if "lifecycle/http/rate" in sample:  # once the gateway serves the JSON routes
        assert sample["lifecycle/http/errors"] == 0
        assert sample["read/http/rate"] > 0
    held = sorted({int(key.split("/")[1]) for key in sample if key.startswith("held/")})
    assert len(held) >= 2
    assert all(math.isfinite(sample[f"held/{k}/rss_kib_per_session"]) for k in held)
    # The machine's idle floor beside the server's idle CPU: a sleeping process, same core.
    assert all(0 <= sample[f"held/{k}/empty_cpu_pct"] < 100 for k in held)
    fanout = [key for key in sample if key.startswith("fanout/") and key.endswith("/delivered_pct")]
    assert fanout and all(sample[key] == 100.0 for key in fanout)
    # Every way of watching was measured: grpclib, raw HTTP/2, grpcio and (served) the
    # gateway's NDJSON.
    vias = {key.split("/")[2] for key in fanout}
    grpc_vias = {"grpc", "grpc-h2", "grpcio"}
    assert vias == (grpc_vias | {"http"} if "lifecycle/http/rate" in sample else grpc_vias)
    assert sample["start/p50"] > 0

    report = (out / "report.md").read_text()
    assert "## Targets" in report
    assert "## 6. The stack's own limit" in report
    assert "an empty process meanwhile (same core)" in report
    assert "| gRPC, grpcio watchers |" in report
    assert "| gRPC, raw HTTP/2 watchers |" in report
