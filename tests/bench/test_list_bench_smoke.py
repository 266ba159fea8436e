"""The ListSessions benchmark (``python -m bench --list``) runs end to end, tiny."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.listing import VARIANTS, VIAS

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_list_run_measures_every_page(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--list", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    raw = json.loads((out / "raw.json").read_text())
    assert raw["suite"] == "list"
    (sample,) = raw["samples"]["agentplane"]
    small, large = raw["config"]["held_steps"]
    for k in (small, large):
        for variant in VARIANTS:
            for via in VIAS:
                key = f"list/{k}/{variant}/{via}"
                assert sample[f"{key}/p50"] > 0 and math.isfinite(sample[f"{key}/p99"]), key
                assert math.isfinite(sample[f"{key}/cpu_ms"]), key
        held = k + raw["config"]["error_sessions"]
        assert sample[f"list/{k}/first50/grpc/sessions"] == min(50, held)
        assert sample[f"list/{k}/middle50/http/sessions"] > 0
        # The sessions of one call, and the ERROR sessions (fail_after_ms), are all found.
        assert sample[f"list/{k}/call50/grpc/sessions"] == raw["config"]["call_sessions"]
        assert sample[f"list/{k}/error50/found"] == raw["config"]["error_sessions"]
    assert sample[f"list/{large}/first1000/http/sessions"] == held

    report = (out / "report.md").read_text()
    assert "| first page, 50 |" in report and "over" in report
