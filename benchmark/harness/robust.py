"""A robust-training cell: the defender trains the model, the harness scores it.

**Robust trainers** (:class:`~benchmark.plugins.defense.RobustTrainer`) receive the poisoned
training set the attack made (from :meth:`~benchmark.plugins.attack.Attack.poisoned_training_set`;
texts and labels in the attack's order, no poison flags) and the victim's pre-trained weights
with the scenario's seeded head, and nothing of the attacked model: they train a classifier from
the pre-trained weights themselves. The harness scores the returned model as it scores a purified
one: ``cacc``, ``asr`` and the attack's ``<name>_rate``, ``aux``, ``defense_info``; the effect
(``delta_cacc``, ``delta_asr``, ``der``) is measured against the scenario's attacked model, which
is ordinary training on the same set with the scenario's victim recipe (the section's ``none``
row), and the floor is the scenario's clean reference model, as for every kind. ``train_size``
and ``poisoned_train_size`` say what was trained on; where the defense names the samples it
isolated (``defense_info.isolated``, indices into the training set), ``isolated_poisoned`` counts
the poisoned ones among them (the harness holds the flags; the defense never does).

Only attacks that poison a training set qualify; weight-poisoning attacks (EP, LWP), SOS and a
model made elsewhere without its training set get the one error of
:func:`~benchmark.harness.filtering.poisoned_train`.

Costs: ``wall_s`` … ``train_tokens`` are the defense phase's own (the whole training), the
harness's predictions in ``eval_cost``.
"""

from __future__ import annotations

from ..base.record_schema import record_fields
from ..plugins.defense import Defense
from .cells import Cell
from .defense_call import CellEnv
from .filtering import poisoned_train
from .grants import grant_for
from .purification import model_answer_fields
from .scenario import Scenario


def robust_training_fields(defense: Defense, cell: Cell, scenario: Scenario, env: CellEnv) -> dict:
    """The record fields of one robust-training cell (module docstring)."""
    poisoned = poisoned_train(cell, scenario)
    grant = grant_for(defense, cell, scenario, env.pretrained, poisoned_train=tuple(poisoned))
    answer = env.caller.call(defense, cell, scenario, grant)
    out = model_answer_fields(answer, grant, scenario, env, "robust_training")
    out.update(record_fields(train_size=len(poisoned), poisoned_train_size=sum(ex.poisoned for ex in poisoned)))
    isolated = answer.info.get("isolated")
    if isinstance(isolated, list) and all(isinstance(i, int) and 0 <= i < len(poisoned) for i in isolated):
        out.update(record_fields(isolated_poisoned=sum(poisoned[i].poisoned for i in set(isolated))))
    return out
