"""The leaderboard's files: ``render_leaderboard(DIR)`` writes ``leaderboard.md``, ``.csv``,
``.html`` (one self-contained page, :mod:`benchmark.reporting.page`), ``.tex`` on request, and
two plots as SVG and PNG (``asr_vs_cacc``, ``cost``; :mod:`benchmark.reporting.plots`), from
``DIR/records.jsonl`` alone, each written atomically. The output depends only on the records (no
clock, no machine), so re-rendering is byte-for-byte stable.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import tempfile
from pathlib import Path

from tabulate import tabulate

from ..base.record_schema import lookup
from ..base.records import RecordsError, read_records
from .page import render_page
from .plots import asr_vs_cacc_figure, cost_figure, figure_bytes
from .summary import run_summary
from .tables import build_rankings, build_tables, latest_ok, ranking_criterion, ranking_table


def _markdown(tables, rankings, summary, failed) -> str:
    out = ["# Leaderboard", "", *[f"* **{term}**: {text}" for term, text in summary], "",
           "CACC: clean test accuracy. ASR: share of triggered non-target test samples classified as the "
           "target. ASR−clean: ASR minus the clean reference model's ASR on the same inputs (0 = the "
           "floor). Δ: before − after the defense. DER = [max(0, ΔASR) − max(0, ΔCACC) + 1] / 2. "
           "Mean ± std over seeds; costs are the defense phase's own (seconds, MB). The notes under a table "
           "give the intermediate models and choices a defense reported.", ""]
    for kind, rows in rankings:
        headers, body = ranking_table(rows, kind)
        out += [f"## Overall ranking{f' · {kind}' if kind else ''} ({ranking_criterion(kind)} over every table)", "",
                tabulate(body, headers, tablefmt="github", disable_numparse=True), ""]
    for table in tables:
        out += [f"## {table['heading']}", "",
                tabulate(table["rows"], table["headers"], tablefmt="github", disable_numparse=True), ""]
        if table["notes"]:
            out += ["Intermediate models and choices:", "", *[f"* {note}" for note in table["notes"]], ""]
    if failed:
        out += ["## Failed cells", ""]
        rows = [[r["dataset"], r["attack_label"], r["defense_label"], str(r["seed"]), r.get("error", "")[:200]]
                for r in sorted(failed, key=lambda r: (r["dataset"], r["attack_label"], r["defense_label"], r["seed"]))]
        out += [tabulate(rows, ["dataset", "attack", "defense", "seed", "error"], tablefmt="github",
                         disable_numparse=True), ""]
    return "\n".join(out)


def _csv(tables) -> str:
    buffer = io.StringIO()
    fields = ["dataset", "victim", "attack", "defense", "requires", "metric", "mean", "std", "seeds"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for table in tables:
        writer.writerows(table["csv_rows"])
    return buffer.getvalue()


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write atomically through a temporary file of a unique name, so that concurrent renders of
    one folder never trip over each other's temporary files (the last rename wins whole)."""
    payload = data if isinstance(data, bytes) else data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_figures(records: list[dict], path: Path) -> None:
    """Refuse, naming the file, the cell and the field, a record whose number field holds a string,
    an infinity or another non-number (the schema's numbers are finite or null)."""
    for record in records:
        for key, value in record.items():
            declared = lookup(key)
            if declared is None or "number" not in declared.types or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RecordsError(f"{path}: cell {record.get('cell_id')}: {key} is {value!r}, expected a finite "
                                   "number or null; is the record edited by hand?")


def render_leaderboard(folder: str | Path, latex: bool = False) -> dict[str, Path]:
    """Write the leaderboard files of ``folder/records.jsonl``; returns their paths."""
    folder = Path(folder)
    ok, failed = latest_ok(read_records(folder))
    check_figures(ok, folder / "records.jsonl")
    tables = build_tables(ok)
    rankings = build_rankings(ok)
    summary = run_summary(ok, failed)
    order = [row.label for _, rows in rankings for row in rows]
    figures = {"asr_vs_cacc": figure_bytes(asr_vs_cacc_figure(tables, order)),
               "cost": figure_bytes(cost_figure(ok, order))}
    paths = {"md": folder / "leaderboard.md", "csv": folder / "leaderboard.csv", "html": folder / "leaderboard.html"}
    for name, formats in figures.items():
        paths[name] = folder / f"{name}.svg"
        paths[f"{name}_png"] = folder / f"{name}.png"
        write_atomic(paths[name], formats["svg"])
        write_atomic(paths[f"{name}_png"], formats["png"])
    write_atomic(paths["md"], _markdown(tables, rankings, summary, failed))
    write_atomic(paths["csv"], _csv(tables))
    write_atomic(paths["html"], render_page(summary, rankings, tables, failed, figures))
    if latex:
        paths["tex"] = folder / "leaderboard.tex"
        write_atomic(paths["tex"], "\n\n".join(
            f"% {t['heading']}\n" + tabulate(t["rows"], t["headers"], tablefmt="latex", disable_numparse=True)
            for t in tables) + "\n")
    return paths
