"""An input-detection or input-correction cell: how it runs and is scored.

The kinds of defense (``docs/defense-kinds.md``) share the registry and the records file;
:class:`~benchmark.harness.harness.Harness` sends every cell whose defense is an
:class:`~benchmark.plugins.defense.InputDetector` or :class:`~benchmark.plugins.defense.InputCorrector`
here. The defense runs where only its declared assets exist (:meth:`DefenseCaller.call`); what
comes back is scores and flags or rewritten texts, never a metric. The harness computes every
metric itself (:mod:`benchmark.base.metrics`).

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

Costs: ``wall_s`` … ``peak_rss_mb`` are the defense's own, summed over its phases (peaks: the
maximum); ``defense_phases`` gives each phase (``defense``: fit and calibration;
``detection``: scoring the test inputs). The harness's own predictions are in ``eval_cost``.
"""

from __future__ import annotations

import random

from ..base import costs
from ..base.metrics import auroc, defense_effect, detection_metrics
from ..base.record_schema import record_fields
from ..data.examples import Example
from ..model.encoding import encode
from ..model.training import predict
from ..model.victims import clone_model
from ..plugins.defense import Defense, InputDetector
from .cells import Cell
from .defense_call import CellEnv, answer_fields
from .grants import grant_for
from .scenario import Scenario


def detection_fields(defense: Defense, cell: Cell, scenario: Scenario, env: CellEnv) -> dict:
    """The record fields of one input-detector or input-corrector cell (module docstring)."""
    grant = grant_for(defense, cell, scenario, env.pretrained)
    out = record_fields(defense_kind="input_detection")
    clean = list(scenario.splits.test)
    triggered = list(scenario.triggered_test)
    texts = [ex.text for ex in clean] + triggered
    order = list(range(len(texts)))
    random.Random(f"{cell.seed}:detection-order").shuffle(order)  # no position gives an input away
    answer = env.caller.call(defense, cell, scenario, grant, [texts[i] for i in order])
    unshuffle = {original: position for position, original in enumerate(order)}

    def back(values):
        return [values[unshuffle[i]] for i in range(len(texts))]

    n = len(clean)
    model = clone_model(scenario.backdoored)
    with costs.phase("evaluation", env.runtime.device) as eval_cost:
        if isinstance(defense, InputDetector):
            scores, flags = back(answer.output["scores"]), back(answer.output["flags"])
            clean_pred, poisoned_pred = _predict(env, scenario, model, texts)
            out.update(record_fields(detection_metrics([ex.label for ex in clean], clean_pred, flags[:n],
                                                       poisoned_pred, flags[n:], scenario.target_label)))
            out.update(record_fields(threshold=answer.output["threshold"], dev_frr=answer.output["dev_frr"],
                                     calibration_size=answer.output["calibration_size"]))
        else:
            rewritten = back(answer.output["texts"])
            scores = back(answer.output["scores"]) if answer.output.get("scores") is not None else None
            clean_pred, poisoned_pred = _predict(env, scenario, model, rewritten)
            out.update(record_fields(detection_metrics([ex.label for ex in clean], clean_pred, [False] * n,
                                                       poisoned_pred, [False] * len(triggered),
                                                       scenario.target_label)))
            out.update(record_fields(
                frr=None, far=None, rejected_clean=None, rejected_poisoned=None,
                changed_clean=sum(a != b for a, b in zip(rewritten[:n], texts[:n])),
                changed_poisoned=sum(a != b for a, b in zip(rewritten[n:], texts[n:]))))
    out.update(record_fields(auroc=auroc(scores[n:], scores[:n]) if scores is not None else None))
    out.update(record_fields(defense_effect(scenario.before, out)))
    out.update(answer_fields(answer, grant, eval_cost.as_dict()))
    return out


def _predict(env: CellEnv, scenario: Scenario, model, texts: list[str]) -> tuple[list[int], list[int]]:
    """The backdoored model's predictions on the clean part and the triggered part of ``texts``."""
    n = len(scenario.splits.test)
    encoded = encode(scenario.tokenizer, [Example(t, 0) for t in texts], scenario.max_length)
    predictions = predict(model, encoded, env.runtime)
    return predictions[:n], predictions[n:]
