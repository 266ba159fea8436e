"""The layers of docs/architecture.md, checked: who may import whom, no cycles, a light core."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTS = [REPO / "server", REPO / "gateway"]

# Layer -> the agentplane layers it may import (besides itself). Lower layers
# never reach up; `clients` is the generated code (wire messages and stubs).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "gateway": set(),
    "net": set(),
    "service": {"core", "clients"},
    "rpc": {"core", "service", "net", "clients"},
    "http": {"core", "service", "gateway", "net", "clients"},
    "compat": {"core", "service"},
    "ops": {"core"},
    "cluster": {"core", "net"},
    "demo": {"core"},
    "console": {"clients"},
    "server": {
        "console",
        "core",
        "service",
        "rpc",
        "http",
        "ops",
        "demo",
        "compat",
        "gateway",
        "clients",
        "cluster",
        "net",
    },
    "testing": {"server", "core", "clients", "net"},
    # agentplane/__main__.py: `python -m agentplane` runs the command line.
    "__main__": {"server"},
}


def _modules() -> Iterator[tuple[str, Path]]:
    for root in ROOTS:
        for path in sorted((root / "agentplane").rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The agentplane modules ``module`` imports at run time (function bodies included)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import submodule` depends on the submodule, not on pkg's __init__.
            names = [
                f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name.startswith("agentplane."):
                while name not in known and "." in name:
                    name = name.rpartition(".")[0]
                if name in known and name != module:
                    found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = dict(_modules())
    known = set(modules) | {"agentplane.clients"}
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _layer(module: str) -> str:
    return module.split(".")[1]


def test_every_layer_imports_only_the_layers_below_it() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in sorted(targets)
        if _layer(target) != _layer(module) and _layer(target) not in ALLOWED[_layer(module)]
    ]
    assert wrong == []


def test_every_module_belongs_to_a_known_layer() -> None:
    assert {_layer(module) for module in _graph()} <= set(ALLOWED)


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_the_checker_sees_imports() -> None:
    """Guards the tests above against passing because they read nothing."""
    graph = _graph()
    assert "agentplane.core.launcher" in graph["agentplane.core"]
    assert "agentplane.service.api" in graph["agentplane.server.runner"]
    assert "agentplane.gateway" in graph["agentplane.http.standalone"]


CORE_IMPORT = """
import json, sys, time
before = set(sys.modules)
started = time.perf_counter()
import agentplane.core
elapsed = time.perf_counter() - started
new = sorted(set(sys.modules) - before)
print(json.dumps({"seconds": elapsed, "modules": new}))
"""


def test_the_core_imports_alone_with_the_standard_library_only() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CORE_IMPORT], capture_output=True, text=True, check=True, timeout=60
    )
    report = json.loads(done.stdout)
    foreign = [
        name
        for name in report["modules"]
        if name.split(".")[0] not in sys.stdlib_module_names
        and not name.startswith("agentplane.core")
        and name not in ("agentplane", "_distutils_hack")
        and not name.startswith("__editable__")
    ]
    assert foreign == [], foreign
    assert "agentplane.core.launcher" in report["modules"]
