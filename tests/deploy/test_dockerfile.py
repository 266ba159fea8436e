"""deploy/Dockerfile, without docker (none here): what it builds and runs, checked against the repo.

The image itself is never built by these tests. What they check instead: the
package built from exactly the files the Dockerfile copies (after
``Dockerfile.dockerignore``) has the entry point and data files a node needs;
the image installs the extra that the cluster needs, runs as a non-root user,
exposes the ports compose and Kubernetes use, and its entry point is the
console script that compose and Kubernetes call with their arguments.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from tests.deploy.support import (
    DEPLOY,
    DOCKERFILE,
    REPO_ROOT,
    dockerfile_stages,
    exec_form,
    final_stage,
    flag_value,
    image_entrypoint,
    k8s_object,
    load_compose,
    pyproject,
)

NODES = ("node1", "node2", "node3")


def _build_stage_copies() -> list[str]:
    """The sources of the build stage's COPY instructions (no --from)."""
    sources = []
    for instruction, arguments in dockerfile_stages()[0]:
        if instruction == "COPY":
            assert not arguments.startswith("--from"), arguments
            *names, _destination = arguments.split()
            sources.extend(names)
    return sources


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """Dockerfile.dockerignore as (negated, regex), in order: the last match wins."""
    patterns = []
    for raw in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(glob):
            if glob.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif glob.startswith("**", i):
                regex += ".*"
                i += 2
            elif glob[i] == "*":
                regex += "[^/]*"
                i += 1
            elif glob[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(glob[i])
                i += 1
        patterns.append((negated, re.compile(regex + r"\Z")))
    return patterns


def _in_context(path: PurePosixPath, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: a pattern that matches a path or any of its parents decides it."""
    excluded = False
    candidates = [str(path), *(str(parent) for parent in path.parents if str(parent) != ".")]
    for negated, regex in patterns:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return not excluded


def _docker_context(target: Path) -> None:
    """Copy what the build stage sees: its COPY sources, less what the ignore file keeps out."""
    patterns = _ignore_patterns()
    for source in _build_stage_copies():
        top = REPO_ROOT / source
        assert top.exists(), f"COPY {source}: not in the repository"
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if not p.is_dir())
        for file in files:
            relative = PurePosixPath(file.relative_to(REPO_ROOT).as_posix())
            if not _in_context(relative, patterns):
                continue
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            # The demo page's scripts are symlinks into clients/browser/: kept as
            # links, as COPY keeps them, so they must resolve inside the copy.
            if file.is_symlink():
                destination.symlink_to(file.readlink())
            else:
                shutil.copy2(file, destination)


def test_both_stages_are_python_3_11_slim_as_the_package_requires() -> None:
    bases = [stage[0][1].split()[0] for stage in dockerfile_stages()]
    assert bases == ["python:3.11-slim", "python:3.11-slim"]
    assert pyproject()["project"]["requires-python"] == ">=3.11"


def test_the_image_installs_the_cluster_extra_from_this_source() -> None:
    runs = " ".join(args for name, args in dockerfile_stages()[0] if name == "RUN")
    installed = re.findall(r"pip install --no-cache-dir \"\.\[([a-z,]+)\]\"", runs)
    assert installed == ["redis"], runs
    extras = pyproject()["project"]["optional-dependencies"]
    assert any(dep.startswith("redis") for dep in extras["redis"])
    # The build stage copies what setuptools builds from.
    roots = pyproject()["tool"]["setuptools"]["packages"]["find"]["where"]
    copied = _build_stage_copies()
    for root in roots:
        assert root.split("/")[0] in copied, f"{root} is not copied into the build stage"
    assert {"pyproject.toml", "README.md", "LICENSE"} <= set(copied)


def test_the_entry_point_is_the_agentplane_console_script_and_the_default_command_serves() -> None:
    assert image_entrypoint() == ["agentplane"]
    assert pyproject()["project"]["scripts"]["agentplane"] == "agentplane.server.cli:main"
    assert exec_form(final_stage("CMD")) == ["serve", "--host", "0.0.0.0"]
    # Compose and Kubernetes give only the arguments: the entry point stays.
    for service in load_compose()["services"].values():
        assert "entrypoint" not in service
    (container,) = k8s_object("Deployment", "agentplane")["spec"]["template"]["spec"]["containers"]
    assert "command" not in container and container["args"][0] == "serve"


def test_the_image_runs_as_a_numeric_non_root_user_that_kubernetes_expects() -> None:
    user = final_stage("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0, user
    pod = k8s_object("Deployment", "agentplane")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(uid)


def test_exposed_ports_are_the_ports_compose_and_kubernetes_serve_on() -> None:
    exposed = {int(port) for port in final_stage("EXPOSE").split()}
    compose = load_compose()["services"]
    for name in NODES:
        command = compose[name]["command"]
        assert {int(flag_value(command, "--port")), int(flag_value(command, "--grpc-port"))} == (
            exposed
        )
    assert int(flag_value(compose["gateway"]["command"], "--port")) in exposed
    (container,) = k8s_object("Deployment", "agentplane")["spec"]["template"]["spec"]["containers"]
    assert {port["containerPort"] for port in container["ports"]} == exposed


def test_compose_builds_this_dockerfile_from_the_repository_root() -> None:
    compose = load_compose()
    for name in (*NODES, "gateway"):
        build = compose["services"][name]["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == REPO_ROOT.resolve()
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
    images = {compose["services"][name]["image"] for name in (*NODES, "gateway")}
    (container,) = k8s_object("Deployment", "agentplane")["spec"]["template"]["spec"]["containers"]
    assert images == {container["image"]}


def test_the_package_builds_from_the_docker_context_with_what_a_node_needs(
    tmp_path: Path,
) -> None:
    context = tmp_path / "context"
    _docker_context(context)
    assert not (context / "tests").exists() and not (context / "node_modules").exists()
    if not shutil.which("pip", path=str(Path(sys.executable).parent)):
        pytest.fail("pip is missing from the test environment")
    # --no-build-isolation: the test environment's setuptools, no network.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(context)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = (tmp_path / "dist").glob("agentplane-*.whl")
    with zipfile.ZipFile(built) as wheel:
        names = set(wheel.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "agentplane = agentplane.server.cli:main" in wheel.read(entry_points).decode()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        assert "Provides-Extra: redis" in wheel.read(metadata).decode()
    lua = {p.name for p in (REPO_ROOT / "server/agentplane/cluster").glob("*.lua")}
    assert lua and {f"agentplane/cluster/{name}" for name in lua} <= names
    assert {
        "agentplane/demo/index.html",
        "agentplane/demo/agentplane.js",  # a symlink into clients/browser/
        "agentplane/clients/grpcio/descriptors.binpb",
        "agentplane/server/cli.py",
        "agentplane/gateway/app.py",
    } <= names
