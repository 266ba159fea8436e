"""The committed generated clients are what scripts/generate_clients.py makes of proto/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "generate_clients.py"
GENERATED = (
    "clients/python/agentplane/clients/grpcio",
    "clients/python/agentplane/clients/betterproto",
)
MARKER = "do not edit. Regenerate with ./dev generate."


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_generated_clients_are_fresh() -> None:
    done = check()
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_generated_file_carries_the_marker() -> None:
    files = [p for d in GENERATED for p in (REPO_ROOT / d).rglob("*") if p.is_file()]
    files = [p for p in files if "__pycache__" not in p.parts]
    assert len(files) >= 15
    for path in files:
        if path.suffix == ".binpb":  # binary: a descriptor set cannot carry a comment
            continue
        assert MARKER in path.read_text(encoding="utf-8").splitlines()[0], path


def test_descriptor_set_keeps_the_contract_comments() -> None:
    from google.protobuf import descriptor_pb2

    data = (REPO_ROOT / "clients/python/agentplane/clients/grpcio/descriptors.binpb").read_bytes()
    files = {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(data).file}
    assert set(files) == {"agentplane/v1/session.proto", "agentplane/v1/session_service.proto"}
    comments = [
        loc.leading_comments
        for loc in files["agentplane/v1/session.proto"].source_code_info.location
    ]
    assert any("session" in c.lower() for c in comments)


def test_check_reports_stale_missing_and_extra_files(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "proto", root / "proto")
    shutil.copytree(
        REPO_ROOT / "scripts", root / "scripts", ignore=shutil.ignore_patterns("__pycache__")
    )
    for folder in GENERATED:
        shutil.copytree(
            REPO_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    script = [sys.executable, str(root / "scripts" / "generate_clients.py"), "--root", str(root)]

    # The copy is as fresh as the repository.
    clean = subprocess.run([*script, "--check"], capture_output=True, text=True, check=False)
    assert clean.returncode == 0, clean.stderr

    # A new field makes the generated messages stale.
    proto = root / "proto" / "agentplane" / "v1" / "session_service.proto"
    text = proto.read_text()
    anchor = "  string idempotency_key = 4;\n"
    assert text.count(anchor) == 1
    proto.write_text(text.replace(anchor, anchor + "  // A new field.\n  string region = 5;\n"))
    (root / "clients/python/agentplane/clients/grpcio/session_grpc.py").unlink()
    (root / "clients/python/agentplane/clients/betterproto/stray.py").write_text("x = 1\n")

    stale = subprocess.run([*script, "--check"], capture_output=True, text=True, check=False)
    assert stale.returncode == 1
    report = stale.stderr
    assert (
        f"stale:   {root}/clients/python/agentplane/clients/grpcio/session_service_pb2.py" in report
    )
    assert (
        f"stale:   {root}/clients/python/agentplane/clients/betterproto/agentplane/v1/__init__.py"
        in report
    )
    assert f"missing: {root}/clients/python/agentplane/clients/grpcio/session_grpc.py" in report
    assert f"extra:   {root}/clients/python/agentplane/clients/betterproto/stray.py" in report
    assert "/session_pb2.py" not in report  # session.proto did not change

    # Regenerating fixes everything, and the new field is in both clients.
    regenerated = subprocess.run(script, capture_output=True, text=True, check=False)
    assert regenerated.returncode == 0, regenerated.stderr
    assert not (root / "clients/python/agentplane/clients/betterproto/stray.py").exists()
    assert (
        "region"
        in (
            root / "clients/python/agentplane/clients/betterproto/agentplane/v1/__init__.py"
        ).read_text()
    )
    assert (
        b"region"
        in (root / "clients/python/agentplane/clients/grpcio/session_service_pb2.py").read_bytes()
    )
    again = subprocess.run([*script, "--check"], capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
