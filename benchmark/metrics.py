"""Metric definitions: the benchmark's contract (methods.md Part D).

* CACC: accuracy on the full clean test split (after ``--test-limit``).
* ASR: share of non-target-label test samples, with the attack's test-time trigger applied,
  classified as the target label.
* ΔCACC = CACC_before − CACC_after; ΔASR = ASR_before − ASR_after (before = undefended model).
* DER = [max(0, ΔASR) − max(0, ΔCACC) + 1] / 2, in [0, 1]; 0.5 means no net effect.

Which direction of each metric is better is declared with its record key in :mod:`benchmark.schema`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence


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


def defense_effect(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """``delta_cacc``, ``delta_asr`` and ``der`` of a defense, from the ``cacc`` and ``asr`` of the
    undefended backdoored model (``before``) and of the defended one (``after``)."""
    return {"delta_cacc": before["cacc"] - after["cacc"], "delta_asr": before["asr"] - after["asr"],
            "der": der(before["cacc"], before["asr"], after["cacc"], after["asr"])}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value), ignoring None/NaN."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return math.nan, math.nan
    return statistics.fmean(clean), (statistics.stdev(clean) if len(clean) > 1 else 0.0)
