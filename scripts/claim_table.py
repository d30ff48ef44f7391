"""The MBTSAD claim, read from the `paper` suite's records: one row per data set × attack.

The MBTSAD paper (arXiv 2501.02754) claims ASR below 20% on SST-2 and IMDb against BadNets, LWP
and EP with clean accuracy kept, comparable to defenses that use the pre-trained weights. Each
row sets MBTSAD beside the clean model (its CACC, and its ASR on the same triggered inputs: the
floor a defense can reach), the undefended backdoored model, and Fine-mixing with and without
E-PUR (the baselines that use the pre-trained weights). Figures are means over the seeds with a
record (the last ok record of each cell, as on the leaderboard), and every column of a row reads
only the seeds MBTSAD has, so that a partial run compares like with like; "seeds < 0.20" counts
the seeds whose MBTSAD ASR is below the claimed bound. A data set × attack with no MBTSAD record
yet is left out.

    python scripts/claim_table.py results/records.jsonl --out results/claim.md
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from benchmark.reporting.tables import Stat, latest_ok

CLAIMED_ASR = 0.20
COLUMNS = ["data set", "attack", "seeds", "clean CACC", "floor (clean ASR)", "backdoored CACC / ASR",
           "MBTSAD CACC", "MBTSAD ASR", "MBTSAD ASR−floor", "MBTSAD teacher ASR", "seeds < 0.20",
           "Fine-mixing CACC / ASR", "Fine-mixing+E-PUR CACC / ASR"]


def _mean(records: Sequence[dict], get) -> str:
    return Stat.of(get(r) for r in records).text(sep=" ± ")


def _pair(records: Sequence[dict]) -> str:
    if not records:
        return ""
    return f"{Stat.of(r['cacc'] for r in records).mean:.3f} / {Stat.of(r['asr'] for r in records).mean:.3f}"


def rows(records: Sequence[dict]) -> list[list[str]]:
    """The table's rows, data sets and attacks in the order the records first name them."""
    ok, _ = latest_ok(records)
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in ok):
        for attack in dict.fromkeys(r["attack"] for r in ok if r["dataset"] == dataset):
            cells = [r for r in ok if r["dataset"] == dataset and r["attack"] == attack]
            seeds = {r["seed"] for r in cells if r["defense_label"] == "mbtsad"}
            if not seeds:
                continue

            def of(label: str) -> list[dict]:
                return [r for r in cells if r["defense_label"] == label and r["seed"] in seeds]
            mbtsad = of("mbtsad")
            below = sum(r["asr"] < CLAIMED_ASR for r in mbtsad)
            scenario = of("none") or mbtsad  # the clean model's figures are on every record of a scenario
            out.append([
                dataset, attack, str(len(seeds)),
                _mean(scenario, lambda r: r.get("cacc_clean")),
                _mean(mbtsad, lambda r: r.get("asr_clean")),
                _pair(of("none")),
                _mean(mbtsad, lambda r: r["cacc"]),
                _mean(mbtsad, lambda r: r["asr"]),
                _mean(mbtsad, lambda r: None if r.get("asr_clean") is None else r["asr"] - r["asr_clean"]),
                _mean(mbtsad, lambda r: ((r.get("aux") or {}).get("teacher") or {}).get("asr")),
                f"{below}/{len(mbtsad)}",
                _pair(of("fine_mixing")),
                _pair(of("fine_mixing+e_pur")),
            ])
    return out


def table(records: Sequence[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(records)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, help="a records.jsonl of the paper suite")
    parser.add_argument("--out", type=Path, default=None, help="write the table here (default: print it)")
    args = parser.parse_args()
    with args.records.open(encoding="utf-8") as handle:
        text = table([json.loads(line) for line in handle if line.strip()])
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
