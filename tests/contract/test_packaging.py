"""The wheel installs everything under `agentplane` and the generated `google` packages stay inside it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_only_agentplane_at_top_level(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist()}
    dist_info = {name for name in top if name.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert top - dist_info == {"agentplane"}
    for forbidden in ("google", "server", "gateway", "clients", "betterproto", "grpcio"):
        assert forbidden not in top


def test_generated_clients_are_inside(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for expected in (
        "agentplane/clients/__init__.py",
        "agentplane/clients/betterproto/__init__.py",
        "agentplane/clients/betterproto/agentplane/v1/__init__.py",
        "agentplane/clients/betterproto/google/protobuf/__init__.py",
        "agentplane/clients/betterproto/google/api/__init__.py",
        "agentplane/clients/grpcio/__init__.py",
        "agentplane/clients/grpcio/session_service_pb2.py",
        "agentplane/clients/grpcio/session_service_pb2.pyi",
        "agentplane/clients/grpcio/session_service_pb2_grpc.py",
        "agentplane/clients/grpcio/session_service_grpc.py",
        "agentplane/core/__init__.py",
        "agentplane/service/__init__.py",
        "agentplane/rpc/__init__.py",
        "agentplane/http/__init__.py",
        "agentplane/ops/__init__.py",
        "agentplane/server/__init__.py",
        "agentplane/demo/__init__.py",
        "agentplane/testing/__init__.py",
        "agentplane/gateway/__init__.py",
    ):
        assert expected in names, expected
    assert not any(name.startswith("agentplane/google/") for name in names)


def test_every_client_file_is_packaged(wheel: zipfile.ZipFile) -> None:
    clients = REPO_ROOT / "clients" / "python" / "agentplane" / "clients"
    expected = {
        "agentplane/clients/" + path.relative_to(clients).as_posix()
        for path in clients.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert expected - set(wheel.namelist()) == set()


def test_py_typed_markers_are_included(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    # PEP 561: a namespace package marks each of its packages, not itself.
    for package in ("core", "service", "rpc", "http", "ops", "server", "demo", "testing", "gateway",
                    "clients", "clients/grpcio", "clients/betterproto"):  # fmt: skip
        assert f"agentplane/{package}/py.typed" in names, package
    assert "agentplane/__init__.py" not in names


# The real google.* modules must not come from inside agentplane/clients/ (where the
# generated betterproto copies live), wherever the checkout or install is: a clone
# in a folder named "agentplane" is the ordinary case.
SHADOW_CHECK = """
import sys
from pathlib import Path
import agentplane.clients.betterproto as bp
import google.protobuf, google.protobuf.struct_pb2 as s, google.api.annotations_pb2 as a
from google.protobuf import json_format
from agentplane.clients.grpcio import session_service_pb2_grpc, session_service_grpc
clients = Path(bp.__file__).resolve().parent.parent
for module in (google.protobuf, s, a):
    assert not Path(module.__file__).resolve().is_relative_to(clients), module.__file__
assert s.Struct.DESCRIPTOR.full_name == "google.protobuf.Struct"
assert bp.google.protobuf.Struct is not s.Struct
print(bp.__file__)
print(session_service_grpc.__file__)
print(json_format.MessageToJson(s.Struct(fields={"k": s.Value(bool_value=True)}), indent=None))
"""


def test_generated_google_does_not_shadow_protobuf() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SHADOW_CHECK], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == '{"k": true}'


def test_installed_wheel_imports(wheel: zipfile.ZipFile, tmp_path: Path) -> None:
    """The same check against the unpacked wheel, which comes first on sys.path."""
    site = tmp_path / "site"
    wheel.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", SHADOW_CHECK],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    betterproto_file, grpclib_file, json_text = done.stdout.splitlines()
    assert Path(betterproto_file).is_relative_to(site)
    assert Path(grpclib_file).is_relative_to(site)
    assert json_text == '{"k": true}'


def test_version_is_written_once() -> None:
    """``agentplane.server.__version__`` is the distribution's, which pyproject.toml sets."""
    import importlib.metadata
    import tomllib

    import agentplane.server

    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert agentplane.server.__version__ == declared
    assert importlib.metadata.version("agentplane") == declared


def test_agentplane_is_a_namespace_of_the_three_source_roots() -> None:
    import agentplane

    assert getattr(agentplane, "__file__", None) is None  # PEP 420: no __init__.py
    import agentplane.clients
    import agentplane.core
    import agentplane.gateway

    assert Path(agentplane.core.__file__ or "").is_relative_to(REPO_ROOT / "server")
    assert Path(agentplane.gateway.__file__ or "").is_relative_to(REPO_ROOT / "gateway")
    assert Path(agentplane.clients.__file__ or "").is_relative_to(REPO_ROOT / "clients" / "python")
