"""The committed leaderboards re-render byte for byte from their committed records.

Each folder under ``results/`` and ``runs/`` that holds a ``records.jsonl`` is rendered again into
a temporary folder and compared with what is committed: the Markdown, CSV and HTML tables (the
page with its embedded plot images cut out) always, the plots themselves only under the matplotlib
version that rendered them (``results/README.md`` names it; another version draws the same data
with other bytes). ``ablation.md`` and ``claim.md`` are compared with the output of their scripts
(``scripts/ablation_table.py``, ``scripts/claim_table.py``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import matplotlib
import pytest

from benchmark.reporting.writers import render_leaderboard

from helpers import load_script

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


TABLES = {"ablation.md": ("ablation_table.py", "tables"), "claim.md": ("claim_table.py", "table")}


def test_the_claim_table_is_published():
    assert (REPO / "results" / "claim.md").exists() and (REPO / "results" / "mbtsad-diagnosis" / "ablation.md").exists()


@pytest.mark.parametrize("table", [folder / name for folder in PUBLISHED for name in TABLES if (folder / name).exists()],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_a_published_table_of_a_script_rerenders_byte_for_byte(table):
    script, function = TABLES[table.name]
    lines = (table.parent / "records.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert getattr(load_script(script), function)(records) == table.read_text(encoding="utf-8")
