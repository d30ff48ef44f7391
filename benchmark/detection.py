"""Input detection, input correction and training-data filtering: how they run and are scored.

The three kinds of defense (``docs/defense-kinds.md``) share the registry and the records file;
:meth:`benchmark.runner.Harness._run` sends every cell whose defense is an
:class:`~benchmark.plugin.InputDetector`, :class:`~benchmark.plugin.InputCorrector` or
:class:`~benchmark.plugin.DataFilter` here. The defense runs where only its declared assets
exist (:mod:`benchmark.isolation`); what comes back is scores and flags, rewritten texts or
kept indices, never a metric. The harness computes every metric itself, below.

**Input detectors** receive the clean test texts and the triggered non-target test texts (ASR's
inputs) mixed and shuffled with a seeded draw, as bare texts. Record fields:

* ``frr``: share of clean test inputs flagged; ``far``: share of triggered inputs not flagged;
* ``auroc``: area under the ROC curve of the detector's score, triggered (positive) against
  clean test inputs, threshold-free (ties count one half);
* ``threshold`` and ``dev_frr``: the threshold the detector chose on its clean calibration
  inputs and the share of those it flags (its target is the ``frr`` parameter);
* ``rejected_clean``, ``rejected_poisoned``: counts of flagged inputs; ``clean_test_size``,
  ``poisoned_test_size``: the counts they are out of;
* ``cacc``: accuracy over the **accepted** clean test inputs (rejected ones are neither right nor
  wrong: they are counted in ``rejected_clean``); ``cacc_all``: accuracy over **all** clean test
  inputs with each rejection counted as an error;
* ``asr``: share of **all** triggered inputs that were accepted and classified as the target (a
  rejected input is not a success of the attack; it is counted in ``rejected_poisoned``);
  ``asr_accepted``: the same share over the accepted triggered inputs only;
* ``delta_cacc``, ``delta_asr``, ``der`` from ``cacc`` and ``asr`` as for every defense.

An **input corrector** (ONION) rewrites every input; ``cacc`` and ``asr`` are those of the
unchanged backdoored model on the rewritten texts, ``auroc`` that of its suspicion score when it
gives one; nothing is rejected (``frr``, ``far`` are null).

**Data filters** receive the poisoned training set the victim was trained on (from the attack's
:meth:`~benchmark.plugin.Attack.poisoned_training_set`; texts and labels, no poison flags) and
return indices to keep. ``filter_recall``: share of poisoned training samples removed;
``filter_fpr``: share of clean training samples removed; ``kept``, ``train_size``,
``poisoned_train_size``. The harness retrains the victim from its pre-trained weights (the
scenario's seeded head) on the kept samples with the scenario's victim recipe and reports that
model's ``cacc``, ``asr`` and extras; ``retrain_cost`` is that training's cost.

Costs: ``wall_s`` … ``peak_rss_mb`` are the defense's own, summed over its phases (peaks: the
maximum); ``defense_phases`` gives each phase (``defense``: fit and calibration or filtering;
``detection``: scoring the test inputs). The harness's own predictions are in ``eval_cost``.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence

import torch

from . import measure
from .errors import PluginError, UsageError
from .metrics import defense_effect
from .plugin import AttackContext, DataFilter, Defense, DefenseContext, InputCorrector, InputDetector
from .schema import record_fields

SPECIAL_KINDS = (InputDetector, InputCorrector, DataFilter)
_SUMMED = ("wall_s", "cpu_s", "gpu_s", "train_samples", "train_tokens")
_PEAKS = ("peak_gpu_mb", "peak_rss_mb")


def defense_kind(defense: Defense) -> str:
    """``purification``, ``input_detection`` or ``data_filtering`` (the record's ``defense_kind``)."""
    return defense.kind if isinstance(defense, SPECIAL_KINDS) else "purification"


def handles(defense: Defense) -> bool:
    """True when the cell of ``defense`` runs here rather than as a purification."""
    return isinstance(defense, SPECIAL_KINDS)


# --------------------------------------------------------------------------- the defense's side

def _finite_scores(values, n: int, name: str) -> list[float]:
    scores = [float(v) for v in values]
    if len(scores) != n:
        raise PluginError(f"defense {name!r} returned {len(scores)} scores for {n} inputs")
    if not all(math.isfinite(s) for s in scores):
        raise PluginError(f"defense {name!r} returned a score that is not finite")
    return scores


def apply_defense(defense: Defense, model: torch.nn.Module, ctx: DefenseContext,
                  texts: Sequence[str] | None) -> tuple[dict, dict, dict]:
    """Run a detector, corrector or filter (in its own process, or in the harness's with
    ``isolation="none"``): returns (answer, info, costs per phase). The answer holds
    ``scores``/``flags``/``threshold``/``dev_frr``, or ``texts``/``scores``, or ``kept``."""
    device = ctx.runtime.device
    costs = {}
    with measure.phase("defense", device) as cost:
        if isinstance(defense, DataFilter):
            kept = [int(i) for i in defense.keep(model, ctx)]
        else:
            defense.fit(model, ctx)
            calibration = defense.calibrate(model, ctx) if isinstance(defense, InputDetector) else None
    costs["defense"] = cost.as_dict()
    if isinstance(defense, DataFilter):
        size = len(ctx.poisoned_train)
        if any(not 0 <= i < size for i in kept) or len(set(kept)) != len(kept):
            raise PluginError(f"defense {defense.name!r}: keep() must return distinct indices in [0, {size})")
        return {"kept": sorted(kept)}, dict(getattr(defense, "info", {}) or {}), costs
    texts = list(texts or [])
    with measure.phase("detection", device) as cost:
        if isinstance(defense, InputDetector):
            scores = _finite_scores(defense.score(model, texts, ctx), len(texts), defense.name)
            answer = {"scores": scores, "flags": [s > calibration.threshold for s in scores],
                      "threshold": calibration.threshold, "dev_frr": calibration.dev_frr,
                      "calibration_size": calibration.size}
        else:
            rewritten, scores = defense.correct(model, texts, ctx)
            rewritten = [str(t) for t in rewritten]
            if len(rewritten) != len(texts):
                raise PluginError(f"defense {defense.name!r} returned {len(rewritten)} texts for {len(texts)} inputs")
            answer = {"texts": rewritten,
                      "scores": None if scores is None else _finite_scores(scores, len(texts), defense.name)}
    costs["detection"] = cost.as_dict()
    return answer, dict(getattr(defense, "info", {}) or {}), costs


# --------------------------------------------------------------------------- metrics

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


def _sum_costs(costs: dict[str, dict]) -> dict:
    phases = list(costs.values())
    total = {}
    for key in _SUMMED:
        values = [p.get(key) for p in phases if p.get(key) is not None]
        total[key] = sum(values) if values else None
    for key in _PEAKS:
        values = [p.get(key) for p in phases if p.get(key) is not None]
        total[key] = max(values) if values else None
    total["device"] = phases[0].get("device") if phases else None
    return total


# --------------------------------------------------------------------------- the harness's side

def run_cell(harness, cell, defense: Defense, scenario) -> dict:
    """The record fields of one detector, corrector or filter cell (besides the identity and the
    scenario's figures, which :meth:`Harness._run` adds), built through :mod:`benchmark.schema`."""
    from .victims import clone_model

    kind = defense_kind(defense)
    assets = harness._granted_assets(defense, cell, scenario)
    pretrained = (harness.pretrained_loader(cell.victim, scenario.num_labels, cell.seed)
                  if "pretrained_weights" in defense.requires else None)
    out = record_fields(defense_kind=kind)
    if isinstance(defense, DataFilter):
        attack_ctx = _attack_context(harness, cell, scenario)
        poisoned = _poisoned_train(cell, scenario, attack_ctx)
        if "poisoned_train" in defense.requires:
            assets["poisoned_train"] = [(ex.text, ex.label) for ex in poisoned]  # no poison flags
        answer, info, costs = _call(harness, cell, defense, scenario, assets, pretrained, None)
        out.update(record_fields(filter_metrics([ex.poisoned for ex in poisoned], answer["kept"])))
        kept = [poisoned[i] for i in answer["kept"]]
        # -- retrain the victim on the kept samples with the scenario's victim recipe
        model = harness.pretrained_loader(cell.victim, scenario.num_labels, cell.seed)()
        with measure.phase("retrain", harness.runtime.device) as retrain_cost:
            attack_ctx.finetune(model, kept)
        out.update(record_fields(retrain_cost=retrain_cost.as_dict()))
        with measure.phase("evaluation", harness.runtime.device) as eval_cost:
            out.update(record_fields(scenario.evaluate(model)))
    else:
        clean = list(scenario.splits.test)
        triggered = list(scenario.triggered_test)
        texts = [ex.text for ex in clean] + triggered
        order = list(range(len(texts)))
        random.Random(f"{cell.seed}:detection-order").shuffle(order)  # no position gives an input away
        answer, info, costs = _call(harness, cell, defense, scenario, assets, pretrained, [texts[i] for i in order])
        unshuffle = {original: position for position, original in enumerate(order)}

        def back(values):
            return [values[unshuffle[i]] for i in range(len(texts))]

        n = len(clean)
        model = clone_model(scenario.backdoored)
        with measure.phase("evaluation", harness.runtime.device) as eval_cost:
            if isinstance(defense, InputDetector):
                scores, flags = back(answer["scores"]), back(answer["flags"])
                clean_pred, poisoned_pred = _predict(harness, scenario, model, texts)
                out.update(record_fields(detection_metrics([ex.label for ex in clean], clean_pred, flags[:n],
                                                           poisoned_pred, flags[n:], scenario.target_label)))
                out.update(record_fields(threshold=answer["threshold"], dev_frr=answer["dev_frr"],
                                         calibration_size=answer["calibration_size"]))
            else:
                rewritten = back(answer["texts"])
                scores = back(answer["scores"]) if answer.get("scores") is not None else None
                clean_pred, poisoned_pred = _predict(harness, scenario, model, rewritten)
                out.update(record_fields(detection_metrics([ex.label for ex in clean], clean_pred, [False] * n,
                                                           poisoned_pred, [False] * len(triggered),
                                                           scenario.target_label)))
                out.update(record_fields(
                    frr=None, far=None, rejected_clean=None, rejected_poisoned=None,
                    changed_clean=sum(a != b for a, b in zip(rewritten[:n], texts[:n])),
                    changed_poisoned=sum(a != b for a, b in zip(rewritten[n:], texts[n:]))))
        out.update(record_fields(auroc=auroc(scores[n:], scores[:n]) if scores is not None else None))
    out.update(record_fields(defense_effect(scenario.before, out)))
    out.update(record_fields(_sum_costs(costs), aux={}, defense_info=info, defense_phases=costs,
                             eval_cost=eval_cost.as_dict(), clean_size=len(assets.get("clean_data", ()))))
    return out


def _call(harness, cell, defense, scenario, assets, pretrained, texts):
    """Run the defense (isolated unless ``isolation`` is none): (answer, info, costs)."""
    from . import isolation
    from .params import params_to_dict

    if harness.config.isolation == "none":
        ctx = harness._defense_context(defense, cell, scenario, assets, pretrained)
        ctx = dataclasses.replace(ctx, _poisoned_train=tuple(_examples(assets.get("poisoned_train"))) or None)
        from .victims import clone_model

        return apply_defense(defense, clone_model(scenario.backdoored), ctx, texts)
    job = isolation.DefenseJob(
        defense_class=isolation.class_path(type(defense)), defense_name=defense.name,
        params=params_to_dict(defense.params), requires=sorted(defense.requires), num_labels=scenario.num_labels,
        max_length=cell.budget.max_length, seed=cell.seed,
        train_config=dataclasses.asdict(cell.budget.defense_training), device=str(harness.runtime.device),
        precision=harness.runtime.precision, threads=torch.get_num_threads(), kind=defense_kind(defense))
    with isolation.private_folder() as folder:
        isolation.write_inputs(folder, job, scenario.backdoored, scenario.tokenizer, assets, pretrained, texts)
        isolation.run_isolated(folder, harness.config.isolation, harness._defense_server, harness.hidden_paths())
        result = isolation.read_result(folder, defense.name)
    return result.output, result.info, result.cost


def _examples(pairs):
    from .data import Example

    return [Example(text, label) for text, label in (pairs or [])]


def _predict(harness, scenario, model, texts: list[str]) -> tuple[list[int], list[int]]:
    """The backdoored model's predictions on the clean part and the triggered part of ``texts``."""
    from .data import Example
    from .encoding import encode
    from .training import predict

    n = len(scenario.splits.test)
    encoded = encode(scenario.tokenizer, [Example(t, 0) for t in texts], scenario.max_length)
    predictions = predict(model, encoded, harness.runtime)
    return predictions[:n], predictions[n:]


def _attack_context(harness, cell, scenario) -> AttackContext:
    """A context like the one the scenario's attack trained the victim with (same seed, splits, recipe)."""
    from .data import Dataset

    dataset, _ = harness.dataset(cell.dataset)
    splits = scenario.splits
    limited = Dataset(dataset.name, splits.train, splits.dev, splits.test, dataset.num_labels, dataset.source,
                      dataset.dev_carved)
    ctx = AttackContext(tokenizer=scenario.tokenizer, runtime=harness.runtime, max_length=cell.budget.max_length,
                        seed=cell.seed, train_config=cell.budget.victim_training, dataset=limited,
                        target_label=scenario.target_label,
                        pretrained_model=harness.pretrained_loader(cell.victim, scenario.num_labels, cell.seed),
                        attack_name=scenario.attack.name)
    return ctx


def _poisoned_train(cell, scenario, attack_ctx: AttackContext):
    """The scenario's attack's poisoned training set (flags kept, for the harness's metrics only)."""
    poisoned = scenario.attack.poisoned_training_set(attack_ctx)
    if poisoned is None:
        raise UsageError(f"data filters need an attack that trains the victim on a poisoned training set with the "
                         f"scenario's recipe; attack {cell.attack.name!r} does not (it poisons weights, or trains "
                         f"with its own loss)")
    expected = scenario.attack_meta.get("poisoned_count")
    if expected is not None and sum(ex.poisoned for ex in poisoned) != expected:
        raise PluginError(f"attack {cell.attack.name!r}: its poisoned training set has "
                          f"{sum(ex.poisoned for ex in poisoned)} poisoned samples, the attack reported {expected}")
    return poisoned
