"""Metric definitions: the benchmark's contract (methods.md Part D).

* CACC: accuracy on the full clean test split (after ``--test-limit``).
* ASR: share of non-target-label test samples, with the attack's test-time trigger applied,
  classified as the target label.
* ΔCACC = CACC_before − CACC_after; ΔASR = ASR_before − ASR_after (before = undefended model).
* DER = [max(0, ΔASR) − max(0, ΔCACC) + 1] / 2, in [0, 1]; 0.5 means no net effect.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

# Direction of each metric on the leaderboard: True when higher is better.
HIGHER_IS_BETTER = {"cacc": True, "asr": False, "delta_cacc": False, "delta_asr": True, "der": True,
                    "cacc_clean": True, "cacc_before": True, "asr_before": False}


def clean_accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    if not labels:
        return math.nan
    return sum(int(p == y) for p, y in zip(predictions, labels)) / len(labels)


def attack_success_rate(predictions_on_triggered: Sequence[int], target_label: int) -> float:
    """``predictions_on_triggered`` must come from triggered *non-target* samples only."""
    if not predictions_on_triggered:
        return math.nan
    return sum(int(p == target_label) for p in predictions_on_triggered) / len(predictions_on_triggered)


def der(cacc_before: float, asr_before: float, cacc_after: float, asr_after: float) -> float:
    delta_cacc = cacc_before - cacc_after
    delta_asr = asr_before - asr_after
    return (max(0.0, delta_asr) - max(0.0, delta_cacc) + 1.0) / 2.0


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value), ignoring None/NaN."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return math.nan, math.nan
    return statistics.fmean(clean), (statistics.stdev(clean) if len(clean) > 1 else 0.0)
