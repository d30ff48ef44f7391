"""The plugin API: base classes for attacks and defenses and the contexts they receive.

An attack turns a clean scenario into a backdoored model plus a test-time trigger. A defense
turns a backdoored model into a purified one, seeing only what it declared in ``requires``:

=================== ==========================================================
``clean_data``       the defender's clean training subset (``ctx.clean_data``)
``clean_dev``        the clean dev split, for model selection (``ctx.clean_dev``)
``pretrained_weights`` the victim's un-fine-tuned weights (``ctx.pretrained_model()``)
``target_label``     the attack's target label (``ctx.target_label``)
=================== ==========================================================

Nothing grants the poisoned training data, the trigger or the attack's identity. The harness
builds the context with only the granted assets in it; asking for another raises
:class:`ThreatModelError` naming the defense and the missing declaration.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch

from .data import Dataset, Example
from .encoding import EncodedSet, encode
from .errors import ThreatModelError
from .params import NoParams
from .runtime import Runtime
from .training import LossFn, OptimizerFactory, TrainConfig, TrainStats, accuracy, train

DEFENSE_REQUIREMENTS = frozenset({"clean_data", "clean_dev", "pretrained_weights", "target_label"})
ATTACK_REQUIREMENTS = frozenset({"clean_model"})


class Plugin:
    """Common header of attacks and defenses; subclasses set the class attributes."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Params: ClassVar[type] = NoParams
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: Any = None):
        self.params = params if params is not None else self.Params()


# --------------------------------------------------------------------------- shared helpers

@dataclasses.dataclass
class _ModelTools:
    tokenizer: Any
    runtime: Runtime
    max_length: int
    seed: int
    train_config: TrainConfig

    def encode(self, examples: Sequence[Example]) -> EncodedSet:
        """Token ids of ``examples`` (cached: tokenized once per process)."""
        return encode(self.tokenizer, examples, self.max_length)

    def finetune(self, model: torch.nn.Module, examples: Sequence[Example] | EncodedSet, *,
                 loss_fn: LossFn | None = None,
                 trainable: Callable[[str, torch.nn.Parameter], bool] | None = None,
                 post_step: Callable[[torch.nn.Module, int], None] | None = None,
                 make_optimizer: OptimizerFactory | None = None,
                 seed: int | None = None, **recipe_changes) -> TrainStats:
        """Run the shared training loop with this context's recipe (``recipe_changes`` override
        its fields: epochs, lr, batch_size, warmup_ratio, weight_decay, max_grad_norm, schedule)."""
        data = examples if isinstance(examples, EncodedSet) else self.encode(examples)
        config = self.train_config.replace(**recipe_changes)
        kwargs = {"loss_fn": loss_fn} if loss_fn is not None else {}
        return train(model, data, config, self.runtime, seed=self.seed if seed is None else seed,
                     trainable=trainable, post_step=post_step, make_optimizer=make_optimizer, **kwargs)

    def accuracy(self, model: torch.nn.Module, examples: Sequence[Example] | EncodedSet) -> float:
        data = examples if isinstance(examples, EncodedSet) else self.encode(examples)
        return accuracy(model, data, self.runtime)


# --------------------------------------------------------------------------- attacks

@dataclasses.dataclass
class AttackContext(_ModelTools):
    """What an attack works with. ``dataset`` holds the scenario's (limited) clean splits."""

    dataset: Dataset = None  # type: ignore[assignment]
    target_label: int = 1
    pretrained_model: Callable[[], torch.nn.Module] = None  # type: ignore[assignment]  # fresh victim, new head
    _clean_model: Callable[[], torch.nn.Module] | None = None
    attack_name: str = ""

    def rng(self, purpose: str) -> random.Random:
        """A generator seeded by the scenario seed and ``purpose`` (independent streams)."""
        return random.Random(f"{self.seed}:{self.attack_name}:{purpose}")

    def clean_model(self) -> torch.nn.Module:
        """A copy of the scenario's clean reference model (declare ``clean_model``)."""
        if self._clean_model is None:
            raise ThreatModelError(f"attack {self.attack_name!r} did not declare 'clean_model' in requires")
        return self._clean_model()


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

    def attack(self, ctx: AttackContext) -> AttackOutput:
        raise NotImplementedError

    def trigger_texts(self, texts: Sequence[str], ctx: AttackContext) -> list[str]:
        raise NotImplementedError

    def extra_test_sets(self, texts: Sequence[str], ctx: AttackContext) -> dict[str, list[str]]:
        return {}

    def check(self, ctx: AttackContext) -> None:
        """Validate the parameters against the victim (e.g. single word-piece triggers)."""


# --------------------------------------------------------------------------- defenses

@dataclasses.dataclass
class DefenseContext(_ModelTools):
    """What a defense may use; each asset is present only when declared (module docstring)."""

    defense_name: str = ""
    requires: frozenset[str] = frozenset()
    _clean_data: tuple[Example, ...] | None = None
    _clean_dev: tuple[Example, ...] | None = None
    _pretrained: Callable[[], torch.nn.Module] | None = None
    _target_label: int | None = None

    def _grant(self, requirement: str, value):
        if value is None:
            raise ThreatModelError(
                f"defense {self.defense_name!r} asked for {requirement!r} but did not declare it in "
                f"requires = {sorted(self.requires)}; add it to the class's requires (it is shown on the leaderboard)."
            )
        return value

    @property
    def clean_data(self) -> tuple[Example, ...]:
        """The defender's clean training subset (``clean_fraction`` of the clean training set)."""
        return self._grant("clean_data", self._clean_data)

    @property
    def clean_dev(self) -> tuple[Example, ...]:
        return self._grant("clean_dev", self._clean_dev)

    @property
    def target_label(self) -> int:
        return self._grant("target_label", self._target_label)

    def pretrained_model(self) -> torch.nn.Module:
        """A fresh copy of the victim's pre-trained (un-fine-tuned) weights, new random head."""
        return self._grant("pretrained_weights", self._pretrained)()

    def rng(self, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}:{self.defense_name}:{purpose}")

    def __getattr__(self, item: str):
        if item in ("poisoned_data", "trigger", "attack", "poisoned_train", "attack_name"):
            raise ThreatModelError(f"defense {self.defense_name!r}: {item!r} is never available to a defense")
        raise AttributeError(item)


@dataclasses.dataclass(frozen=True)
class DefenseOutput:
    """model: the purified model. aux_models: further models the harness should score (e.g. a
    teacher): each gets CACC and ASR in the record under ``aux``. info: JSON-ready extras."""

    model: torch.nn.Module
    aux_models: dict[str, torch.nn.Module] = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)


class Defense(Plugin):
    """Base class of defense plugins: ``purify(model, ctx)`` returns the purified model (or a
    :class:`DefenseOutput`). ``model`` is the defense's own copy; editing it in place is fine."""

    requires: ClassVar[frozenset[str]] = frozenset({"clean_data"})

    def purify(self, model: torch.nn.Module, ctx: DefenseContext) -> torch.nn.Module | DefenseOutput:
        raise NotImplementedError
