"""``bdbench new-defense NAME``: a plugin package that installs and runs at once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from ..base.errors import UsageError

PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "bdbench-{name}"
version = "0.1.0"
dependencies = ["bdbench"]

[project.entry-points.bdbench]
{module} = "{module}.plugin"
'''

PLUGIN = '''"""{cls}: <one line on what it does>.

<Full citation and URL of the method's paper.>

Algorithm: <the steps, as the paper states them>. Departures from the paper or its code:
<each one, with the paper's value and the one used here>.
"""

import dataclasses

from benchmark import Defense, DefenseContext, hookimpl


class {cls}(Defense):
    name = "{name}"
    version = "1"
    requires = frozenset({{"clean_data"}})  # what the defense may see; shown on the leaderboard

    @dataclasses.dataclass(frozen=True)
    class Params:
        epochs: int = 1  # <meaning and source of the value>

    def purify(self, model, ctx: DefenseContext):
        ctx.finetune(model, ctx.clean_data, epochs=self.params.epochs)
        return model


@hookimpl
def bdbench_defenses():
    return [{cls}]
'''


def scaffold_defense(name: str, where: Path, taken: Mapping[str, str] | None = None) -> Path:
    """Write the package ``where/bdbench-NAME``. ``taken`` maps the defense names already in use
    (built-in or installed) to where they come from; a name among them is refused, as is a
    ``where`` that is not an existing folder."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise UsageError(f"defense name {name!r}: use lower-case letters, digits and underscores")
    if taken and name in taken:
        raise UsageError(f"defense name {name!r} is taken ({taken[name]}); choose another name")
    if not where.is_dir():
        what = "is not a folder" if where.exists() else "no such folder"
        raise UsageError(f"--dir {where}: {what}; create it first or pass an existing folder")
    module = f"bdbench_{name}"
    cls = "".join(part.capitalize() for part in name.split("_"))
    folder = where / f"bdbench-{name}"
    if folder.exists():
        raise UsageError(f"{folder} already exists")
    (folder / module).mkdir(parents=True)
    (folder / "pyproject.toml").write_text(PYPROJECT.format(name=name, module=module), encoding="utf-8")
    (folder / module / "__init__.py").write_text("", encoding="utf-8")
    (folder / module / "plugin.py").write_text(PLUGIN.format(name=name, cls=cls), encoding="utf-8")
    return folder
