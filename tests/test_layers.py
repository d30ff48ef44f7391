"""The package's layers (``benchmark/__init__.py``'s docstring, ``docs/design.md``): every import
inside ``benchmark`` points down or sideways within its own subpackage, reporting imports the
base only, and no modules import each other in a circle. Imports inside functions and under
``TYPE_CHECKING`` count too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "benchmark"
LAYERS = {"base": 1, "data": 2, "model": 3, "plugins": 4, "harness": 5}
FACE = {"benchmark", "benchmark.testing", "benchmark.cli"}  # the face (cli: the command): may import any layer
REPORTING_MAY_IMPORT = {"base", "reporting"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, me: str | None = None) -> set[str]:
    """The ``benchmark`` modules that ``path`` (the module ``me``, by default its name under the
    package) imports; a name imported from a package counts as its submodule when one exists."""
    me = me or module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "benchmark"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "benchmark":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return found - {me}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def layer_of(module: str) -> str:
    top = ".".join(module.split(".")[:2])
    return "face" if top in FACE else module.split(".")[1]


def test_every_module_is_in_a_layer():
    assert {layer_of(m) for m in MODULES} <= {*LAYERS, "reporting", "face"}, sorted(MODULES)


def climbs(graph: dict[str, set[str]]) -> list[str]:
    """Every import of ``graph`` that points up a layer (or from reporting past the base)."""
    found = []
    for module, targets in sorted(graph.items()):
        mine = layer_of(module)
        for target in sorted(targets):
            theirs = layer_of(target)
            if mine == "face" or theirs == mine:
                continue
            if theirs == "face":
                found.append(f"{module} -> {target} (the package's face)")
            elif mine == "reporting":
                if theirs not in REPORTING_MAY_IMPORT:
                    found.append(f"{module} -> {target} (reporting imports the base only)")
            elif theirs == "reporting" or LAYERS[theirs] > LAYERS[mine]:
                found.append(f"{module} -> {target} ({mine} may not import {theirs})")
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph`` (strongly connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_imports_point_down_the_layers():
    assert climbs(GRAPH) == []


def test_no_import_circles():
    assert circles(GRAPH) == []


def test_the_checks_catch_a_climb_and_a_circle(tmp_path):
    """The checks above read real imports and would fail: a base module importing the harness, a
    reporting module importing the model, two modules importing each other."""
    probe = tmp_path / "probe.py"
    probe.write_text("from ..harness import runner\nfrom . import errors\n", encoding="utf-8")
    assert imports_of(probe, "benchmark.base.probe") == {"benchmark.harness.runner", "benchmark.base.errors"}
    graph = {"benchmark.base.probe": {"benchmark.harness.runner", "benchmark.base.errors"},
             "benchmark.reporting.tables": {"benchmark.model.training", "benchmark.base.metrics"},
             "benchmark.harness.runner": {"benchmark.base.errors"}}
    assert climbs(graph) == ["benchmark.base.probe -> benchmark.harness.runner (base may not import harness)",
                             "benchmark.reporting.tables -> benchmark.model.training (reporting imports the base only)"]
    assert climbs({"benchmark.cli.commands": {"benchmark.harness.runner"}}) == []  # the face imports anything
    assert circles({"benchmark.harness.a": {"benchmark.harness.b"}, "benchmark.harness.b": {"benchmark.harness.a"},
                    "benchmark.harness.c": {"benchmark.harness.a"}}) == [["benchmark.harness.a", "benchmark.harness.b"]]


@pytest.mark.parametrize("module", ["benchmark.reporting.writers", "benchmark.base.records"])
def test_records_render_without_torch(module):
    """Reading records and rendering them needs neither torch nor the model stack."""
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
