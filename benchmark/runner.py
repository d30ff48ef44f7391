"""The runner: expands a suite into cells, hands them to an executor, writes records.

A cell (scenario × defense) is a pure function of its :class:`CellSpec`, the
:class:`HarnessConfig` and the artifact store, so every executor gives the same records.
Executors (:mod:`benchmark.executors`) run the cells: ``local`` in this process, in scenario
order so that a prepared scenario (its backdoored model in memory) is reused by all its
defenses; ``process`` and ``ray`` over N workers, building each scenario once.

Each defense runs where only its declared assets exist (:mod:`benchmark.isolation`): a child
process that receives the backdoored weights, the tokenizer and what ``requires`` grants, and
returns weights that the harness evaluates. The harness keeps no process-wide state: a
:class:`Harness` is passed, never found through a module global.

Concurrent runs on one ``--out`` share the work: before computing a cell the driver claims it
(:func:`benchmark.records.claim_cell`); a cell another run holds is deferred, and once its lock
is free it is skipped if that run finished it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import traceback
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from . import detection, isolation, measure
from .architecture import reinit_head
from .config import Budget, PluginSpec, Suite, stable_hash
from .data import Dataset, clean_subset, load_dataset, resolve_spec
from .errors import BdbenchError, DataError, UsageError
from .executors import LocalExecutor
from .fingerprint import DigestCache, folder_fingerprint
from .metrics import defense_effect
from .params import params_to_dict
from .plugin import Attack, Defense, DefenseContext, DefenseOutput
from .provenance import provenance
from .records import (append_record, check_writable, claim_cell, finished_cells, portable_traceback, records_end,
                      sanitize)
from .registry import Registry, default_registry
from .resolve import ResolvedPlugin, resolve_cells
from .runtime import Runtime, resolve_runtime
from .scenario import Scenario, dataset_fingerprint, prepare_scenario, same_weights
from .schema import RecordSchemaWarning, record_fields, record_problems
from .store import ArtifactStore
from .victims import clone_model, load_classifier, load_tokenizer, resolve_victim

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DataIdentity:
    """One data set of a run as its records name it, read once by the driver (:func:`run_cells`)
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
    isolation: str = "process"  # where a defense runs: process, sandbox or none (benchmark.isolation)
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
    """One cell: a scenario (dataset, victim, attack, seed, budget) and a defense. ``attack`` and
    ``defense`` are :class:`PluginSpec` as configured until :func:`validate_cells` resolves them
    (:class:`~benchmark.resolve.ResolvedPlugin`: class, checked parameters, ``--set`` values
    applied); the executors receive resolved cells."""

    dataset: str
    victim: str
    attack: PluginSpec | ResolvedPlugin
    defense: PluginSpec | ResolvedPlugin
    seed: int
    budget: Budget

    def scenario_tuple(self) -> tuple:
        return (self.dataset, self.victim, self.attack, self.seed, self.budget)


def registry_for(config: HarnessConfig) -> Registry:
    """The registry a worker uses: built-ins, entry points, and ``config.plugins``."""
    if not config.plugins:
        return default_registry()
    registry = Registry()
    registry.load_builtins()
    registry.load_entry_points()
    for kind, target in config.plugins:
        try:
            cls = isolation.import_class(target)
        except (ImportError, AttributeError, ValueError) as exc:
            raise UsageError(f"--plugin {target!r}: cannot import it ({type(exc).__name__}: {exc})") from None
        registry.add(kind, getattr(cls, "name", target), f"plugin:{target}", lambda cls=cls: cls)
    return registry


def expand(suite: Suite) -> list[CellSpec]:
    """The suite's cells, grouped by scenario (datasets, victims, attacks, seeds, then defenses)."""
    cells = []
    for dataset in suite.datasets:
        plan = suite.plan(dataset)
        cells += [CellSpec(dataset, v, a, df, s, plan.budget)
                  for v in suite.victims for a in plan.attacks for s in suite.seeds for df in plan.defenses]
    return cells


def validate_cells(cells: Sequence[CellSpec], registry: Registry, config: HarnessConfig) -> list[CellSpec]:
    """Fail before any compute on unknown names, bad parameter values, ``--set`` for a plugin the
    run does not use and bad data set names; returns the cells with their plugins resolved
    (:func:`~benchmark.resolve.resolve_cells`). Plugins that fail to import are left to fail
    their own cells."""
    resolved = resolve_cells(cells, registry, config)
    for plugin in dict(config.overrides):
        known = {c.attack.name for c in cells} | {c.defense.name for c in cells}
        if plugin not in known:
            raise UsageError(f"--set names plugin {plugin!r}, which this run does not use (it uses {sorted(known)})")
    for name in {c.dataset for c in cells}:
        resolve_spec(name, registry.datasets, config.text_field, config.label_field)
    check_column_options(cells, registry, config)
    return resolved


def check_column_options(cells: Sequence[CellSpec], registry: Registry, config: HarnessConfig) -> None:
    """Refuse ``--text-field``/``--label-field`` in a run whose data sets are all registered
    (they keep their own columns, so the option would do nothing)."""
    given = [option for option, value in (("--text-field", config.text_field), ("--label-field", config.label_field))
             if value is not None]
    names = sorted({c.dataset for c in cells})
    if given and names and all(name in registry.datasets for name in names):
        raise UsageError(f"{' and '.join(given)} name the columns of a folder or hf:ID data set, but this run's "
                         f"data sets ({', '.join(names)}) are registered ones, which keep their own columns")


class Harness:
    """Runs cells in one process, memoising data, tokenizers, pre-trained weights, victim
    fingerprints and the current scenario."""

    def __init__(self, config: HarnessConfig, registry: Registry | None = None):
        self.config = config
        self.registry = registry or registry_for(config)
        self.runtime: Runtime = resolve_runtime(config.device, config.precision)
        self.store = ArtifactStore(config.store_dir)
        self._digests = DigestCache(Path(config.store_dir) / "file-digests.json")
        self._datasets: dict[str, tuple[Dataset, str]] = {}
        self._data_folders: set[str] = set()  # folders of the data sets read (hidden from sandboxed defenses)
        self._tokenizers: dict[str, object] = {}
        self._victim_fps: dict[str, str] = {}
        self._scenario: tuple[tuple, Scenario | BaseException] | None = None
        self._defense_server = isolation.DefenseServer()
        weakref.finalize(self, self._defense_server.close)

    def warm(self) -> None:
        """Start what every cell will need and that takes seconds to start (the defense server),
        without waiting for it: a worker calls this before its first task."""
        if self.config.isolation != "none":
            self._defense_server.prestart()

    def close(self) -> None:
        """Stop the defense server (also done when the harness is garbage-collected)."""
        self._defense_server.close()

    # -- memoised inputs
    def dataset(self, name: str) -> tuple[Dataset, str]:
        """The data set the run calls ``name`` and its fingerprint, read once; a worker whose copy
        differs from what the driver read (the files changed meanwhile) gets a :class:`DataError`."""
        if name not in self._datasets:
            spec = resolve_spec(name, self.registry.datasets, self.config.text_field, self.config.label_field)
            dataset = load_dataset(spec, self.config.data_dir)
            fingerprint = dataset_fingerprint(dataset)
            known = self.config.data_identity(name)
            if known is not None and known.fingerprint != fingerprint:
                raise DataError(f"data set {name}: its content changed during the run (fingerprint "
                                f"{known.fingerprint} when the run started, {fingerprint} now); rerun it")
            self._datasets[name] = (dataset, fingerprint)
            if spec.location is not None and spec.hub_id is None:
                self._data_folders.add(spec.location)
        return self._datasets[name]

    def hidden_paths(self) -> list[str]:
        """What a sandboxed defense must not see: the store and every data folder."""
        return [self.config.store_dir, self.config.data_dir or "", os.environ.get("BDBENCH_DATA", ""),
                *sorted(self._data_folders)]

    def data_identity(self, name: str) -> DataIdentity:
        """What records will say of the data set the run calls ``name`` (reads it)."""
        dataset, fingerprint = self.dataset(name)
        registered = name in self.registry.datasets
        return DataIdentity(name, name if registered else dataset.name, dataset.source, fingerprint,
                            dataset.dev_carved, dataset.label_names, by_content=not registered)

    def tokenizer(self, victim: str):
        if victim not in self._tokenizers:
            self._tokenizers[victim] = load_tokenizer(resolve_victim(victim).location)
        return self._tokenizers[victim]

    def victim_fingerprint(self, victim: str) -> str:
        """A digest of the victim folder's files (weights, config, tokenizer), or the hub id."""
        if victim not in self._victim_fps:
            source = resolve_victim(victim)
            self._victim_fps[victim] = (folder_fingerprint(source.location, self._digests) if source.is_local
                                        else f"hub:{source.location}")
        return self._victim_fps[victim]

    def pretrained_loader(self, victim: str, num_labels: int, seed: int) -> Callable[[], torch.nn.Module]:
        """Fresh copies of the victim's pre-trained weights; the new head is seeded by ``seed``. The
        weights are read from the victim's files at every call, never kept: reading them takes
        less time than copying a model in memory, and a copy kept for later would stay resident
        through every training phase (a cached scenario whose defenses do not ask for them never
        reads them)."""

        def load() -> torch.nn.Module:
            model = load_classifier(resolve_victim(victim).location, num_labels,
                                    allow_pickle=self.config.allow_pickle, new_head=True)
            reinit_head(model, torch.Generator().manual_seed(seed))  # a head that depends on the seed only
            return model

        return load

    def resolved(self, cell: CellSpec) -> CellSpec:
        """``cell`` with its plugins resolved (a no-op for the cells :func:`run_cells` hands out)."""
        return resolve_cells([cell], self.registry, self.config)[0]

    def scenario(self, cell: CellSpec) -> Scenario:
        """The cell's prepared scenario; the last one is kept, so the cells of one scenario share it."""
        cell = self.resolved(cell)
        key = cell.scenario_tuple()
        if self._scenario is None or self._scenario[0] != key:
            self._scenario = None  # free the previous scenario's model first
            try:
                dataset, fingerprint = self.dataset(cell.dataset)
                attack: Attack = cell.attack.create()
                victim = resolve_victim(cell.victim)
                scenario = prepare_scenario(
                    store=self.store, dataset=dataset, dataset_fp=fingerprint, victim=victim,
                    victim_fp=self.victim_fingerprint(cell.victim), tokenizer=self.tokenizer(cell.victim),
                    pretrained=self.pretrained_loader(cell.victim, dataset.num_labels, cell.seed),
                    attack=attack, seed=cell.seed, budget=cell.budget, runtime=self.runtime)
                self._scenario = (key, scenario)
            except (Exception, SystemExit) as exc:  # remembered: every defense of this scenario fails the same way
                exc.__traceback_text__ = traceback.format_exc()  # type: ignore[attr-defined]
                self._scenario = (key, exc)
        result = self._scenario[1]
        if isinstance(result, BaseException):
            raise result
        return result

    def check_inputs(self, cells: Sequence[CellSpec]) -> None:
        """Read every data set (each cell's target label must be one of its classes) and check
        every victim (safe weights, config, tokenizer, room for the longest ``max_length``)
        before any training starts."""
        from .victims import check_victim

        for name in sorted({c.dataset for c in cells}):
            dataset, _ = self.dataset(name)
            for target in sorted({c.budget.target_label for c in cells if c.dataset == name}):
                if target >= dataset.num_labels:
                    raise UsageError(f"target_label {target} is not a class of data set {name!r} "
                                     f"(its classes are 0..{dataset.num_labels - 1})")
        for victim in sorted({c.victim for c in cells}):
            longest = max(c.budget.max_length for c in cells if c.victim == victim)
            check_victim(victim, allow_pickle=self.config.allow_pickle, max_length=longest)

    # -- one cell
    def run_cell(self, cell: CellSpec) -> dict:
        """The cell's record (:mod:`benchmark.schema`): ok with its figures, or failed with its error."""
        cell = self.resolved(cell)
        record = cell_identity(cell, self.config, self.runtime)
        try:
            record.update(self._run(cell))
            record.update(record_fields(status="ok"))
        except (Exception, SystemExit) as exc:  # a plugin's sys.exit fails its cell, not the run
            where = getattr(exc, "__traceback_text__", None) or traceback.format_exc()
            log.error("cell %s failed: %s", record["cell_id"], exc)
            record.update(record_fields(status="failed", error=f"{type(exc).__name__}: {exc}",
                                        traceback=portable_traceback(where)[-4000:]))
        record["provenance"]["threads"] = torch.get_num_threads()
        record.update(record_fields(finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
        return sanitize(record)

    def _run(self, cell: CellSpec) -> dict:
        """An ok record's fields besides the identity (raises when the cell fails)."""
        defense: Defense = cell.defense.create()
        scenario = self.scenario(cell)
        out = scenario_fields(cell, scenario, defense, self.config.isolation)
        if detection.handles(defense):  # input detection/correction, data filtering: benchmark.detection
            out.update(detection.run_cell(self, cell, defense, scenario))
            return out

        # -- the defense, seeing only what it declared
        assets = self._granted_assets(defense, cell, scenario)
        model, aux_models, info, costs = self._purify(defense, cell, scenario, assets)

        # -- evaluation of the purified model (and of any auxiliary model, e.g. a teacher)
        with measure.phase("evaluation", self.runtime.device) as eval_cost:
            # unchanged weights score what the backdoored model scored (evaluation is deterministic)
            metrics = dict(scenario.before) if same_weights(model, scenario.backdoored) else scenario.evaluate(model)
            aux = {name: scenario.evaluate(aux_model) for name, aux_model in aux_models.items()}
        out.update(record_fields(metrics, defense_kind="purification", aux=aux, defense_info=info,
                                 eval_cost=eval_cost.as_dict(), clean_size=len(assets.get("clean_data", ()))))
        out.update(record_fields(defense_effect(scenario.before, metrics)))
        out.update(record_fields({key: costs[key] for key in DEFENSE_COSTS}))
        return out

    def _granted_assets(self, defense: Defense, cell: CellSpec, scenario: Scenario) -> dict:
        """Exactly what ``defense.requires`` grants (pre-trained weights are handled apart)."""
        granted = defense.requires
        assets: dict = {}
        if "clean_data" in granted:
            assets["clean_data"] = [(ex.text, ex.label)
                                    for ex in clean_subset(scenario.splits.train, cell.budget.clean_fraction, cell.seed)]
        if "clean_dev" in granted:
            assets["clean_dev"] = [(ex.text, ex.label) for ex in scenario.splits.dev]
        if "target_label" in granted:
            assets["target_label"] = scenario.target_label
        return assets

    def _purify(self, defense: Defense, cell: CellSpec, scenario: Scenario, assets: dict):
        """Run the defense (isolated unless ``isolation`` is none): (model, aux models, info, cost)."""
        num_labels = scenario.num_labels
        pretrained = (self.pretrained_loader(cell.victim, num_labels, cell.seed)
                      if "pretrained_weights" in defense.requires else None)
        if self.config.isolation == "none":
            ctx = self._defense_context(defense, cell, scenario, assets, pretrained)
            with measure.phase("defense", self.runtime.device) as cost:
                result = defense.purify(clone_model(scenario.backdoored), ctx)
            output = result if isinstance(result, DefenseOutput) else DefenseOutput(result)
            return output.model, output.aux_models, output.info, cost.as_dict()
        job = isolation.DefenseJob(
            defense_class=isolation.class_path(type(defense)), defense_name=defense.name,
            params=params_to_dict(defense.params), requires=sorted(defense.requires), num_labels=num_labels,
            max_length=cell.budget.max_length, seed=cell.seed,
            train_config=dataclasses.asdict(cell.budget.defense_training), device=str(self.runtime.device),
            precision=self.runtime.precision, threads=torch.get_num_threads())
        with isolation.private_folder() as folder:
            isolation.write_inputs(folder, job, scenario.backdoored, scenario.tokenizer, assets, pretrained)
            isolation.run_isolated(folder, self.config.isolation, self._defense_server, self.hidden_paths())
            result = isolation.read_result(folder, defense.name)
        return result.model, result.aux_models, result.info, result.cost

    def _defense_context(self, defense: Defense, cell: CellSpec, scenario: Scenario, assets: dict,
                         pretrained) -> DefenseContext:
        from .data import Example

        def examples(key):
            return tuple(Example(t, y) for t, y in assets[key]) if key in assets else None

        return DefenseContext(
            tokenizer=scenario.tokenizer, runtime=self.runtime, max_length=cell.budget.max_length, seed=cell.seed,
            train_config=cell.budget.defense_training, defense_name=defense.name,
            requires=frozenset(defense.requires), _clean_data=examples("clean_data"),
            _clean_dev=examples("clean_dev"), _pretrained=pretrained, _target_label=assets.get("target_label"))


# the defense phase's costs as every ok record states them (benchmark.measure.PhaseCost's fields)
DEFENSE_COSTS = ("wall_s", "cpu_s", "gpu_s", "peak_gpu_mb", "peak_rss_mb", "device", "train_samples", "train_tokens")


def scenario_fields(cell: CellSpec, scenario: Scenario, defense: Defense, isolation_mode: str) -> dict:
    """The fields every ok record carries whatever its defense's kind: the resolved plugins and
    the scenario's own figures (its models before any defense, the attack's cost)."""
    return record_fields(
        {f"{k}_before": v for k, v in scenario.before.items() if k.endswith("_rate")},
        attack_params=cell.attack.params_dict(), defense_params=cell.defense.params_dict(),
        attack_version=cell.attack.plugin_class().version, defense_version=defense.version,
        requires=sorted(defense.requires), scenario_id=scenario.scenario_id,
        cacc_before=scenario.before["cacc"], asr_before=scenario.before["asr"],
        cacc_clean=scenario.clean_meta["cacc"], asr_clean=scenario.attack_meta["clean_model_metrics"]["asr"],
        clean_cost=scenario.clean_meta["cost"], attack_cost=scenario.attack_meta["cost"],
        scenario_weights={"clean": scenario.clean_meta.get("weights_sha256"),
                          "backdoored": scenario.attack_meta.get("weights_sha256")},
        attack_info=scenario.attack_meta["info"], poisoned_count=scenario.attack_meta["poisoned_count"],
        isolation=isolation_mode)


def cell_identity(cell: CellSpec, config: HarnessConfig, runtime: Runtime) -> dict:
    """The record's identity fields, ``cell_id`` (a hash of all that determines the cell) and
    provenance; with ``config.data`` set (:func:`run_cells`), the data set as records name it.
    ``cell`` is resolved (:func:`validate_cells`): its plugins' ``overrides`` hold the suite's and
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
    return record_fields({k: identity[k] for k in ("dataset", "victim", "attack", "attack_label", "defense",
                                                   "defense_label", "seed", "budget")},
                         cell_id=config_hash, provenance=record_provenance)


def failed_record(cell: CellSpec, config: HarnessConfig, error: str) -> dict:
    """The record of a cell that failed outside a worker's harness (its scenario's build failed,
    or its worker died)."""
    runtime = resolve_runtime(config.device, config.precision)
    record = cell_identity(cell, config, runtime)
    record.update(record_fields(status="failed", error=error,
                                finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    return sanitize(record)


def warn_if_malformed(record: dict) -> None:
    """Warn (:class:`~benchmark.schema.RecordSchemaWarning`) about a record that breaks the schema.
    The record is still written, so no computed cell is lost to a schema bug; the test suite turns
    the warning into an error."""
    problems = record_problems(record)
    if problems:
        warnings.warn(RecordSchemaWarning(f"record of cell {record.get('cell_id')}: {'; '.join(problems)}"),
                      stacklevel=2)


class _Claims:
    """The driver's side of cell claims: hands out cells this run may compute, deferring those
    another run holds, and skipping those it finished meanwhile."""

    def __init__(self, out_dir: Path, todo: list[tuple[CellSpec, str]], done: set[str], start: int):
        self.out_dir, self.start = out_dir, start
        self.pending = list(todo)
        self.done = set(done)
        self.held: dict[str, contextlib.ExitStack] = {}

    def _finished_elsewhere(self, cell_id: str) -> bool:
        return cell_id in finished_cells(self.out_dir, start=self.start) or cell_id in self.done

    def cells(self) -> Iterator[CellSpec]:
        deferred: list[tuple[CellSpec, str]] = []
        for wait, queue in ((False, self.pending), (True, deferred)):
            for cell, cell_id in queue:
                stack = contextlib.ExitStack()
                claimed = stack.enter_context(claim_cell(self.out_dir, cell_id, wait=wait))
                if not claimed:
                    stack.close()
                    deferred.append((cell, cell_id))
                    continue
                if self._finished_elsewhere(cell_id):
                    stack.close()
                    log.info("cell %s was finished by another run; skipped", cell_id)
                    continue
                self.held[cell_id] = stack
                yield cell

    def release(self, cell_id: str) -> None:
        stack = self.held.pop(cell_id, None)
        if stack is not None:
            stack.close()

    def release_all(self) -> None:
        for cell_id in list(self.held):
            self.release(cell_id)


def run_cells(cells: Sequence[CellSpec], config: HarnessConfig, out_dir: str | os.PathLike, *,
              resume: bool = False, executor=None,
              registry: Registry | None = None) -> list[dict]:
    """Run ``cells`` (skipping finished ones with ``resume``), appending each record as it ends.
    ``executor`` defaults to :class:`~benchmark.executors.LocalExecutor`; pooled executors'
    workers load their own registry (:func:`registry_for`), so extra plugins go in ``config.plugins``."""
    registry = registry or registry_for(config)
    isolation.check_isolation(config.isolation)
    cells = validate_cells(cells, registry, config)
    out_dir = Path(out_dir)
    check_writable(out_dir)
    checker = Harness(config, registry)
    checker.check_inputs(cells)
    config = dataclasses.replace(config, data=tuple(checker.data_identity(name)
                                                    for name in sorted({c.dataset for c in cells})))
    runtime = checker.runtime
    del checker  # workers build their own harness; the driver keeps none
    start = records_end(out_dir)
    done = finished_cells(out_dir) if resume else set()
    todo = [(c, cell_identity(c, config, runtime)["cell_id"]) for c in cells]
    todo = [(c, cid) for c, cid in todo if cid not in done]
    if len(todo) < len(cells):
        log.info("resume: %d of %d cells already finished", len(cells) - len(todo), len(cells))
    claims = _Claims(out_dir, todo, done, start)
    records = []
    try:
        for record in (executor or LocalExecutor()).run(claims.cells(), config, registry):
            warn_if_malformed(record)
            append_record(out_dir, record)
            claims.release(record["cell_id"])
            registry.notify_record(record)
            records.append(record)
            summary = (f"cacc={record.get('cacc', float('nan')):.3f} asr={record.get('asr', float('nan')):.3f}"
                       if record["status"] == "ok" else f"FAILED: {record.get('error')}")
            log.info("%s | %s | %s | %s | seed %s: %s", record["dataset"], record["attack_label"],
                     record["defense_label"], record["victim"], record["seed"], summary)
    finally:
        claims.release_all()
    return records


def check_config(cells: Sequence[CellSpec], config: HarnessConfig, registry: Registry | None = None) -> None:
    """What ``bdbench validate`` does: every name, parameter and data set, without training."""
    registry = registry or registry_for(config)
    isolation.check_isolation(config.isolation)
    cells = validate_cells(cells, registry, config)
    for cell in cells:
        for plugin in (cell.attack, cell.defense):
            plugin.plugin_class()  # a plugin that fails to import fails validation here
    Harness(config, registry).check_inputs(cells)
    if not cells:
        raise BdbenchError("the run has no cells")
