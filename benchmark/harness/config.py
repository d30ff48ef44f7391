"""Suites and budgets: what a run covers and how much compute each phase may use.

A suite (a ``[suites.NAME]`` table of ``registry.toml``) names data sets, victims, attacks,
defenses and seeds, and a budget. Attack and defense entries are a plugin name or a table
``{ name = "mbtsad", label = "mbtsad-no-split", set = { split_rate = 0.0 } }`` so that one
plugin can appear in several configurations. Parameter values resolve in this order: the
plugin's dataclass default, the suite's ``[suites.NAME.set]`` table, the data set's
``[suites.NAME.per_dataset.DATASET.set]`` table, the entry's own ``set``, then
``--set plugin.param=value`` on the command line.

``datasets`` may also name a folder or ``hf:ID[:CONFIG]`` (:mod:`benchmark.data.sources`), whose columns
the suite's ``text_field`` and ``label_field`` keys name (``--text-field``/``--label-field`` replace
them).

``[suites.NAME.per_dataset.DATASET]`` also takes budget keys (``train_limit``, ``max_length``,
``[victim_training]``, ...) that replace the suite's for that data set only: long IMDb reviews
need a smaller training subset than SST-2 sentences for the same compute. Command-line budget
options replace both.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from ..base.errors import UsageError, did_you_mean
from ..model.training import TrainConfig
from ..model.victims import DEFAULT_VICTIM
from ..plugins.params import check_params, check_value, coerce, hparam
from ..plugins.resolve import PluginSpec


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much data and training each phase gets. Each field declares the values it accepts
    (:func:`benchmark.plugins.params.hparam`); :func:`budget_from` checks them with the option's name."""

    train_limit: int | None = hparam(None, range="[1, )")  # seeded, label-balanced subset of train (per seed)
    test_limit: int | None = hparam(None, range="[1, )")  # seeded, label-balanced subset of test (the same for every seed)
    dev_limit: int | None = hparam(None, range="[1, )")  # subset of dev for defenses' model selection
    # word-pieces, special tokens included; at least 16: attacks keep 8 pieces free for their triggers
    max_length: int = hparam(128, range="[16, )")
    clean_fraction: float = hparam(0.2, range="(0, 1]")  # defender's clean data: share of the (limited) training set
    target_label: int = hparam(1, range="[0, )")
    # The victim recipe. OpenBackdoor's lr 2e-5 × 2 epochs underfits MiniLM on a 2000-sample budget
    # (SST-2 test: clean 0.806, BadNets-backdoored 0.570); lr 1e-4 × 3 epochs was chosen on SST-2
    # *dev* (clean 0.849, backdoored 0.849, dev ASR 1.00) against 5e-5 × 3 (0.853 / 0.836).
    victim_training: TrainConfig = TrainConfig(epochs=3, lr=1e-4, batch_size=32, warmup_ratio=0.1)
    defense_training: TrainConfig = TrainConfig(epochs=3, lr=2e-5, batch_size=32, warmup_ratio=0.1,
                                                weight_decay=0.01)

    def __post_init__(self) -> None:
        check_params("budget", self)
        for name in ("victim_training", "defense_training"):
            check_train_config(getattr(self, name), f"budget.{name}")

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for name in ("victim_training", "defense_training"):
            out[name] = getattr(self, name).as_dict()
        return out


@dataclasses.dataclass(frozen=True)
class DatasetPlan:
    """What one data set of a suite runs: its budget and its configured plugins."""

    budget: Budget
    attacks: tuple[PluginSpec, ...]
    defenses: tuple[PluginSpec, ...]


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    datasets: tuple[str, ...]
    victims: tuple[str, ...]
    attacks: tuple[PluginSpec, ...]
    defenses: tuple[PluginSpec, ...]
    seeds: tuple[int, ...]
    budget: Budget
    description: str = ""
    per_dataset: tuple[tuple[str, DatasetPlan], ...] = ()  # data sets whose plan differs
    executor: str = "local"  # where cells run (benchmark.harness.executors); --executor overrides
    workers: int = 0  # 0: the executor's default
    threads: int = 0  # torch threads per worker; 0: cores / workers
    text_field: str | None = None  # the text column of folder and hub data sets; --text-field overrides
    label_field: str | None = None  # their label column; --label-field overrides

    def plan(self, dataset: str) -> DatasetPlan:
        return dict(self.per_dataset).get(dataset, DatasetPlan(self.budget, self.attacks, self.defenses))

    def with_changes(self, *, attacks: Sequence[str] | None = None, defenses: Sequence[str] | None = None,
                     budget_changes: Mapping[str, Any] | None = None,
                     budget_labels: Mapping[str, str] | None = None, **fields) -> Suite:
        """A copy with budget fields changed everywhere (suite and data sets) and the attacks or
        defenses narrowed to ``attacks``/``defenses``: a label the suite configures keeps its
        configuration (per data set), any other name is the plugin with its defaults.
        ``budget_labels`` names the budget keys in error messages (see :func:`budget_from`)."""
        def pick(names: Sequence[str] | None, configured: tuple[PluginSpec, ...], where: str):
            if names is None:
                return configured
            by_label = {spec.label: spec for spec in configured}
            return _plugin_specs([by_label.get(n, n) for n in names], {}, where)

        def change(plan: DatasetPlan) -> DatasetPlan:
            return DatasetPlan(budget_from(budget_changes or {}, plan.budget, "command line", budget_labels),
                               pick(attacks, plan.attacks, "--attack"), pick(defenses, plan.defenses, "--defense"))

        base = change(DatasetPlan(self.budget, self.attacks, self.defenses))
        return dataclasses.replace(self, budget=base.budget, attacks=base.attacks, defenses=base.defenses,
                                   per_dataset=tuple((d, change(p)) for d, p in self.per_dataset), **fields)


# the values a training recipe accepts (TrainConfig's fields; max_grad_norm 0 turns clipping off)
TRAIN_RANGES = {"epochs": "[1, 1000]", "lr": "(0, )", "batch_size": "[1, )", "warmup_ratio": "[0, 1]",
                "weight_decay": "[0, )", "max_grad_norm": "[0, )", "max_batch_tokens": "[1, )",
                "lora_rank": "[1, )", "lora_alpha": "(0, )", "lora_dropout": "[0, 1)"}


def check_train_config(config: TrainConfig, where: str, labels: Mapping[str, str] | None = None) -> None:
    """Refuse a training recipe with values outside :data:`TRAIN_RANGES` (naming the field)."""
    for key, interval in TRAIN_RANGES.items():
        label = (labels or {}).get(key, f"{where}.{key}")
        check_value(getattr(config, key), {"range": interval}, label)


def _train_config(raw: Mapping[str, Any], base: TrainConfig, where: str,
                  labels: Mapping[str, str] | None = None) -> TrainConfig:
    if not isinstance(raw, Mapping):
        raise UsageError(f"{where}: expected a table of training fields, got {raw!r}")
    fields = typing.get_type_hints(TrainConfig)
    changes = {}
    for key, value in raw.items():
        if key not in fields:
            raise UsageError(f"{where}: unknown training field {key!r}." + did_you_mean(key, fields))
        label = (labels or {}).get(key, f"{where}.{key}")
        changes[key] = coerce(value, fields[key], label)
        check_value(changes[key], {"range": TRAIN_RANGES[key]} if key in TRAIN_RANGES else {}, label)
    config = dataclasses.replace(base, **changes)
    check_train_config(config, where)
    return config


BUDGET_FIELDS = {"train_limit": int, "test_limit": int, "dev_limit": int, "max_length": int,
                 "clean_fraction": float, "target_label": int}
BUDGET_METADATA = {f.name: f.metadata for f in dataclasses.fields(Budget)}


def budget_from(raw: Mapping[str, Any], base: Budget = Budget(), where: str = "budget",
                labels: Mapping[str, str] | None = None) -> Budget:
    """``base`` with the budget keys of ``raw`` changed, each coerced and range-checked.
    ``labels`` names a key in messages (``{"train_limit": "--train-limit"}``;
    ``"victim_training.epochs"`` for a training field); the default is ``WHERE.KEY``."""
    labels = labels or {}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        label = labels.get(key, f"{where}.{key}")
        if key in BUDGET_FIELDS:
            changes[key] = None if value is None else coerce(value, BUDGET_FIELDS[key], label)
            check_value(changes[key], BUDGET_METADATA[key], label)
        elif key in ("victim_training", "defense_training"):
            own = {k.partition(".")[2]: v for k, v in labels.items() if k.startswith(f"{key}.")}
            changes[key] = _train_config(value, getattr(base, key), f"{where}.{key}", own)
    return dataclasses.replace(base, **changes)


def check_column(value: Any, where: str) -> str | None:
    """A column name (``--text-field``, ``text_field``): None, or a non-empty string."""
    if value is not None and not (isinstance(value, str) and value.strip()):
        raise UsageError(f"{where}: expected a column name, got {value!r}")
    return value


def check_seeds(seeds: Sequence[Any], where: str) -> tuple[int, ...]:
    """Seeds as a non-empty tuple of integers in [0, 2**32 - 1] (what every RNG accepts)."""
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Sequence) or not seeds:
        raise UsageError(f"{where}: expected a non-empty list of integer seeds, got {seeds!r}")
    out = tuple(coerce(s, int, where) for s in seeds)
    for seed in out:
        check_value(seed, {"range": f"[0, {2**32 - 1}]"}, where)
    return out


def _plugin_specs(raw: Sequence[Any], common: Mapping[str, Mapping[str, Any]], where: str) -> tuple[PluginSpec, ...]:
    specs = []
    for item in raw:
        if isinstance(item, PluginSpec):
            specs.append(item)
            continue
        if isinstance(item, str):
            name, label, own = item, item, {}
        elif isinstance(item, Mapping) and "name" in item:
            name, label, own = item["name"], item.get("label", item["name"]), dict(item.get("set", {}))
        else:
            raise UsageError(f"{where}: entries are names or tables with a 'name', got {item!r}")
        merged = {**common.get(name, {}), **own}
        specs.append(PluginSpec(name, label, tuple(sorted(merged.items()))))
    labels = [s.label for s in specs]
    if len(labels) != len(set(labels)):
        raise UsageError(f"{where}: labels must be unique, got {labels}")
    return tuple(specs)


SUITE_KEYS = {"description", "datasets", "victims", "attacks", "defenses", "seeds", "set", "per_dataset",
              "victim_training", "defense_training", "executor", "workers", "threads", "text_field", "label_field",
              *BUDGET_FIELDS}
PER_DATASET_KEYS = {"set", "victim_training", "defense_training", *BUDGET_FIELDS}


def _per_dataset(raw: Mapping[str, Any], datasets: Sequence[str], attacks: Sequence[Any], defenses: Sequence[Any],
                 budget: Budget, common: Mapping[str, Mapping[str, Any]],
                 where: str) -> tuple[tuple[str, DatasetPlan], ...]:
    plans = []
    for dataset, table in raw.get("per_dataset", {}).items():
        here = f"{where}.per_dataset.{dataset}"
        if dataset not in datasets:
            raise UsageError(f"{here}: {dataset!r} is not one of the suite's datasets {datasets}")
        unknown = set(table) - PER_DATASET_KEYS
        if unknown:
            raise UsageError(f"{here}: unknown keys {sorted(unknown)}; known: {sorted(PER_DATASET_KEYS)}")
        own = table.get("set", {})
        merged = {name: {**common.get(name, {}), **own.get(name, {})} for name in {*common, *own}}
        plans.append((dataset, DatasetPlan(
            budget=budget_from(table, budget, here),
            attacks=_plugin_specs(attacks, merged, f"{here}.attacks"),
            defenses=_plugin_specs(defenses, merged, f"{here}.defenses"))))
    return tuple(plans)


def suite_from_toml(name: str, table: Mapping[str, Any]) -> Suite:
    suites = table.get("suites", {})
    if name not in suites:
        raise UsageError(f"unknown suite {name!r}." + did_you_mean(name, suites))
    raw = suites[name]
    where = f"registry.toml [suites.{name}]"
    unknown = set(raw) - SUITE_KEYS
    if unknown:
        raise UsageError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(SUITE_KEYS)}")
    common = raw.get("set", {})
    budget = budget_from(raw, Budget(), where)
    datasets, attacks, defenses = raw.get("datasets", ["demo"]), raw.get("attacks", ["badnets"]), raw.get("defenses", ["none"])
    return Suite(
        name=name,
        datasets=tuple(datasets),
        victims=tuple(raw.get("victims", [DEFAULT_VICTIM])),
        attacks=_plugin_specs(attacks, common, f"{where}.attacks"),
        defenses=_plugin_specs(defenses, common, f"{where}.defenses"),
        seeds=check_seeds(raw.get("seeds", [0]), f"{where}.seeds"),
        budget=budget,
        description=raw.get("description", ""),
        per_dataset=_per_dataset(raw, datasets, attacks, defenses, budget, common, where),
        executor=str(raw.get("executor", "local")),
        workers=coerce(raw.get("workers", 0), int, f"{where}.workers"),
        threads=coerce(raw.get("threads", 0), int, f"{where}.threads"),
        text_field=check_column(raw.get("text_field"), f"{where}.text_field"),
        label_field=check_column(raw.get("label_field"), f"{where}.label_field"),
    )


def parse_set_options(options: Sequence[str]) -> dict[str, dict[str, str]]:
    """``["badnets.poison_rate=0.2"]`` → ``{"badnets": {"poison_rate": "0.2"}}``."""
    out: dict[str, dict[str, str]] = {}
    for option in options:
        key, sep, value = option.partition("=")
        plugin, dot, param = key.partition(".")
        if not sep or not dot or not plugin or not param:
            raise UsageError(f"--set {option!r}: expected plugin.param=value (e.g. badnets.poison_rate=0.2)")
        values = out.setdefault(plugin.strip(), {})
        if param.strip() in values:
            raise UsageError(f"--set {plugin.strip()}.{param.strip()} is given twice "
                             f"({values[param.strip()]!r} and {value.strip()!r}); give it once")
        values[param.strip()] = value.strip()
    return out

