"""buf lint, format and breaking-change checks of proto/, and proof that the breaking check bites.

buf comes from PATH or <repo>/node_modules/.bin (installed by `npm ci`, which
./dev test runs). A missing buf fails these tests rather than skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def buf() -> str:
    found = shutil.which("buf") or shutil.which(
        "buf", path=str(REPO_ROOT / "node_modules" / ".bin")
    )
    assert found, "buf not found on PATH or in node_modules/.bin: run `npm ci` (./dev test does)"
    return found


def run(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False, timeout=300)


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    isolated = ["-c", "user.name=contract-test", "-c", "user.email=test@example.invalid"]
    isolated += ["-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(
        ["git", *isolated, *args], cwd=cwd, capture_output=True, text=True, check=False, env=env
    )


def test_buf_lint() -> None:
    done = run(buf(), "lint")
    assert done.returncode == 0, done.stdout + done.stderr


def test_buf_format() -> None:
    done = run(buf(), "format", "-d", "--exit-code")
    assert done.returncode == 0, (
        "proto/ is not buf-formatted (run `buf format -w`):\n" + done.stdout
    )


def test_buf_breaking_against_main() -> None:
    tool = buf()
    has_main = run("git", "rev-parse", "--verify", "--quiet", "refs/heads/main")
    assert has_main.returncode == 0, (
        "branch main is not available locally: fetch it (git fetch origin main:main)"
    )
    listed = run("git", "ls-tree", "-r", "--name-only", "main", "--", "proto/agentplane")
    assert listed.returncode == 0, listed.stderr
    if not any(name.endswith(".proto") for name in listed.stdout.split()):
        pytest.skip("branch main has no proto/agentplane/*.proto yet: nothing to compare against")
    done = run(tool, "breaking", "--against", ".git#branch=main")
    assert done.returncode == 0, done.stdout + done.stderr


def test_buf_breaking_detects_a_renumbered_field(tmp_path: Path) -> None:
    tool = buf()
    shutil.copytree(REPO_ROOT / "proto", tmp_path / "proto")
    shutil.copy(REPO_ROOT / "buf.yaml", tmp_path / "buf.yaml")
    for step in (("init", "-q"), ("add", "-A"), ("commit", "-q", "-m", "contract")):
        done = git(*step, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert run(tool, "breaking", "--against", ".git#branch=main", cwd=tmp_path).returncode == 0

    proto = tmp_path / "proto" / "agentplane" / "v1" / "session_service.proto"
    text = proto.read_text()
    assert text.count("string call_type = 2;") == 1
    proto.write_text(text.replace("string call_type = 2;", "string call_type = 5;"))
    assert run(tool, "lint", cwd=tmp_path).returncode == 0  # still a valid, lint-clean module

    done = run(tool, "breaking", "--against", ".git#branch=main", cwd=tmp_path)
    assert done.returncode != 0
    assert "StartRequest" in done.stdout and "call_type" in done.stdout, done.stdout
