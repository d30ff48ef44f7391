"""Leaderboards: pure views of ``records.jsonl``; they never compute a metric.

``render_leaderboard(DIR)`` writes ``leaderboard.md``, ``.csv``, ``.html`` (and ``.tex`` on
request) and two SVG plots (``asr_vs_cacc.svg``, ``cost.svg``). One table per data set × victim
× attack: the clean reference model and the undefended backdoored model first, then one row per
defense with mean ± std over seeds. An overall ranking orders defenses by mean DER. The output
depends only on the records (no clock, no machine), so re-rendering is byte-for-byte stable.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from tabulate import tabulate

from .config import stable_hash
from .metrics import mean_std
from .records import read_records

METRIC_COLUMNS = [  # (record key, heading); the arrow says which direction is better
    ("cacc", "CACC ↑"), ("asr", "ASR ↓"), ("delta_cacc", "ΔCACC ↓"), ("delta_asr", "ΔASR ↑"), ("der", "DER ↑"),
]
COST_COLUMNS = [("wall_s", "wall s"), ("cpu_s", "CPU s"), ("gpu_s", "GPU s"), ("peak_rss_mb", "peak RSS MB"),
                ("peak_gpu_mb", "peak GPU MB")]


def latest_ok(records: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """The last record of each cell, split into ok and failed (a later ok supersedes a failure)."""
    last: dict[str, dict] = {}
    for record in records:
        last[record.get("cell_id", str(len(last)))] = record
    ok = [r for r in last.values() if r.get("status") == "ok"]
    failed = [r for r in last.values() if r.get("status") != "ok"]
    return ok, failed


def _fmt(values: list, digits: int = 3) -> str:
    mean, std = mean_std([v for v in values if v is not None])
    if math.isnan(mean):
        return ""
    return f"{mean:.{digits}f}" if len(values) < 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _extra_rates(rows: list[dict]) -> list[str]:
    keys = set()
    for r in rows:
        keys.update(k for k in r if k.endswith("_rate") and not k.endswith("_before") and r[k] is not None)
    return sorted(keys)


def _config_key(record: dict, *fields: str) -> str:
    return stable_hash([record.get(f) for f in fields], 8)


def row_label(record: dict, labels_seen: dict[str, set[str]]) -> str:
    """The defense label, suffixed with a parameter hash when one label ran with several
    parameter sets or versions (so that they are never averaged together as seeds)."""
    label = record["defense_label"]
    if len(labels_seen.get(label, ())) > 1:
        return f"{label} [{_config_key(record, 'defense_params', 'defense_version')}]"
    return label


def build_tables(records: list[dict]) -> list[dict]:
    """One table per (dataset, victim, attack label, attack parameters, budget): heading,
    headers, rows, csv_rows. Rows average over seeds only."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], r["victim"], r["attack_label"],
                _config_key(r, "attack_params", "attack_version", "budget"))].append(r)
    budgets_per_scenario = defaultdict(set)
    for dataset, victim, attack, key in groups:
        budgets_per_scenario[(dataset, victim, attack)].add(key)
    tables = []
    for (dataset, victim, attack, key), rows in sorted(groups.items()):
        params_seen: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            params_seen[r["defense_label"]].add(_config_key(r, "defense_params", "defense_version"))
        extras = _extra_rates(rows)
        headers = ["defense", "requires", *[h for _, h in METRIC_COLUMNS], *[f"{e} ↓" for e in extras],
                   *[h for _, h in COST_COLUMNS], "seeds", "version"]
        body, csv_rows = [], []
        by_scenario = {r["scenario_id"]: r for r in rows}  # one per seed, for the reference rows
        refs = list(by_scenario.values())
        blank = [""] * (len(COST_COLUMNS))
        body.append(["clean model (reference)", "—", _fmt([r["cacc_clean"] for r in refs]),
                     _fmt([r.get("asr_clean") for r in refs]), "", "", "", *[""] * len(extras), *blank,
                     str(len(refs)), ""])
        body.append(["backdoored (no defense)", "—", _fmt([r["cacc_before"] for r in refs]),
                     _fmt([r["asr_before"] for r in refs]), "", "", "",
                     *[_fmt([r.get(f"{e}_before") for r in refs]) for e in extras], *blank, str(len(refs)), ""])
        by_defense: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            by_defense[row_label(r, params_seen)].append(r)
        for label, drows in sorted(by_defense.items(), key=lambda kv: (-mean_std([r["der"] for r in kv[1]])[0], kv[0])):
            requires = ", ".join(drows[0].get("requires", [])) or "nothing"
            version = drows[0].get("defense_version", "")
            body.append([label, requires, *[_fmt([r.get(k) for r in drows]) for k, _ in METRIC_COLUMNS],
                         *[_fmt([r.get(e) for r in drows]) for e in extras],
                         *[_fmt([r.get(k) for r in drows], 1) for k, _ in COST_COLUMNS],
                         str(len(drows)), version])
            for key in [k for k, _ in METRIC_COLUMNS] + extras + [k for k, _ in COST_COLUMNS]:
                mean, std = mean_std([r.get(key) for r in drows])
                csv_rows.append({"dataset": dataset, "victim": victim, "attack": attack, "defense": label,
                                 "requires": requires, "metric": key, "mean": _num(mean), "std": _num(std),
                                 "seeds": len(drows)})
        heading = f"{dataset} · {attack} · {victim}"
        if len(budgets_per_scenario[(dataset, victim, attack)]) > 1:
            heading += f" · config {key}"
        tables.append({"heading": heading, "headers": headers, "rows": body,
                       "csv_rows": csv_rows})
    return tables


def _num(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6g}"


def build_ranking(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    params_seen: dict[str, set[str]] = defaultdict(set)
    for r in records:
        params_seen[r["defense_label"]].add(_config_key(r, "defense_params", "defense_version"))
    by_defense: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_defense[row_label(r, params_seen)].append(r)
    rows = []
    for label, drows in by_defense.items():
        rows.append((mean_std([r["der"] for r in drows])[0], label, drows))
    rows.sort(key=lambda t: (-t[0], t[1]))
    headers = ["rank", "defense", "requires", "mean DER ↑", "mean CACC ↑", "mean ASR ↓", "mean wall s", "cells"]
    body = []
    for rank, (mean_der, label, drows) in enumerate(rows, start=1):
        body.append([str(rank), label, ", ".join(drows[0].get("requires", [])) or "nothing", f"{mean_der:.3f}",
                     f"{mean_std([r['cacc'] for r in drows])[0]:.3f}", f"{mean_std([r['asr'] for r in drows])[0]:.3f}",
                     f"{mean_std([r['wall_s'] for r in drows])[0]:.1f}", str(len(drows))])
    return headers, body


def _markdown(tables, ranking, failed) -> str:
    out = ["# Leaderboard", "",
           "CACC: clean test accuracy. ASR: share of triggered non-target test samples classified as the "
           "target. Δ: before − after the defense. DER = [max(0, ΔASR) − max(0, ΔCACC) + 1] / 2. "
           "Mean ± std over seeds; costs are the defense phase's own.", ""]
    if ranking[1]:
        out += ["## Overall ranking (mean DER over every table)", "",
                tabulate(ranking[1], ranking[0], tablefmt="github", disable_numparse=True), ""]
    for table in tables:
        out += [f"## {table['heading']}", "",
                tabulate(table["rows"], table["headers"], tablefmt="github", disable_numparse=True), ""]
    if failed:
        out += ["## Failed cells", ""]
        rows = [[r["dataset"], r["attack_label"], r["defense_label"], str(r["seed"]), r.get("error", "")[:200]]
                for r in sorted(failed, key=lambda r: (r["dataset"], r["attack_label"], r["defense_label"], r["seed"]))]
        out += [tabulate(rows, ["dataset", "attack", "defense", "seed", "error"], tablefmt="github",
                         disable_numparse=True), ""]
    return "\n".join(out)


def _html(tables, ranking) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>bdbench leaderboard</title>",
             "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:2px 6px}</style></head><body><h1>Leaderboard</h1>"]
    if ranking[1]:
        parts += ["<h2>Overall ranking</h2>", tabulate(ranking[1], ranking[0], tablefmt="html", disable_numparse=True)]
    for table in tables:
        parts += [f"<h2>{html.escape(table['heading'])}</h2>",
                  tabulate(table["rows"], table["headers"], tablefmt="html", disable_numparse=True)]
    parts.append("<p><img src='asr_vs_cacc.svg' alt='ASR vs CACC'> <img src='cost.svg' alt='cost'></p></body></html>")
    return "\n".join(parts) + "\n"


def _csv(tables) -> str:
    buffer = io.StringIO()
    fields = ["dataset", "victim", "attack", "defense", "requires", "metric", "mean", "std", "seeds"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for table in tables:
        writer.writerows(table["csv_rows"])
    return buffer.getvalue()


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def render_leaderboard(folder: str | Path, latex: bool = False) -> dict[str, Path]:
    """Write the leaderboard files of ``folder/records.jsonl``; returns their paths."""
    from .plots import asr_vs_cacc_svg, cost_svg

    folder = Path(folder)
    ok, failed = latest_ok(read_records(folder))
    tables = build_tables(ok)
    ranking = build_ranking(ok)
    paths = {"md": folder / "leaderboard.md", "csv": folder / "leaderboard.csv", "html": folder / "leaderboard.html",
             "asr_vs_cacc": folder / "asr_vs_cacc.svg", "cost": folder / "cost.svg"}
    _write(paths["md"], _markdown(tables, ranking, failed))
    _write(paths["csv"], _csv(tables))
    _write(paths["html"], _html(tables, ranking))
    _write(paths["asr_vs_cacc"], asr_vs_cacc_svg(ok))
    _write(paths["cost"], cost_svg(ok))
    if latex:
        paths["tex"] = folder / "leaderboard.tex"
        _write(paths["tex"], "\n\n".join(
            f"% {t['heading']}\n" + tabulate(t["rows"], t["headers"], tablefmt="latex", disable_numparse=True)
            for t in tables) + "\n")
    return paths
