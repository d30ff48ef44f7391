"""The committed leaderboards re-render byte for byte from their committed records.

Each folder under ``results/`` and ``runs/`` that holds a ``records.jsonl`` is rendered again into
a temporary folder and compared with what is committed: the Markdown, CSV and HTML tables (the
page with its embedded plot images cut out) always, the plots themselves only under the matplotlib
version that rendered them (``results/README.md`` names it; another version draws the same data
with other bytes). ``ablation.md`` is compared with ``scripts/ablation_table.py``'s output.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import matplotlib
import pytest

from benchmark.leaderboard import render_leaderboard

REPO = Path(__file__).resolve().parent.parent
PUBLISHED = sorted(path.parent for path in [*REPO.glob("results/**/records.jsonl"), *REPO.glob("runs/**/records.jsonl")]
                   if (path.parent / "leaderboard.md").exists())
PLOTS_RENDERED_WITH = "3.11.2"  # the matplotlib version of the committed plots (results/README.md)
EMBEDDED_IMAGE = re.compile(rb"data:image/png;base64,[A-Za-z0-9+/=]+")


def test_the_published_folders_are_found():
    assert REPO / "results" in PUBLISHED and REPO / "results" / "mbtsad-diagnosis" in PUBLISHED


@pytest.mark.parametrize("folder", PUBLISHED, ids=lambda p: str(p.relative_to(REPO)))
def test_a_published_leaderboard_rerenders_byte_for_byte(folder, tmp_path):
    shutil.copy(folder / "records.jsonl", tmp_path / "records.jsonl")
    rendered = render_leaderboard(tmp_path)
    for key in ("md", "csv"):
        assert rendered[key].read_bytes() == (folder / rendered[key].name).read_bytes(), rendered[key].name
    page = EMBEDDED_IMAGE.sub(b"", rendered["html"].read_bytes())
    assert page == EMBEDDED_IMAGE.sub(b"", (folder / "leaderboard.html").read_bytes())
    if matplotlib.__version__ == PLOTS_RENDERED_WITH:
        for key in ("asr_vs_cacc", "asr_vs_cacc_png", "cost", "cost_png", "html"):
            assert rendered[key].read_bytes() == (folder / rendered[key].name).read_bytes(), rendered[key].name


@pytest.mark.parametrize("folder", [f for f in PUBLISHED if (f / "ablation.md").exists()],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_a_published_ablation_table_rerenders_byte_for_byte(folder):
    spec = importlib.util.spec_from_file_location("ablation_table", REPO / "scripts" / "ablation_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    lines = (folder / "records.jsonl").read_text(encoding="utf-8").splitlines()
    assert script.tables([json.loads(line) for line in lines if line.strip()]) == \
        (folder / "ablation.md").read_text(encoding="utf-8")
