"""A model-purification cell: the defense returns a purified model, the harness scores it.

Record fields (besides the identity and the scenario's figures): ``cacc``, ``asr`` and the
attack's ``<name>_rate`` of the purified model; ``aux`` (CACC and ASR of each further model the
defense returned, e.g. a teacher); ``defense_info``; ``delta_cacc``, ``delta_asr``, ``der``; the
defense phase's costs (``wall_s`` … ``train_tokens``) and the evaluation's (``eval_cost``).
"""

from __future__ import annotations

from ..base import costs
from ..base.metrics import defense_effect
from ..base.record_schema import record_fields
from ..plugins.defense import Defense
from .apply import DefenseAnswer
from .cells import Cell
from .defense_call import CellEnv
from .grants import Grant, grant_for
from .scenario import Scenario, same_weights

# the defense phase's costs as every ok record states them (benchmark.base.costs.PhaseCost's fields)
DEFENSE_COSTS = ("wall_s", "cpu_s", "gpu_s", "peak_gpu_mb", "peak_rss_mb", "device", "train_samples", "train_tokens")


def purification_fields(defense: Defense, cell: Cell, scenario: Scenario, env: CellEnv) -> dict:
    """The record fields of one purification cell (module docstring)."""
    grant = grant_for(defense, cell, scenario, env.pretrained)
    answer = env.caller.call(defense, cell, scenario, grant)
    return model_answer_fields(answer, grant, scenario, env, "purification")


def model_answer_fields(answer: DefenseAnswer, grant: Grant, scenario: Scenario, env: CellEnv, kind: str) -> dict:
    """The fields of a cell whose defense answered with a model (a purification's, or a robust
    trainer's): its metrics and those of its auxiliary models, the effect against the scenario's
    backdoored model, the defense phase's costs and the evaluation's."""
    with costs.phase("evaluation", env.runtime.device) as eval_cost:
        # unchanged weights score what the backdoored model scored (evaluation is deterministic)
        model = answer.model
        metrics = dict(scenario.before) if same_weights(model, scenario.backdoored) else scenario.evaluate(model)
        aux = {name: scenario.evaluate(aux_model) for name, aux_model in answer.aux_models.items()}
    out = record_fields(metrics, defense_kind=kind, aux=aux, defense_info=answer.info,
                        eval_cost=eval_cost.as_dict(), clean_size=len(grant.clean_data or ()))
    out.update(record_fields(defense_effect(scenario.before, metrics)))
    defense_cost = answer.phase_costs["defense"]
    out.update(record_fields({key: defense_cost[key] for key in DEFENSE_COSTS}))
    return out
