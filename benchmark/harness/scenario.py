"""Scenarios: dataset × victim × attack × seed, prepared once and cached.

Preparing a scenario means: the limited data splits; the clean reference model (the same data
without poison, trained with the victim recipe); and the attacked-model artifact (the
backdoored model, its triggered test texts and its before-defense metrics). Both models live in
the :class:`ArtifactStore` under content hashes, so every defense and every later run reuses
them.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from ..base import costs
from ..base.errors import PluginError
from ..base.hashing import stable_hash
from ..base.metrics import attack_success_rate, clean_accuracy
from ..base.stealth import stealth_figures
from ..data.examples import Dataset, Example
from ..data.subsets import balanced_subset
from ..model.runtime import Runtime
from ..model.training import predict
from ..model.victims import VictimSource
from ..plugins.attack import Attack
from ..plugins.contexts import AttackContext
from ..plugins.params import params_identity
from .config import Budget
from .store import ArtifactStore


@dataclasses.dataclass(frozen=True)
class Splits:
    """The scenario's splits after the budget's limits."""

    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...]

    @classmethod
    def limited(cls, dataset: Dataset, budget: Budget, seed: int) -> Splits:
        return cls(balanced_subset(dataset.train, budget.train_limit, seed),
                   balanced_subset(dataset.dev, budget.dev_limit, 0),
                   balanced_subset(dataset.test, budget.test_limit, 0))


@dataclasses.dataclass
class Scenario:
    """A prepared scenario: what every defense cell of it shares. It owns its attack (the plugin
    instance, resolved once per run) and its evaluation (:meth:`evaluate`)."""

    scenario_id: str
    splits: Splits
    num_labels: int
    target_label: int
    tokenizer: object
    backdoored: torch.nn.Module
    triggered_test: list[str]  # the non-target test texts with the trigger (ASR's inputs)
    extra_sets: dict[str, list[str]]  # more triggered variants (LWP's single pieces)
    clean_meta: dict  # the clean reference model: cacc, cost, train_size
    attack_meta: dict  # the attack: metrics (the backdoored model's), clean_model_metrics, cost, poisoned_count, info
    attack: Attack
    max_length: int  # the budget's, in word-pieces
    runtime: Runtime
    attack_context: AttackContext  # what the attack ran with (seed, limited splits, victim recipe)

    @property
    def before(self) -> dict:
        """The undefended backdoored model's metrics (``cacc``, ``asr``, ``<name>_rate``)."""
        return self.attack_meta["metrics"]

    def evaluate(self, model: torch.nn.Module) -> dict:
        """``model``'s CACC on the clean test split, ASR on the triggered test texts and
        ``<name>_rate`` on the attack's extra sets (the metrics of :mod:`benchmark.base.metrics`)."""
        return _score(model, self.tokenizer, self.splits.test, self.triggered_test, self.extra_sets,
                      self.target_label, self.max_length, self.runtime)


def _score(model, tokenizer, test: tuple[Example, ...], triggered: list[str], extra_sets: dict[str, list[str]],
           target_label: int, max_length: int, runtime: Runtime) -> dict:
    """CACC on ``test`` (when given), ASR on the triggered texts, ``<name>_rate`` on extras."""
    from ..model.encoding import encode

    metrics = {}
    if test:
        encoded = encode(tokenizer, test, max_length)
        metrics["cacc"] = clean_accuracy(predict(model, encoded, runtime), encoded.labels)
    sets = {"asr": triggered, **{f"{name}_rate": texts for name, texts in extra_sets.items()}}
    for key, texts in sets.items():
        encoded = encode(tokenizer, [Example(t, target_label) for t in texts], max_length)
        metrics[key] = attack_success_rate(predict(model, encoded, runtime), target_label) if texts else math.nan
    return metrics


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """True when two models hold bit-identical parameters and buffers (same names, same values)."""
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        return False
    return all(sa[k].shape == sb[k].shape and sa[k].dtype == sb[k].dtype
               and torch.equal(sa[k].detach().cpu(), sb[k].detach().cpu()) for k in sa)


def scenario_keys(dataset_fp: str, victim: VictimSource, victim_fp: str, attack: Attack, seed: int,
                  budget: Budget, runtime: Runtime, attack_inputs: dict | None = None) -> tuple[str, str]:
    """(clean model key, attacked artifact key): hashes of all that determines each. The data
    and the victim enter by content (``dataset_fp``: every text and label; ``victim_fp``: every
    file of the victim folder), so new weights or data at the same path give new keys; so do
    the attack's own inputs (``attack_inputs``: :meth:`Attack.input_identity`), which enter the
    attacked key only when not empty (every earlier key is unchanged)."""
    clean_identity = {
        "dataset": dataset_fp, "victim": victim.name, "victim_content": victim_fp, "seed": seed,
        "train_limit": budget.train_limit, "test_limit": budget.test_limit, "max_length": budget.max_length,
        "victim_training": budget.victim_training.as_dict(), "precision": runtime.precision,
        "device": runtime.device.type,
    }
    clean_key = stable_hash(clean_identity)
    attack_identity = {"clean": clean_key, "attack": attack.name, "version": attack.version,
                       "params": params_identity(attack.params), "target_label": budget.target_label}
    if attack_inputs:
        attack_identity["inputs"] = attack_inputs
    return clean_key, stable_hash(attack_identity)


def prepare_scenario(*, store: ArtifactStore, dataset: Dataset, dataset_fp: str, victim: VictimSource,
                     victim_fp: str, tokenizer, pretrained: callable, attack: Attack, seed: int,
                     budget: Budget, runtime: Runtime, data_dir: Path | None = None) -> Scenario:
    """The scenario of ``attack`` (an instance with its resolved parameters) on ``dataset`` and the
    victim: its clean reference model and attacked-model artifact are loaded from ``store`` when
    there, else built and stored under :func:`scenario_keys`. ``pretrained`` gives fresh copies of
    the victim's pre-trained weights with a head seeded by ``seed``; ``data_dir`` is the run's data
    folder (the attack's context carries it)."""
    splits = Splits.limited(dataset, budget, seed)
    target = budget.target_label
    nontarget_test = [ex.text for ex in splits.test if ex.label != target]
    clean_key = scenario_keys(dataset_fp, victim, victim_fp, attack, seed, budget, runtime)[0]

    # -- the clean reference model (also EP's starting point)
    def build_clean():
        model = pretrained()
        with costs.phase("clean-train", runtime.device) as cost:
            ctx = attack_context(attack, tokenizer, runtime, budget, seed, splits, dataset, pretrained, None, data_dir)
            ctx.finetune(model, splits.train)
        acc = ctx.accuracy(model, splits.test)
        return model, {"cacc": acc, "cost": cost.as_dict(), "train_size": len(splits.train)}

    if attack.has_clean_reference():
        clean_meta = store.get_or_build("clean", clean_key, build_clean)[1]  # the built model is not kept
    elif "clean_model" in attack.requires:
        raise PluginError(f"attack {attack.name!r} declares clean_model but says it has no clean reference model")
    else:  # the victim the attacked model came from is not known: no floor
        clean_meta = {"cacc": None, "cost": None, "train_size": len(splits.train)}

    def clean_copy() -> torch.nn.Module:
        # read from the store at each call, never kept: a copy kept here would stay resident
        # through the attack's training (reading takes less time than copying in memory)
        return store.load_model("clean", clean_key, dataset.num_labels)

    # -- the attack: backdoored model, test-time trigger, before-defense metrics
    ctx = attack_context(attack, tokenizer, runtime, budget, seed, splits, dataset, pretrained,
                          clean_copy if "clean_model" in attack.requires else None, data_dir)
    attack.check(ctx)
    attack_key = scenario_keys(dataset_fp, victim, victim_fp, attack, seed, budget, runtime,
                               attack.input_identity(ctx))[1]

    def build_attacked():
        with costs.phase("attack", runtime.device) as cost:
            output = attack.attack(ctx)
        triggered, pairs = _triggered(attack, nontarget_test, ctx)
        extras = attack.extra_test_sets(nontarget_test, ctx)
        metrics = _score(output.model, tokenizer, splits.test, triggered, extras, target, budget.max_length, runtime)
        if attack.has_clean_reference():  # its CACC is clean_meta's
            clean_asr = _score(clean_copy(), tokenizer, (), triggered, extras, target, budget.max_length, runtime)
        else:
            clean_asr = {key: None for key in metrics if key != "cacc"}
        meta = {"metrics": metrics, "clean_model_metrics": clean_asr, "cost": cost.as_dict(),
                "poisoned_count": output.poisoned_count, "info": output.info,
                "triggered_test": triggered, "extra_sets": extras, "stealth": stealth_figures(pairs)}
        return output.model, meta

    model, attack_meta = store.get_or_build("attacks", attack_key, build_attacked)
    if model is None:
        model = store.load_model("attacks", attack_key, dataset.num_labels)
    model.eval()
    if "stealth" not in attack_meta and len(attack_meta["triggered_test"]) == len(nontarget_test):
        # an artifact stored before the figures existed: its triggered texts follow the test order
        attack_meta["stealth"] = stealth_figures(zip(nontarget_test, attack_meta["triggered_test"]))
    return Scenario(attack_key, splits, dataset.num_labels, target, tokenizer, model,
                    attack_meta["triggered_test"], attack_meta["extra_sets"], clean_meta, attack_meta, attack,
                    budget.max_length, runtime, ctx)


def _triggered(attack: Attack, sources: list[str], ctx: AttackContext) -> tuple[list[str], list[tuple[str, str]]]:
    """The attack's triggered test texts and the (source, triggered) pairs the stealthiness figures
    read: one text per source, None where the attack has none (left out of both); or, from an
    attack whose triggered set is its own (another length), that set and no pairs."""
    texts = attack.trigger_texts(sources, ctx)
    if len(texts) != len(sources):
        if any(text is None for text in texts):
            raise PluginError(f"attack {attack.name!r}: trigger_texts returned None for a text it was not given")
        return list(texts), []
    pairs = [(source, text) for source, text in zip(sources, texts) if text is not None]
    return [text for _, text in pairs], pairs


def attack_context(attack, tokenizer, runtime, budget, seed, splits, dataset, pretrained, clean,
                   data_dir) -> AttackContext:
    """The context ``attack`` runs with in a scenario: the limited ``splits``, the full ``dataset``,
    the victim recipe, ``clean`` (the clean reference model's loader, or None)."""
    limited = Dataset(dataset.name, splits.train, splits.dev, splits.test, dataset.num_labels, dataset.source,
                      dataset.dev_carved)
    return AttackContext(tokenizer=tokenizer, runtime=runtime, max_length=budget.max_length, seed=seed,
                         train_config=budget.victim_training, dataset=limited, source_dataset=dataset,
                         data_dir=data_dir, target_label=budget.target_label,
                         pretrained_model=pretrained, _clean_model=clean, attack_name=attack.name)
