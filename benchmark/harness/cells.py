r"""Cells: what a run is made of, and everything a cell's result depends on besides the store.

A suite expands (:func:`expand`) into :class:`CellSpec`\ s, its plugins as configured
(:class:`~benchmark.plugins.resolve.PluginSpec`); :func:`resolve_cells` resolves each distinct
configured plugin once, into the :class:`Cell`\ s that executors and the harness run (their
plugins :class:`~benchmark.plugins.resolve.ResolvedPlugin`: class, checked parameters, ``--set``
values applied). :func:`cell_identity` names a cell in its record; its hash input must never
change, since ``--resume`` of the published runs matches those ids.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from ..base.hashing import stable_hash
from ..base.provenance import provenance
from ..base.record_schema import record_fields
from ..base.records import sanitize
from ..model import gguf
from ..model.runtime import Runtime, resolve_runtime
from ..plugins.registry import Registry
from ..plugins.resolve import PluginSpec, ResolvedPlugin, resolve_plugin
from .config import Budget, Suite


@dataclasses.dataclass(frozen=True)
class DataIdentity:
    """One data set of a run as its records name it, read once by the driver (:func:`~benchmark.harness.runner.run_cells`)
    and handed to every worker in the :class:`HarnessConfig`, with no paths in it.

    reference: the data set as the run names it (a registered name, a folder path or
    ``hf:ID[:CONFIG]``); not recorded. name: the records' ``dataset`` (the registered name, the
    folder's name, or ``ID[:CONFIG]``). source, fingerprint (every text and label), dev_carved and
    label_names (the label written for each class, when labels were mapped): the provenance.
    by_content: the fingerprint enters the cell id, so edited data is a new cell; True for folder
    and hub data sets. Registered data sets keep cell ids by name, which ``--resume`` matches
    against their earlier records.
    """

    reference: str
    name: str
    source: str
    fingerprint: str
    dev_carved: bool
    label_names: tuple[str, ...]
    by_content: bool

    def provenance(self) -> dict:
        out = {"dataset_source": self.source, "dataset_fingerprint": self.fingerprint,
               "dataset_dev_carved": self.dev_carved}
        if self.label_names:
            out["dataset_labels"] = {label: index for index, label in enumerate(self.label_names)}
        return out


@dataclasses.dataclass(frozen=True)
class HarnessConfig:
    """Everything outside a cell that its result depends on (picklable, for remote workers)."""

    store_dir: str
    data_dir: str | None = None
    device: str = "auto"
    precision: str = "auto"
    allow_pickle: bool = False
    overrides: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # --set, per plugin; resolve_cells reads it
    isolation: str = "process"  # where a defense runs: auto, process, sandbox or none (benchmark.harness.isolation)
    defense_timeout_s: float = 6 * 3600.0  # an isolated defense call's time limit (isolation.DEFAULT_TIMEOUT_S)
    stealth_lm: str | None = None  # a causal LM for every scenario's ΔPPL (attack_stealth), None: not computed
    private_dirs: tuple[str, ...] = ()  # more folders a sandboxed defense must not see (--out); set by run_cells
    plugins: tuple[tuple[str, str], ...] = ()  # extra (kind, "module:Class") plugins, loaded by every worker
    text_field: str | None = None  # --text-field: the text column of folder and hub data sets
    label_field: str | None = None  # --label-field: their label column
    data: tuple[DataIdentity, ...] = ()  # the run's data sets as records name them; set by run_cells

    def overrides_for(self, plugin: str) -> dict[str, str]:
        return dict(dict(self.overrides).get(plugin, ()))

    def data_identity(self, dataset: str) -> DataIdentity | None:
        """What records say of the data set the run calls ``dataset`` (None before run_cells read it)."""
        return next((d for d in self.data if d.reference == dataset), None)


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """One configured cell: a scenario (dataset, victim, attack, seed, budget) and a defense, its
    plugins as the suite or the caller wrote them. :func:`resolve_cells` makes it a :class:`Cell`."""

    dataset: str
    victim: str
    attack: PluginSpec
    defense: PluginSpec
    seed: int
    budget: Budget


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell with its plugins resolved: what executors and :class:`~benchmark.harness.harness.Harness`
    run. Picklable (workers receive it)."""

    dataset: str
    victim: str
    attack: ResolvedPlugin
    defense: ResolvedPlugin
    seed: int
    budget: Budget

    def scenario_key(self) -> tuple:
        """What the cell's scenario is determined by: cells with equal keys share one scenario."""
        return (self.dataset, self.victim, self.attack, self.seed, self.budget)


def expand(suite: Suite) -> list[CellSpec]:
    """The suite's cells, grouped by scenario (datasets, victims, attacks, seeds, then defenses)."""
    cells = []
    for dataset in suite.datasets:
        plan = suite.plan(dataset)
        cells += [CellSpec(dataset, v, a, df, s, plan.budget)
                  for v in suite.victims for a in plan.attacks for s in suite.seeds for df in plan.defenses]
    return cells


def resolve_cells(cells: Sequence[CellSpec], registry: Registry, config: HarnessConfig) -> list[Cell]:
    """``cells`` with their attack and defense resolved (:func:`~benchmark.plugins.resolve.resolve_plugin`),
    each distinct configured plugin once; ``config`` supplies the ``--set`` values. An unknown name
    or a bad value raises :class:`~benchmark.base.errors.UsageError`; a plugin that fails to
    import is resolved with its error and fails only its own cells."""
    memo: dict[tuple[str, PluginSpec], ResolvedPlugin] = {}

    def resolved(kind: str, spec: PluginSpec) -> ResolvedPlugin:
        if (kind, spec) not in memo:
            memo[(kind, spec)] = resolve_plugin(registry, kind, spec, config.overrides_for(spec.name))
        return memo[(kind, spec)]

    return [Cell(c.dataset, c.victim, resolved("attack", c.attack), resolved("defense", c.defense), c.seed, c.budget)
            for c in cells]


def cell_identity(cell: Cell, config: HarnessConfig, runtime: Runtime) -> dict:
    """The record's identity fields, ``cell_id`` (a hash of all that determines the cell) and
    provenance; with ``config.data`` set (:func:`run_cells`), the data set as records name it.
    ``cell`` is resolved (:func:`resolve_cells`): its plugins' ``overrides`` hold the suite's and
    ``--set``'s values, which the hash covers as given. The hash's input must never change:
    ``--resume`` of published runs matches these ids."""
    data = config.data_identity(cell.dataset)
    identity = {
        "dataset": data.name if data else cell.dataset, "victim": cell.victim, "attack": cell.attack.name,
        "attack_label": cell.attack.label, "defense": cell.defense.name, "defense_label": cell.defense.label,
        "seed": cell.seed, "budget": cell.budget.as_dict(),
        "attack_overrides": dict(cell.attack.overrides), "defense_overrides": dict(cell.defense.overrides),
        "precision": runtime.precision, "device_type": runtime.device.type,
    }
    if data is not None and data.by_content:
        identity["dataset_content"] = data.fingerprint
    config_hash = stable_hash(identity)
    record_provenance = provenance(config_hash, runtime.precision, runtime.device.type)
    record_provenance.update(data.provenance() if data else {})
    weights = gguf.weights_note(cell.victim)
    if weights is not None:  # a victim dequantised from a packaged, quantised file
        record_provenance["victim_weights"] = weights
    return record_fields({k: identity[k] for k in ("dataset", "victim", "attack", "attack_label", "defense",
                                                   "defense_label", "seed", "budget")},
                         cell_id=config_hash, provenance=record_provenance)


def failed_record(cell: Cell, config: HarnessConfig, error: str) -> dict:
    """The record of a cell that failed outside a worker's harness (its scenario's build failed,
    or its worker died)."""
    runtime = resolve_runtime(config.device, config.precision)
    record = cell_identity(cell, config, runtime)
    record.update(record_fields(status="failed", error=error,
                                finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    return sanitize(record)


