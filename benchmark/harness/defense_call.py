"""One way to call a defense of any kind: :meth:`DefenseCaller.call`, in this process or in an
isolated child, as the run's ``--isolation`` says.

The caller hands the defense its copy of the backdoored model, the tokenizer, the cell's recipe
and its :class:`~benchmark.harness.grants.Grant` (nothing else), and returns the
:class:`~benchmark.harness.apply.DefenseAnswer`. With ``isolation="process"`` or ``"sandbox"``
everything crosses as files (:mod:`benchmark.harness.isolation`); with ``"none"`` the defense
runs here, for debugging a trusted plugin. Each kind's cell (:mod:`~benchmark.harness.purification`,
:mod:`~benchmark.harness.detection`, :mod:`~benchmark.harness.filtering`,
:mod:`~benchmark.harness.robust`) gets a :class:`CellEnv`:
the runtime, the caller and the victim's pre-trained weights, and nothing of the harness besides.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Sequence

import torch

from ..base.costs import sum_phases
from ..base.record_schema import record_fields
from ..model.runtime import Runtime
from ..model.victims import clone_model
from ..plugins.defense import Defense, defense_kind
from ..plugins.params import params_to_dict
from ..plugins.registry import class_path
from . import isolation
from .apply import DefenseAnswer, apply_defense
from .cells import Cell
from .grants import Grant
from .scenario import Scenario


class DefenseCaller:
    """Calls defenses where ``mode`` (``auto``, ``process``, ``sandbox`` or ``none``) says, each
    isolated call within ``timeout_s``. ``hidden_paths`` gives, at each call, the folders a
    sandboxed defense must not see (the store, the data, ``--out``, the victims' folders)."""

    def __init__(self, mode: str, runtime: Runtime, hidden_paths: Callable[[], Sequence[str]],
                 timeout_s: float = isolation.DEFAULT_TIMEOUT_S):
        self.mode = isolation.resolve_isolation(mode)
        self.timeout_s = timeout_s
        self.runtime = runtime
        self._hidden_paths = hidden_paths
        self._server = isolation.DefenseServer()
        weakref.finalize(self, self._server.close)

    def warm(self) -> None:
        """Start the defense server without waiting for it (it takes seconds to import torch)."""
        if self.mode != "none":
            self._server.prestart()

    def close(self) -> None:
        self._server.close()

    def call(self, defense: Defense, cell: Cell, scenario: Scenario, grant: Grant,
             texts: Sequence[str] | None = None) -> DefenseAnswer:
        """Run ``defense`` on a copy of the scenario's backdoored model (a robust trainer gets none)
        with ``grant``; ``texts``:
        the inputs an input detector or corrector scores (bare, shuffled by the caller)."""
        if self.mode == "none":
            ctx = grant.context(defense_name=defense.name, requires=frozenset(defense.requires),
                                tokenizer=scenario.tokenizer, runtime=self.runtime, max_length=cell.budget.max_length,
                                seed=cell.seed, train_config=cell.budget.defense_training)
            given = None if defense_kind(defense) == "robust_training" else clone_model(scenario.backdoored)
            return apply_defense(defense, given, ctx, texts)
        job = isolation.DefenseJob(
            defense_class=class_path(type(defense)), defense_name=defense.name,
            params=params_to_dict(defense.params), requires=sorted(defense.requires), num_labels=scenario.num_labels,
            max_length=cell.budget.max_length, seed=cell.seed,
            train_config=dataclasses.asdict(cell.budget.defense_training), device=str(self.runtime.device),
            precision=self.runtime.precision, threads=torch.get_num_threads(), kind=defense_kind(defense))
        with isolation.private_folder() as folder:
            isolation.write_inputs(folder, job, scenario.backdoored, scenario.tokenizer, grant, texts)
            isolation.run_isolated(folder, self.mode, self._server, self._hidden_paths(),
                                   defense_module=type(defense).__module__, timeout_s=self.timeout_s)
            return isolation.read_result(folder, defense.name)


@dataclasses.dataclass(frozen=True)
class CellEnv:
    """What a kind's cell may use besides its defense, cell and scenario. runtime: device and
    precision. caller: runs the defense. pretrained: fresh copies of the victim's pre-trained
    weights with the scenario's seeded head (granted to a defense only when declared; a data
    filter's cell retrains the victim from them)."""

    runtime: Runtime
    caller: DefenseCaller
    pretrained: Callable[[], torch.nn.Module]


def answer_fields(answer: DefenseAnswer, grant: Grant, eval_cost: dict) -> dict:
    """The record fields an input-detection or data-filtering cell takes from the defense's
    answer: its costs summed over its phases (and each phase), its info, the harness's
    evaluation cost and the size of the clean data it was granted."""
    return record_fields(sum_phases(answer.phase_costs), aux={}, defense_info=answer.info,
                         defense_phases=answer.phase_costs, eval_cost=eval_cost,
                         clean_size=len(grant.clean_data or ()))
