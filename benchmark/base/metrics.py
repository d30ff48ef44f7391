"""Metric definitions: the benchmark's contract (methods.md Part D).

* CACC: accuracy on the full clean test split (after ``--test-limit``).
* ASR: share of non-target-label test samples, with the attack's test-time trigger applied,
  classified as the target label.
* ΔCACC = CACC_before − CACC_after; ΔASR = ASR_before − ASR_after (before = undefended model).
* DER = [max(0, ΔASR) − max(0, ΔCACC) + 1] / 2, in [0, 1]; 0.5 means no net effect.

Which direction of each metric is better is declared with its record key in :mod:`benchmark.base.record_schema`.
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


# --------------------------------------------------------------------------- input detection, data filtering

def auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(score of a positive > score of a negative), ties one half (Mann–Whitney U / (n⁺ n⁻))."""
    if not positive or not negative:
        return math.nan
    ranked = sorted([(s, 1) for s in positive] + [(s, 0) for s in negative])
    rank_sum, i = 0.0, 0
    while i < len(ranked):  # average ranks over ties
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mean_rank = (i + 1 + j) / 2
        rank_sum += mean_rank * sum(label for _, label in ranked[i:j])
        i = j
    n_pos, n_neg = len(positive), len(negative)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _share(count: int, total: int) -> float:
    return count / total if total else math.nan


def detection_metrics(clean_labels: Sequence[int], clean_pred: Sequence[int], clean_flags: Sequence[bool],
                      poisoned_pred: Sequence[int], poisoned_flags: Sequence[bool], target: int) -> dict:
    """The input-detection fields of the module docstring (flags: True = rejected)."""
    accepted_clean = [(p, y) for p, y, f in zip(clean_pred, clean_labels, clean_flags) if not f]
    correct = sum(p == y for p, y in accepted_clean)
    accepted_poisoned = [p for p, f in zip(poisoned_pred, poisoned_flags) if not f]
    hits = sum(p == target for p in accepted_poisoned)
    n_clean, n_poisoned = len(clean_labels), len(poisoned_pred)
    return {"frr": _share(sum(clean_flags), n_clean), "far": _share(n_poisoned - sum(poisoned_flags), n_poisoned),
            "rejected_clean": int(sum(clean_flags)), "rejected_poisoned": int(sum(poisoned_flags)),
            "clean_test_size": n_clean, "poisoned_test_size": n_poisoned,
            "cacc": _share(correct, len(accepted_clean)), "cacc_all": _share(correct, n_clean),
            "asr": _share(hits, n_poisoned), "asr_accepted": _share(hits, len(accepted_poisoned))}


def filter_metrics(poisoned_flags: Sequence[bool], kept: Sequence[int]) -> dict:
    """The data-filtering fields of the module docstring."""
    keep = set(kept)
    removed = [i not in keep for i in range(len(poisoned_flags))]
    n_poisoned = sum(poisoned_flags)
    n_clean = len(poisoned_flags) - n_poisoned
    return {"filter_recall": _share(sum(r and p for r, p in zip(removed, poisoned_flags)), n_poisoned),
            "filter_fpr": _share(sum(r and not p for r, p in zip(removed, poisoned_flags)), n_clean),
            "kept": len(keep), "train_size": len(poisoned_flags), "poisoned_train_size": n_poisoned}
