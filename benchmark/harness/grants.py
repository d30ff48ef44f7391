"""What a defense's ``requires`` grants it, read from its scenario: the one place that decides.

A :class:`Grant` holds exactly the declared assets (everything else None). It travels to the
defense as JSON and safetensors (:mod:`benchmark.harness.isolation`) or stays in this process
(``isolation="none"``); either way :meth:`Grant.context` builds the :class:`DefenseContext` the
plugin receives, so both paths give a defense the same view.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..data.examples import Example
from ..data.subsets import clean_subset
from ..model.runtime import Runtime
from ..model.training import TrainConfig
from ..plugins.contexts import DefenseContext
from ..plugins.defense import Defense

if TYPE_CHECKING:  # annotations only: a defense's child process reads grants without the harness
    from .cells import Cell
    from .scenario import Scenario

_EXAMPLE_ASSETS = ("clean_data", "clean_dev", "poisoned_train")


@dataclasses.dataclass(frozen=True)
class Grant:
    """The assets granted to one defense in one cell. clean_data: ``clean_fraction`` of the
    scenario's clean training split, seeded. clean_dev: the scenario's clean dev split.
    target_label: the attack's target. poisoned_train: the poisoned training set in the attack's
    order, every ``poisoned`` flag False (data filters only). pretrained: fresh copies of the
    victim's pre-trained weights with the scenario's seeded head."""

    clean_data: tuple[Example, ...] | None = None
    clean_dev: tuple[Example, ...] | None = None
    target_label: int | None = None
    poisoned_train: tuple[Example, ...] | None = None
    pretrained: Callable[[], torch.nn.Module] | None = None

    def assets_json(self) -> dict:
        """The granted assets but the pre-trained weights, JSON-ready (texts and labels as pairs)."""
        out: dict = {key: [[ex.text, ex.label] for ex in getattr(self, key)]
                     for key in _EXAMPLE_ASSETS if getattr(self, key) is not None}
        if self.target_label is not None:
            out["target_label"] = self.target_label
        return out

    @classmethod
    def from_assets_json(cls, assets: dict, pretrained: Callable[[], torch.nn.Module] | None) -> Grant:
        """The grant :meth:`assets_json` wrote, with ``pretrained`` (the loader of the copy
        the child received, if any)."""
        examples = {key: tuple(Example(text, label) for text, label in assets[key])
                    for key in _EXAMPLE_ASSETS if key in assets}
        return cls(**examples, target_label=assets.get("target_label"), pretrained=pretrained)

    def context(self, *, defense_name: str, requires: frozenset[str], tokenizer, runtime: Runtime,
                max_length: int, seed: int, train_config: TrainConfig) -> DefenseContext:
        """The context a defense receives: this grant's assets and nothing else."""
        return DefenseContext(
            tokenizer=tokenizer, runtime=runtime, max_length=max_length, seed=seed, train_config=train_config,
            defense_name=defense_name, requires=frozenset(requires), _clean_data=self.clean_data,
            _clean_dev=self.clean_dev, _pretrained=self.pretrained, _target_label=self.target_label,
            _poisoned_train=self.poisoned_train)


def grant_for(defense: Defense, cell: Cell, scenario: Scenario, pretrained: Callable[[], torch.nn.Module],
              poisoned_train: tuple[Example, ...] | None = None) -> Grant:
    """Exactly what ``defense.requires`` grants in ``cell``: ``pretrained`` (the loader of the
    victim's pre-trained weights) only with ``pretrained_weights``; ``poisoned_train`` (its flags
    are dropped here) only with ``poisoned_train``, which only a data filter may declare."""
    granted = defense.requires
    return Grant(
        clean_data=(bare(clean_subset(scenario.splits.train, cell.budget.clean_fraction, cell.seed))
                    if "clean_data" in granted else None),
        clean_dev=bare(scenario.splits.dev) if "clean_dev" in granted else None,
        target_label=scenario.target_label if "target_label" in granted else None,
        poisoned_train=bare(poisoned_train) if "poisoned_train" in granted and poisoned_train is not None else None,
        pretrained=pretrained if "pretrained_weights" in granted else None)


def bare(examples) -> tuple[Example, ...]:
    """``examples`` as texts and labels only (no poison flag, no source index): what crosses
    to a defense, in this process or another."""
    return tuple(Example(ex.text, ex.label) for ex in examples)
