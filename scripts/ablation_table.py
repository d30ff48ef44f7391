"""The MBTSAD ablation tables from the `mbtsad-diagnosis` suite's records.

One Markdown table per question, one row per variant (a defense label of the suite), and per
attack the student's CACC and ASR, its ASR above the clean model's (the floor), and the stage-1
teacher's ASR (``aux.teacher``), each a mean ± std over the seeds (sample std; the mean alone for
one seed). Only the last ok record of each cell counts, as on the leaderboard. A variant or an
attack with no records yet is shown empty, never dropped, so a partial run reads as partial.

    python scripts/ablation_table.py results/mbtsad-diagnosis/records.jsonl \
        --out results/mbtsad-diagnosis/ablation.md

The questions (``QUESTIONS``) follow the suite's labels in ``registry.toml``: (a) the teacher's
learning rate against token splitting, (b) stage 2 against plain fine-tuning at the student's
learning rate on the same clean data, (c) the distillation loss terms.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from benchmark.reporting.tables import Stat, latest_ok

QUESTIONS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("(a) Teacher learning rate × token splitting",
     "Does splitting clean the teacher, or is it the learning rate? Stage 2 is the default in every row.",
     [("mbtsad", "split, teacher lr 2e-5 (the method)"),
      ("mbtsad-teacher-1e-4", "split, teacher lr 1e-4"),
      ("mbtsad-teacher-5e-4", "split, teacher lr 5e-4"),
      ("mbtsad-nosplit", "unsplit copies, teacher lr 2e-5"),
      ("mbtsad-nosplit-teacher-1e-4", "unsplit copies, teacher lr 1e-4"),
      ("mbtsad-nosplit-teacher-5e-4", "unsplit copies, teacher lr 5e-4")]),
    ("(b) Stage 2 against fine-tuning at the student's learning rate",
     "Is distillation more than fine-tuning at lr 5e-4 on the same clean data?",
     [("none", "no defense (the backdoored model)"),
      ("mbtsad", "MBTSAD (teacher, then distillation at 5e-4)"),
      ("finetune-5e-4", "fine-tuning at 5e-4, no teacher")]),
    ("(c) The loss terms of stage 2",
     "L = L_cls + α·L_a + β·L_h; each row switches terms off.",
     [("mbtsad", "all terms (α 100, β 1)"),
      ("mbtsad-cls-only", "L_cls only (α 0, β 0)"),
      ("mbtsad-no-la", "no L_a (α 0)"),
      ("mbtsad-no-lh", "no L_h (β 0)")]),
]
METRICS = [("CACC", "cacc"), ("ASR", "asr"), ("ASR−floor", "floor_gap"), ("teacher ASR", "teacher_asr")]


def values(record: dict) -> dict[str, float | None]:
    """The figures one record contributes to its row."""
    teacher = (record.get("aux") or {}).get("teacher") or {}
    floor = record.get("asr_clean")
    return {"cacc": record.get("cacc"), "asr": record.get("asr"),
            "floor_gap": None if floor is None or record.get("asr") is None else record["asr"] - floor,
            "teacher_asr": teacher.get("asr")}


def tables(records: Sequence[dict]) -> str:
    """Every question's table as Markdown, attacks in the order the records first name them."""
    ok, _ = latest_ok(records)
    attacks = list(dict.fromkeys(r["attack"] for r in ok))
    out = []
    for title, question, rows in QUESTIONS:
        header = ["variant"] + [f"{attack} {name}" for attack in attacks for name, _ in METRICS] + ["seeds"]
        lines = [f"### {title}", "", question, "", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)]
        for label, description in rows:
            cells, seeds = [], set()
            for attack in attacks:
                mine = [r for r in ok if r["attack"] == attack and r["defense_label"] == label]
                seeds |= {r["seed"] for r in mine}
                figures = [values(r) for r in mine]
                cells += [Stat.of(f[key] for f in figures).text() for _, key in METRICS]
            lines.append("| " + " | ".join([f"{description} (`{label}`)", *cells, str(len(seeds))]) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, help="a records.jsonl of the mbtsad-diagnosis suite")
    parser.add_argument("--out", type=Path, default=None, help="write the tables here (default: print them)")
    args = parser.parse_args()
    with args.records.open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    text = tables(records)
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
