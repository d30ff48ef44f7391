"""A training-data filtering cell: the filter keeps samples, the harness retrains and scores.

**Data filters** receive the poisoned training set the victim was trained on (from the attack's
:meth:`~benchmark.plugins.attack.Attack.poisoned_training_set`; texts and labels, no poison flags) and
return indices to keep. ``filter_recall``: share of poisoned training samples removed;
``filter_fpr``: share of clean training samples removed; ``kept``, ``train_size``,
``poisoned_train_size``. The harness retrains the victim from its pre-trained weights (the
scenario's seeded head) on the kept samples with the scenario's victim recipe and reports that
model's ``cacc``, ``asr`` and extras; ``retrain_cost`` is that training's cost.

The filter runs where only its declared assets exist (:meth:`DefenseCaller.call`); what comes
back is the kept indices, never a metric.

Costs: ``wall_s`` … ``peak_rss_mb`` are the filter's own (``defense_phases``: ``defense``); the
retraining's are in ``retrain_cost``, the harness's own predictions in ``eval_cost``.
"""

from __future__ import annotations

from ..base import costs
from ..base.errors import PluginError, UsageError
from ..base.metrics import defense_effect, filter_metrics
from ..base.record_schema import record_fields
from ..data.examples import Example
from ..plugins.defense import Defense
from .cells import Cell
from .defense_call import CellEnv, answer_fields
from .grants import grant_for
from .scenario import Scenario


def filtering_fields(defense: Defense, cell: Cell, scenario: Scenario, env: CellEnv) -> dict:
    """The record fields of one data-filter cell (module docstring)."""
    poisoned = poisoned_train(cell, scenario)
    grant = grant_for(defense, cell, scenario, env.pretrained, poisoned_train=tuple(poisoned))
    out = record_fields(defense_kind="data_filtering")
    answer = env.caller.call(defense, cell, scenario, grant)
    out.update(record_fields(filter_metrics([ex.poisoned for ex in poisoned], answer.output["kept"])))
    kept = [poisoned[i] for i in answer.output["kept"]]
    # -- retrain the victim on the kept samples with the scenario's victim recipe
    model = env.pretrained()
    with costs.phase("retrain", env.runtime.device) as retrain_cost:
        scenario.attack_context.finetune(model, kept)
    out.update(record_fields(retrain_cost=retrain_cost.as_dict()))
    with costs.phase("evaluation", env.runtime.device) as eval_cost:
        out.update(record_fields(scenario.evaluate(model)))
    out.update(record_fields(defense_effect(scenario.before, out)))
    out.update(answer_fields(answer, grant, eval_cost.as_dict()))
    return out


def poisoned_train(cell: Cell, scenario: Scenario) -> list[Example]:
    """The scenario's attack's poisoned training set (flags kept, for the harness's metrics only)."""
    poisoned = scenario.attack.poisoned_training_set(scenario.attack_context)
    if poisoned is None:
        raise UsageError(f"data filters and robust trainers need an attack that trains the victim on a poisoned "
                         f"training set with the scenario's recipe; attack {cell.attack.name!r} does not (it poisons "
                         f"weights, or trains with its own loss)")
    expected = scenario.attack_meta.get("poisoned_count")
    if expected is not None and sum(ex.poisoned for ex in poisoned) != expected:
        raise PluginError(f"attack {cell.attack.name!r}: its poisoned training set has "
                          f"{sum(ex.poisoned for ex in poisoned)} poisoned samples, the attack reported {expected}")
    return poisoned
