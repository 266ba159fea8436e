"""Regenerate the committed Python clients from the contract in proto/.

Usage (from the repository root; `./dev generate` runs the first form):

    python scripts/generate_clients.py            # rewrite the generated trees
    python scripts/generate_clients.py --check    # exit 1 if they are stale

It writes two packages under clients/python/agentplane/clients/ (`agentplane.clients`):

* `grpcio/`: `descriptors.binpb` (the contract's FileDescriptorSet with its
  comments, for the gateway's OpenAPI document), protobuf message classes (`*_pb2.py` with `.pyi` stubs), grpcio
  stubs for `grpc` and `grpc.aio` (`*_pb2_grpc.py`) and grpclib stubs and
  server bases over the same classes (`*_grpc.py`). protoc's absolute imports of
  the sibling modules are rewritten into relative ones, so the package works
  wherever it is installed.
* `betterproto/`: betterproto2 dataclasses with an async grpclib client and
  server base. Its `google` subpackages are only imported relatively, and the
  root `__init__.py` loads them before re-exporting `agentplane.v1`.

Every generated file starts with GENERATED_MARKER. `--check` regenerates into a
temporary directory and lists every stale, missing and extra file. The output
depends only on proto/ and the pinned tool versions (grpcio-tools,
betterproto2-compiler, grpclib and the ruff that betterproto2 formats with,
which runs here with a fixed configuration).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

GENERATED_MARKER = (
    "# Generated from proto/ by scripts/generate_clients.py: do not edit."
    " Regenerate with ./dev generate.\n"
)
REPO_ROOT = Path(__file__).resolve().parent.parent
VENDORED = "google"  # proto/google/ holds vendored googleapis files, not our contract
GRPCIO_PACKAGE = "agentplane.clients.grpcio"
# A FileDescriptorSet of the contract with its comments (binary, generated too).
DESCRIPTOR_SET = "descriptors.binpb"
BETTERPROTO_OPTIONS = "client_generation=async,server_generation=async,google_protobuf_descriptors"
# betterproto2 pipes its output through `ruff check --fix` and `ruff format`, which
# read the configuration of the working directory: pin it so output is stable.
RUFF_CONFIG = 'line-length = 100\ntarget-version = "py311"\n'

GRPCIO_INIT = '''"""agentplane's SessionService for the protobuf/grpcio stack (generated).

Modules, one set per file in proto/agentplane/v1/:

* `session_pb2`, `session_service_pb2`: protobuf message classes (with `.pyi`
  stubs). Use them with `google.protobuf.json_format` for protojson.
* `session_service_pb2_grpc`: grpcio stubs and servicer bases. The stub works on
  both `grpc.insecure_channel(...)` and `grpc.aio.insecure_channel(...)`:

      from agentplane.clients.grpcio import session_service_pb2 as pb
      from agentplane.clients.grpcio import session_service_pb2_grpc as pb_grpc
      async with grpc.aio.insecure_channel("localhost:50051") as channel:
          stub = pb_grpc.SessionServiceStub(channel)
          reply = await stub.Start(pb.StartRequest(call_id="my-call-123"))

* `session_service_grpc`: grpclib stubs (`SessionServiceStub(grpclib.client.Channel)`)
  and abstract server bases (`SessionServiceBase`) over the same protobuf classes.

Nothing is imported here: import the module you need.
"""
'''

BETTERPROTO_INIT = '''"""agentplane's SessionService as betterproto2 dataclasses (generated).

    from agentplane.clients.betterproto import SessionServiceStub, StartRequest
    from grpclib.client import Channel

    async with Channel("localhost", 50051) as channel:
        stub = SessionServiceStub(channel)
        reply = await stub.start(StartRequest(call_id="my-call-123"), timeout=10)

`SessionServiceStub` is an async grpclib client; `SessionServiceBase` is the
grpclib server base. The `google` subpackage holds betterproto2's copies of the
well-known types and google.api; it is only ever imported relatively, so it never
shadows the real `google` package.
"""

# The descriptors of agentplane.v1 depend on these files; load them first.
from .google import protobuf as _google_protobuf  # noqa: F401
from .google import api as _google_api  # noqa: F401
from .agentplane import v1 as _v1
from .agentplane.v1 import *  # noqa: F403

__all__ = list(_v1.__all__)
'''


def contract_protos(proto_dir: Path) -> list[str]:
    """The contract's .proto files relative to proto_dir, sorted; vendored files excluded."""
    files = sorted(p.relative_to(proto_dir).as_posix() for p in proto_dir.rglob("*.proto"))
    return [f for f in files if not f.startswith(VENDORED + "/")]


def tool(name: str) -> str:
    """A protoc plugin installed next to the running interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        sys.exit(f"error: {path} not found; install the codegen extra (pip install -e .[codegen])")
    return str(path)


def protoc(proto_dir: Path, protos: list[str], args: list[str], workdir: Path) -> None:
    """Run grpc_tools' bundled protoc, failing loudly with its stderr."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}", *args, *protos]
    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"error: protoc failed ({done.returncode}):\n{done.stderr}")


def relativize(source: str, module: str, siblings: dict[str, str]) -> str:
    """Rewrite protoc's absolute imports of sibling modules into relative ones.

    siblings maps a generated module's name to its proto package (`session_pb2` ->
    `agentplane.v1`); module is the name of the file being rewritten.
    """
    for name, package in sorted(siblings.items()):
        dotted = re.escape(f"{package}.{name}")
        if name == module:  # the module name protobuf records for the file's own classes
            source = re.sub(rf"'{dotted}'", "__name__", source)
        from_import = rf"^from {re.escape(package)} import {name}\b"
        source = re.sub(from_import, f"from . import {name}", source, flags=re.MULTILINE)
        source = re.sub(rf"^import {dotted}$", f"from . import {name}", source, flags=re.MULTILINE)
        source = re.sub(rf"(?<![\w.'/]){dotted}\b", name, source)  # qualified references
    return source


def mark(path: Path) -> None:
    """Prepend the generated-code marker to a file."""
    path.write_text(GENERATED_MARKER + path.read_text(encoding="utf-8"), encoding="utf-8")


def generate_grpcio(proto_dir: Path, protos: list[str], out: Path, workdir: Path) -> None:
    raw = workdir / "grpcio-raw"
    raw.mkdir()
    protoc(
        proto_dir,
        protos,
        [
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            f"--plugin=protoc-gen-grpclib_python={tool('protoc-gen-grpclib_python')}",
            f"--grpclib_python_out={raw}",
            # With source info: the gateway's OpenAPI document takes the
            # proto's comments from it.
            f"--descriptor_set_out={workdir / DESCRIPTOR_SET}",
            "--include_source_info",
        ],
        workdir,
    )
    files = sorted(p for p in raw.rglob("*") if p.is_file())
    siblings: dict[str, str] = {}
    for path in files:
        name = path.name.split(".")[0]
        package = path.parent.relative_to(raw).as_posix().replace("/", ".")
        if siblings.setdefault(name, package) != package:
            sys.exit(f"error: two proto packages generate a module named {name}")
    out.mkdir(parents=True)
    for path in files:
        text = relativize(path.read_text(encoding="utf-8"), path.name.split(".")[0], siblings)
        (out / path.name).write_text(GENERATED_MARKER + text, encoding="utf-8")
    (out / "__init__.py").write_text(GENERATED_MARKER + GRPCIO_INIT, encoding="utf-8")
    (out / "py.typed").write_text(GENERATED_MARKER, encoding="utf-8")
    shutil.copyfile(workdir / DESCRIPTOR_SET, out / DESCRIPTOR_SET)


def generate_betterproto(proto_dir: Path, protos: list[str], out: Path, workdir: Path) -> None:
    out.mkdir(parents=True)
    protoc(
        proto_dir,
        protos,
        [
            f"--plugin=protoc-gen-python_betterproto2={tool('protoc-gen-python_betterproto2')}",
            f"--python_betterproto2_out={out}",
            f"--python_betterproto2_opt={BETTERPROTO_OPTIONS}",
        ],
        workdir,
    )
    (out / "__init__.py").write_text(BETTERPROTO_INIT, encoding="utf-8")
    (out / "py.typed").write_text("", encoding="utf-8")
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        mark(path)


def generate(proto_dir: Path, out_dir: Path) -> None:
    """Write the `grpcio` and `betterproto` packages into out_dir (which must not exist)."""
    protos = contract_protos(proto_dir)
    if not protos:
        sys.exit(f"error: no .proto files in {proto_dir}")
    with tempfile.TemporaryDirectory(prefix="agentplane-gen-") as tmp:
        workdir = Path(tmp)
        (workdir / "ruff.toml").write_text(RUFF_CONFIG, encoding="utf-8")
        generate_grpcio(proto_dir, protos, out_dir / "grpcio", workdir)
        generate_betterproto(proto_dir, protos, out_dir / "betterproto", workdir)


def tree(root: Path) -> dict[str, bytes]:
    """The files under root by relative path, ignoring Python caches."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def differences(fresh: Path, current: Path) -> list[str]:
    """Every missing, stale and extra file of current compared with fresh."""
    new, old = tree(fresh), tree(current)
    problems = [f"missing: {current / p}" for p in sorted(new.keys() - old.keys())]
    problems += [
        f"stale:   {current / p}" for p in sorted(new.keys() & old.keys()) if new[p] != old[p]
    ]
    problems += [f"extra:   {current / p}" for p in sorted(old.keys() - new.keys())]
    return problems


def sync(fresh: Path, current: Path) -> None:
    """Make current equal to fresh, touching only the files that differ."""
    new, old = tree(fresh), tree(current)
    for rel in sorted(old.keys() - new.keys()):
        (current / rel).unlink()
    for rel, data in sorted(new.items()):
        if old.get(rel) != data:
            (current / rel).parent.mkdir(parents=True, exist_ok=True)
            (current / rel).write_bytes(data)
    for directory in sorted(current.rglob("*"), reverse=True):
        if directory.is_dir() and not any(p.name != "__pycache__" for p in directory.iterdir()):
            shutil.rmtree(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only report stale generated files")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root")
    parser.add_argument("--proto-dir", type=Path, help="default: <root>/proto")
    parser.add_argument(
        "--out-dir", type=Path, help="default: <root>/clients/python/agentplane/clients"
    )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    proto_dir: Path = (args.proto_dir or root / "proto").resolve()
    out_dir: Path = (
        args.out_dir or root / "clients" / "python" / "agentplane" / "clients"
    ).resolve()

    with tempfile.TemporaryDirectory(prefix="agentplane-out-") as tmp:
        fresh = Path(tmp) / "out"
        generate(proto_dir, fresh)
        problems: list[str] = []
        for package in ("grpcio", "betterproto"):
            problems += differences(fresh / package, out_dir / package)
            if not args.check:
                sync(fresh / package, out_dir / package)
    if args.check:
        if problems:
            print("generated clients are out of date; run ./dev generate:", file=sys.stderr)
            print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
            return 1
        print("generated clients are up to date")
        return 0
    print(f"generated {len(tree(out_dir / 'grpcio')) + len(tree(out_dir / 'betterproto'))} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
