"""mypy --strict, Pyright, ruff and the layering rules over the hand-written code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Every folder of hand-written Python that exists in this checkout.
LINTED = [p for p in ("server", "gateway", "scripts", "tests", "bench") if (REPO / p).is_dir()]
TYPED = [p for p in ("server", "gateway", "scripts", "bench") if (REPO / p).is_dir()]


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "NO_COLOR": "1"}, check=False,
    )  # fmt: skip


def test_mypy_strict_on_plain_paths(tmp_path: Path) -> None:
    # No install, no symlinks: pyproject's mypy_path names the source roots.
    done = _run(
        sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
        "--exclude", r"\.venv-peer/", *TYPED,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_pyright_resolves_every_import() -> None:
    pyright = shutil.which("pyright") or str(REPO / "node_modules" / ".bin" / "pyright")
    if not Path(pyright).exists():
        pytest.fail("pyright is not installed: run the tests through ./dev test")
    done = _run(pyright, "--outputjson", "server", "gateway")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr


def test_ruff_lint() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    done = _run(str(ruff), "check", "--no-cache", *LINTED, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    done = _run(str(ruff), "format", "--check", "--no-cache", *LINTED, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
