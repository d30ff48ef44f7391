"""The harness: runs cells in one process and writes nothing (the runner appends the records).

A :class:`Harness` memoises what the cells of a run share — data sets, tokenizers, victim
fingerprints, the current scenario — and sends each cell to the function of its defense's kind
(:data:`KIND_CELLS`), handing it a typed :class:`~benchmark.harness.defense_call.CellEnv` and
nothing of itself. It keeps no process-wide state: a harness is passed, never found.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..base import costs
from ..base.errors import DataError, UsageError
from ..base.hashing import DigestCache, folder_fingerprint
from ..base.record_schema import record_fields
from ..base.records import portable_traceback, sanitize
from ..data.examples import Dataset
from ..data.sources import data_dir_from_env, load_dataset, resolve_spec
from ..data.subsets import dataset_fingerprint
from ..model.architecture import reinit_head
from ..model.runtime import Runtime, resolve_runtime
from ..model.victims import check_victim, load_classifier, load_tokenizer, resolve_victim
from ..plugins.attack import Attack
from ..plugins.defense import Defense, defense_kind
from ..plugins.registry import Registry, default_registry, import_class
from .cells import Cell, DataIdentity, HarnessConfig, cell_identity
from .defense_call import CellEnv, DefenseCaller
from .detection import detection_fields
from .filtering import filtering_fields
from .purification import purification_fields
from .robust import robust_training_fields
from .scenario import Scenario, Splits, attack_context, prepare_scenario
from .store import ArtifactStore

log = logging.getLogger(__name__)

# the record fields of one cell by its defense's kind: (defense, cell, scenario, env) -> fields
KIND_CELLS: dict[str, Callable[[Defense, Cell, Scenario, CellEnv], dict]] = {
    "purification": purification_fields, "input_detection": detection_fields, "data_filtering": filtering_fields,
    "robust_training": robust_training_fields,
}


def registry_for(config: HarnessConfig) -> Registry:
    """The registry a worker uses: built-ins, entry points, and ``config.plugins``."""
    if not config.plugins:
        return default_registry()
    registry = Registry()
    registry.load_builtins()
    registry.load_entry_points()
    for kind, target in config.plugins:
        try:
            cls = import_class(target)
        except (ImportError, AttributeError, ValueError) as exc:
            raise UsageError(f"--plugin {target!r}: cannot import it ({type(exc).__name__}: {exc})") from None
        registry.add(kind, getattr(cls, "name", target), f"plugin:{target}", lambda cls=cls: cls)
    return registry


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
        self.caller = DefenseCaller(config.isolation, self.runtime, self.hidden_paths, config.defense_timeout_s)

    def warm(self) -> None:
        """Start what every cell will need and that takes seconds to start (the defense server),
        without waiting for it: a worker calls this before its first task."""
        self.caller.warm()

    def close(self) -> None:
        """Stop the defense server (also done when the harness is garbage-collected)."""
        self.caller.close()

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
        """What a sandboxed defense must not see where the sandbox shows what holds it: the store,
        ``--out``, every data folder and the victims' own folders (the pre-trained weights)."""
        sources = [resolve_victim(v, self.config.store_dir) for v in self._tokenizers]
        victims = sorted(str(source.location) for source in sources if source.is_local)
        return [self.config.store_dir, self.config.data_dir or "", os.environ.get("BDBENCH_DATA", ""),
                *self.config.private_dirs, *sorted(self._data_folders), *victims]

    def data_identity(self, name: str) -> DataIdentity:
        """What records will say of the data set the run calls ``name`` (reads it)."""
        dataset, fingerprint = self.dataset(name)
        registered = name in self.registry.datasets
        return DataIdentity(name, name if registered else dataset.name, dataset.source, fingerprint,
                            dataset.dev_carved, dataset.label_names, by_content=not registered)

    def tokenizer(self, victim: str):
        if victim not in self._tokenizers:
            self._tokenizers[victim] = load_tokenizer(resolve_victim(victim, self.config.store_dir).location)
        return self._tokenizers[victim]

    def victim_fingerprint(self, victim: str) -> str:
        """A digest of the victim folder's files (weights, config, tokenizer), or the hub id."""
        if victim not in self._victim_fps:
            source = resolve_victim(victim, self.config.store_dir)
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
            model = load_classifier(resolve_victim(victim, self.config.store_dir).location, num_labels,
                                    allow_pickle=self.config.allow_pickle, new_head=True)
            reinit_head(model, torch.Generator().manual_seed(seed))  # a head that depends on the seed only
            return model

        return load

    def scenario(self, cell: Cell) -> Scenario:
        """The cell's prepared scenario; the last one is kept, so the cells of one scenario share it."""
        key = cell.scenario_key()
        if self._scenario is None or self._scenario[0] != key:
            self._scenario = None  # free the previous scenario's model first
            try:
                dataset, fingerprint = self.dataset(cell.dataset)
                attack: Attack = cell.attack.create()
                victim = resolve_victim(cell.victim, self.config.store_dir)
                scenario = prepare_scenario(
                    store=self.store, dataset=dataset, dataset_fp=fingerprint, victim=victim,
                    victim_fp=self.victim_fingerprint(cell.victim), tokenizer=self.tokenizer(cell.victim),
                    pretrained=self.pretrained_loader(cell.victim, dataset.num_labels, cell.seed),
                    attack=attack, seed=cell.seed, budget=cell.budget, runtime=self.runtime,
                    data_dir=data_dir_from_env(self.config.data_dir))
                if self.config.stealth_lm:
                    self._add_perplexity(scenario)
                self._scenario = (key, scenario)
            except (Exception, SystemExit) as exc:  # remembered: every defense of this scenario fails the same way
                exc.__traceback_text__ = traceback.format_exc()  # type: ignore[attr-defined]
                self._scenario = (key, exc)
        result = self._scenario[1]
        if isinstance(result, BaseException):
            raise result
        return result

    def _add_perplexity(self, scenario: Scenario) -> None:
        """The scenario's ΔPPL under ``--stealth-lm`` (:func:`benchmark.model.perplexity.perplexity_figures`:
        the triggered test texts against the non-target test texts they came from), computed once
        per scenario and LM and kept in the store; added to ``attack_meta["stealth"]``."""
        from ..model.perplexity import load_causal_lm, perplexity_figures

        name = self.config.stealth_lm
        key = hashlib.sha256(f"{scenario.scenario_id}\0{name}".encode()).hexdigest()[:24]

        def compute() -> dict:
            lm = load_causal_lm(name, who="--stealth-lm", option="--stealth-lm")
            lm.model.to(self.runtime.device)
            lm.to_device = lambda x: x.to(self.runtime.device)
            sources = [ex.text for ex in scenario.splits.test if ex.label != scenario.target_label]
            with costs.phase("stealth-perplexity", self.runtime.device):
                return perplexity_figures(lm, sources, scenario.triggered_test)

        figures = self.store.get_or_compute("stealth", key, compute)
        scenario.attack_meta["stealth"] = {**scenario.attack_meta.get("stealth", {}), **figures}

    def check_inputs(self, cells: Sequence[Cell]) -> None:
        """Read every data set (each cell's target label must be one of its classes) and check
        every victim (safe weights, config, tokenizer, room for the longest ``max_length``)
        before any training starts."""
        for name in sorted({c.dataset for c in cells}):
            dataset, _ = self.dataset(name)
            for target in sorted({c.budget.target_label for c in cells if c.dataset == name}):
                if target >= dataset.num_labels:
                    raise UsageError(f"target_label {target} is not a class of data set {name!r} "
                                     f"(its classes are 0..{dataset.num_labels - 1})")
        for victim in sorted({c.victim for c in cells}):
            longest = max(c.budget.max_length for c in cells if c.victim == victim)
            source = check_victim(victim, allow_pickle=self.config.allow_pickle, max_length=longest,
                                  store_dir=self.config.store_dir)
            self._note_head(victim, source, {self.dataset(c.dataset)[0].num_labels for c in cells if c.victim == victim})
        for cell in {c.scenario_key(): c for c in cells}.values():
            if cell.attack.cls is not None:  # an attack that failed to import fails its own cells
                self.check_attack(cell)

    @staticmethod
    def _note_head(victim: str, source, num_labels: set[int]) -> None:
        """Say once when a victim folder's own head has another number of classes than a data set:
        the head is drawn afresh at the data set's classes, as every pre-trained victim's is."""
        if not source.is_local:
            return
        with contextlib.suppress(Exception):
            import json

            config = json.loads((Path(source.location) / "config.json").read_text(encoding="utf-8"))
            own = len(config["id2label"]) if isinstance(config.get("id2label"), dict) else config.get("num_labels")
            for n in sorted(num_labels):
                if isinstance(own, int) and own != n:
                    log.warning("victim %s has a head of %d classes and the data set %d: the head is drawn afresh "
                                "at %d classes (as every pre-trained victim's is; its own head is not used)",
                                victim, own, n, n)

    def check_attack(self, cell: Cell) -> None:
        """The attack's own check (:meth:`Attack.check`: its parameters against the victim, the
        inputs it reads) in the context its scenario will give it, without training."""
        dataset, _ = self.dataset(cell.dataset)
        attack: Attack = cell.attack.create()
        splits = Splits.limited(dataset, cell.budget, cell.seed)
        attack.check(attack_context(attack, self.tokenizer(cell.victim), self.runtime, cell.budget, cell.seed, splits,
                                    dataset, self.pretrained_loader(cell.victim, dataset.num_labels, cell.seed),
                                    None, data_dir_from_env(self.config.data_dir)))

    # -- one cell
    def run_cell(self, cell: Cell) -> dict:
        """The cell's record (:mod:`benchmark.base.record_schema`): ok with its figures, or failed with its error."""
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
        with contextlib.suppress(Exception):  # a victim that cannot be read fails its cell above already
            record["provenance"]["victim_fingerprint"] = self.victim_fingerprint(cell.victim)
        record.update(record_fields(finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
        return sanitize(record)

    def _run(self, cell: Cell) -> dict:
        """An ok record's fields besides the identity (raises when the cell fails)."""
        defense: Defense = cell.defense.create()
        scenario = self.scenario(cell)
        out = scenario_fields(cell, scenario, defense, self.caller.mode)
        env = CellEnv(self.runtime, self.caller, self.pretrained_loader(cell.victim, scenario.num_labels, cell.seed))
        out.update(KIND_CELLS[defense_kind(defense)](defense, cell, scenario, env))
        return out


def scenario_fields(cell: Cell, scenario: Scenario, defense: Defense, isolation_mode: str) -> dict:
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
        attack_info=scenario.attack_meta["info"],
        **({"attack_stealth": scenario.attack_meta["stealth"]} if "stealth" in scenario.attack_meta else {}),
        poisoned_count=scenario.attack_meta["poisoned_count"],
        isolation=isolation_mode)


