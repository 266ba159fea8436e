"""Fixtures shared by every test folder."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.support import REPO_ROOT, Proc

REPO = Path(__file__).resolve().parent.parent
# Local state that is not part of a source tree (and would only slow the copy down).
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
    "test-artifacts", ".runs", ".venv-peer",
)  # fmt: skip


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """A wheel built from a copy of the working tree (so the build leaves no files behind)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(work / "dist"), str(source)],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = (work / "dist").glob("agentplane-*.whl")
    return zipfile.ZipFile(built)


@pytest.fixture
def procs() -> Iterator[Any]:
    """``procs(args, cwd=REPO_ROOT, env=None)`` starts a subprocess (``Proc``; ``env`` adds
    variables); any still running is killed when the test ends."""
    started: list[Proc] = []

    def start(args: list[str], cwd: Path = REPO_ROOT, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(args, cwd, env)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            with contextlib.suppress(Exception):
                proc.kill()
