"""The plugin guide (docs/adding-a-defense.md) works as written, and the built-ins follow it.

The guide's steps, literally: scaffold the package (step 1), replace its ``plugin.py`` with the
guide's code block (step 3), add the guide's test file (step 5) and run pytest on it, with the
package on the path as ``pip install -e`` would put it.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap

import pytest

from benchmark.cli.scaffold import scaffold_defense

from conftest import REPO

GUIDE = REPO / "docs" / "adding-a-defense.md"


def guide_blocks(language: str) -> list[str]:
    """The guide's fenced code blocks in ``language``, in order, their list indentation removed."""
    text = GUIDE.read_text(encoding="utf-8")
    return [textwrap.dedent(m.group(2)) for m in re.finditer(rf"^( *)```{language}\n(.*?)^\1```", text, re.S | re.M)]


def guide_files() -> dict[str, str]:
    """The guide's Python blocks that open with a ``# path.py`` line, by that path."""
    files = {}
    for block in guide_blocks("python"):
        first = block.splitlines()[0]
        if first.startswith("# ") and first.endswith(".py"):
            files[first[2:]] = block
    return files


def imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_the_guide_shows_a_plugin_and_its_tests():
    files = guide_files()
    assert set(files) == {"bdbench_my_guard/plugin.py", "tests/test_my_guard.py"}
    assert {m for m in imported_modules(files["bdbench_my_guard/plugin.py"]) if m.startswith("benchmark")} == {"benchmark"}
    assert {m for m in imported_modules(files["tests/test_my_guard.py"]) if m.startswith("benchmark")} == {"benchmark"}


@pytest.mark.parametrize("folder", ["attacks", "defenses"])
def test_builtins_import_only_the_public_api(folder):
    for path in sorted((REPO / folder).glob("*.py")):
        internal = {m for m in imported_modules(path.read_text(encoding="utf-8"))
                    if m.startswith("benchmark.") or m.startswith(("attacks", "defenses"))}
        assert not internal, f"{path.name} imports {sorted(internal)}; import the toolkit from benchmark"


def test_the_guides_steps_give_a_plugin_whose_tests_pass(tmp_path):
    # -- step 1: scaffold; its entry point is the one the guide shows
    package = scaffold_defense("my_guard", tmp_path)
    (toml,) = guide_blocks("toml")
    assert toml.strip() in (package / "pyproject.toml").read_text(encoding="utf-8")
    # -- steps 3 and 5: the guide's plugin and tests, written where the guide says
    for path, code in guide_files().items():
        target = package / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code, encoding="utf-8")
    # -- run the tests, the package importable (as pip install -e makes it), this bdbench first
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package), str(REPO), env.get("PYTHONPATH", "")) if p)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_my_guard.py"],
                          cwd=package, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    from benchmark.testing import FAMILIES

    expected = len(FAMILIES) + 1  # the guide's test per family, and its one other test
    assert re.search(rf"\b{expected} passed\b", done.stdout), done.stdout[-2000:]
