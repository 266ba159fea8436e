"""mypy --strict and ruff over the hand-written code, as part of the suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The repository folders as they are installed (setup.py maps them so).
# Every folder of hand-written Python that exists in this checkout.
LINTED = [p for p in ("server", "gateway", "scripts", "tests", "bench") if (REPO / p).is_dir()]
INSTALLED_AS = {"server": "server", "gateway": "gateway", "clients": "clients/python"}


def test_mypy_strict(tmp_path: Path) -> None:
    # mypy cannot follow setuptools' editable-install finder, so give it the
    # installed layout through symlinks: agentplane/server -> server/, ...
    package = tmp_path / "agentplane"
    package.mkdir()
    for name, folder in INSTALLED_AS.items():
        (package / name).symlink_to(REPO / folder, target_is_directory=True)
    result = subprocess.run(
        [
            sys.executable, "-m", "mypy",
            "--config-file", str(REPO / "pyproject.toml"),
            "--cache-dir", str(tmp_path / ".mypy_cache"),
            "-p", "agentplane.server", "-p", "agentplane.gateway",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    scripts = subprocess.run(
        [
            sys.executable, "-m", "mypy",
            "--config-file", str(REPO / "pyproject.toml"),
            "--cache-dir", str(tmp_path / ".mypy_cache"),
            str(REPO / "scripts" / "generate_clients.py"),
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert scripts.returncode == 0, scripts.stdout + scripts.stderr
    (tmp_path / "bench").symlink_to(REPO / "bench", target_is_directory=True)
    bench = subprocess.run(
        [
            sys.executable, "-m", "mypy",
            "--config-file", str(REPO / "pyproject.toml"),
            "--cache-dir", str(tmp_path / ".mypy_cache"),
            "--exclude", r"\.venv-peer/", "-p", "bench",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stdout + bench.stderr


def test_ruff_lint() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "check", "--no-cache", *LINTED],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
