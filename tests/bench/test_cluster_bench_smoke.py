"""The cluster benchmark runs end to end in under a minute: nodes on a real redis-server.

The full run is by hand (``./dev bench --cluster``). This checks that the
harness still starts Redis and the nodes, drives every scenario against the
current cluster code and writes its report.
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
def test_quick_cluster_run_measures_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--cluster", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    raw = json.loads((out / "raw.json").read_text())
    assert raw["suite"] == "cluster"
    (alone,) = raw["samples"]["embedded"]
    (one,) = raw["samples"]["redis1"]
    (three,) = raw["samples"]["redis3"]
    for sample, lifecycles in ((alone, ("one",)), (one, ("one",)), (three, ("rr", "sticky"))):
        assert sample["starts/rate"] > 0 and sample["starts/errors"] == 0
        for variant in lifecycles:
            assert sample[f"lifecycle/{variant}/rate"] > 0
            assert sample[f"lifecycle/{variant}/errors"] == 0
        assert math.isfinite(sample["close/same/grpc/p99"])
        assert math.isfinite(sample["close/same/http/p99"])
    for via in ("grpc", "http"):
        assert math.isfinite(three[f"close/cross/{via}/p99"])
    assert three["get/other/c16/rate"] > 0 and three["get/other/c16/cpu_ms/redis"] >= 0
    # Redis commands: a Start sends its admission script, a Get one GET, whoever answers.
    assert three["ops/start/node/evalsha"] >= 1
    assert three["ops/get_other/node/get"] == pytest.approx(1.0, abs=0.2)
    assert three["ops/close_cross/node/publish"] == pytest.approx(1.0, abs=0.2)
    assert three["ops/event/node"] > one["ops/event/node"] > 0  # every node follows the stream
    assert 0 < three["memory/held/bytes_per_session"] < 100_000

    report = (out / "report.md").read_text()
    # Redis's CPU comes from tick counters: a window of cheap Gets may read 0, and the
    # report says so instead of failing on the division.
    from bench.cluster.report import render

    for sample in raw["samples"]["redis3"]:
        sample["get/other/c16/cpu_ms/redis"] = 0.0
    rendered = render(raw)
    assert "one Redis core would carry" not in rendered or "its CPU read 0" in rendered
    assert "## Targets" in report
    assert "## 4. Redis: commands per operation, and memory" in report
