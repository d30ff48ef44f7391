"""The attack plugin API: :class:`Attack` turns a clean scenario into a backdoored model plus a
test-time trigger, and returns an :class:`AttackOutput`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import torch

from ..base.workload import Sizes, Workload, eval_work, train_work
from ..data.examples import Example
from .contexts import AttackContext
from .plugin import Plugin


@dataclasses.dataclass(frozen=True)
class AttackOutput:
    """model: the backdoored model. poisoned_count: training samples altered.
    info: attack-specific figures for the record (JSON-ready)."""

    model: torch.nn.Module
    poisoned_count: int = 0
    info: dict = dataclasses.field(default_factory=dict)


class Attack(Plugin):
    """Base class of attack plugins.

    ``attack(ctx)`` trains (or edits) and returns the backdoored model. ``trigger_texts``
    is the test-time trigger function: it receives the non-target test texts and returns them
    triggered; ASR is measured on its output. ``extra_test_sets`` may return more triggered
    variants of those texts (name → texts); the record reports, for each, the share classified
    as the target label as ``<name>_rate`` (LWP's false-trigger rate).
    """

    requires: ClassVar[frozenset[str]] = frozenset()  # an attack may declare clean_model

    def attack(self, ctx: AttackContext) -> AttackOutput:
        raise NotImplementedError

    def trigger_texts(self, texts: Sequence[str], ctx: AttackContext) -> list[str | None]:
        raise NotImplementedError

    def workload(self, sizes: Sizes) -> Workload:
        """The attack phase's model work (:mod:`benchmark.base.workload`): by default the victim
        recipe over the training set, then the harness's scoring of the attacked model on the test
        and triggered rows and of the clean model on the triggered rows. An attack whose training
        differs (another data size, a second model, only some rows) says so by overriding it."""
        return (train_work(sizes, "train", sizes.victim_epochs) + eval_work(sizes, "test")
                + eval_work(sizes, "triggered", 2))

    def has_clean_reference(self) -> bool:
        """Whether the scenario trains its clean reference model (the victim fine-tuned on the
        clean training set). False only for an attack whose victim's origin is not known (a
        backdoored model made elsewhere): the records' clean figures are then empty."""
        return True

    def input_identity(self, ctx: AttackContext) -> dict:
        """What the attack reads besides its parameters, by content (JSON-ready; a replay
        attack's folder digest): it enters the scenario's cache key when not empty, so changed
        inputs at the same path build a new scenario. Default: nothing."""
        return {}

    def extra_test_sets(self, texts: Sequence[str], ctx: AttackContext) -> dict[str, list[str]]:
        return {}

    def poisoned_training_set(self, ctx: AttackContext) -> list[Example] | None:
        """The training set the victim was fine-tuned on, poisoned samples flagged
        (``Example.poisoned``), for data-filtering defenses; None when the attack does not train
        on a poisoned data set (weight poisoning). The default covers attacks with a
        ``poison(train, ctx)`` method returning ``(examples, count)`` and training on its result
        with the scenario's recipe (BadNets, AddSent); it must reproduce the attack's draw."""
        poison = getattr(self, "poison", None)
        if not callable(poison):
            return None
        result = poison(ctx.dataset.train, ctx)
        if not (isinstance(result, tuple) and len(result) == 2):
            return None
        return list(result[0])

    def check(self, ctx: AttackContext) -> None:
        """Validate the parameters against the victim (e.g. single word-piece triggers)."""


