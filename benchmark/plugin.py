"""The plugin API: base classes for attacks and defenses and the contexts they receive.

An attack turns a clean scenario into a backdoored model plus a test-time trigger. Defenses come
in three kinds (``docs/defense-kinds.md``), each a base class with its own threat model:

* :class:`Defense` — **model purification**: ``purify(model, ctx)`` returns a purified model;
* :class:`InputDetector` — **input detection**: ``fit(model, ctx)`` on what it declared, then
  ``score(model, texts, ctx)`` scores unlabelled test inputs (higher = more suspicious); the
  base class flags at a threshold chosen on clean calibration data for the detector's ``frr``.
  :class:`InputCorrector` (a detector's sibling) rewrites each input instead (ONION);
* :class:`DataFilter` — **training-data filtering**: ``keep(model, ctx)`` receives the poisoned
  training set (texts and labels, never poison flags) and returns the indices to keep; the
  harness retrains the victim on them with the scenario's victim recipe.

Every defense sees only what it declared in ``requires``:

=================== ==========================================================
``clean_data``       the defender's clean training subset (``ctx.clean_data``)
``clean_dev``        the clean dev split, for model selection (``ctx.clean_dev``)
``pretrained_weights`` the victim's un-fine-tuned weights (``ctx.pretrained_model()``)
``target_label``     the attack's target label (``ctx.target_label``)
``poisoned_train``   the poisoned training set, **data filters only** (``ctx.poisoned_train``)
=================== ==========================================================

Nothing grants the trigger, the test labels or the attack's identity. The harness builds the
context with only the granted assets in it; asking for another raises
:class:`ThreatModelError` naming the defense and the missing declaration. A class that is not a
:class:`DataFilter` and declares ``poisoned_train`` is refused when it is defined.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch

from .data import Dataset, Example
from .encoding import EncodedSet, collate, encode, iterate_batches
from .errors import ThreatModelError
from .params import NoParams
from .runtime import Runtime
from .training import LossFn, OptimizerFactory, TrainConfig, TrainStats, accuracy, predict, train
from .victims import clone_model

DEFENSE_REQUIREMENTS = frozenset({"clean_data", "clean_dev", "pretrained_weights", "target_label",
                                  "poisoned_train"})
DEFENSE_KINDS = ("purification", "input_detection", "data_filtering")  # the records' ``defense_kind``
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

    def train_teacher(self, model: torch.nn.Module, examples: Sequence[Example] | EncodedSet, *,
                      lr: float | None = None, epochs: int | None = None) -> torch.nn.Module:
        """A teacher for distillation (NAD, MBTSAD): a copy of ``model`` fine-tuned on ``examples``
        with this context's recipe (``lr``, ``epochs`` override it; None keeps it), then frozen:
        eval mode, no gradients, on the runtime's device. ``model`` itself is not changed."""
        teacher = clone_model(model)
        self.finetune(teacher, examples, lr=lr, epochs=epochs)
        return teacher.eval().requires_grad_(False).to(self.runtime.device)

    def accuracy(self, model: torch.nn.Module, examples: Sequence[Example] | EncodedSet) -> float:
        """Share of ``examples`` that ``model`` classifies as labelled (NaN when empty)."""
        data = examples if isinstance(examples, EncodedSet) else self.encode(examples)
        return accuracy(model, data, self.runtime)

    def predict(self, model: torch.nn.Module, examples: Sequence[Example] | EncodedSet,
                batch_size: int = 128) -> list[int]:
        """The predicted class of each of ``examples``, in their order (eval mode, the runtime's
        device and precision)."""
        data = examples if isinstance(examples, EncodedSet) else self.encode(examples)
        return predict(model, data, self.runtime, batch_size)

    def batches(self, examples: Sequence[Example] | EncodedSet, batch_size: int = 128, *,
                shuffle: bool = False, seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Padded batches of ``examples`` on the runtime's device (``input_ids``,
        ``attention_mask``: 1 at real tokens, ``labels``), length-grouped; in a fixed order, or
        a seeded shuffle with ``shuffle``. The same order on every call."""
        data = examples if isinstance(examples, EncodedSet) else self.encode(examples)
        return iterate_batches(data, batch_size, shuffle=shuffle, seed=seed, device=self.runtime.device)

    def batch(self, examples: Sequence[Example] | EncodedSet) -> dict[str, torch.Tensor]:
        """All of ``examples`` as one padded batch, in their order, on the runtime's device."""
        data = examples if isinstance(examples, EncodedSet) else self.encode(examples)
        return self.to_device(collate(data, range(len(data))))

    def to_device(self, value):
        """``value`` (a module, a tensor, or a dict of tensors) on the runtime's device; a module
        is moved in place and returned."""
        if isinstance(value, dict):
            return {k: v.to(self.runtime.device, non_blocking=True) for k, v in value.items()}
        return value.to(self.runtime.device)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, examples: Sequence[Example] | EncodedSet,
                 fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], Any], *, batch_size: int = 128) -> list:
        """``fn(model, batch)`` on every batch of :meth:`batches` (in that order), with ``model``
        in eval mode on the runtime's device, no gradients, and the runtime's precision
        (autocast); returns ``fn``'s results, one per batch. For loops that read a model's
        internals (forward hooks, hidden states) on clean data."""
        model.to(self.runtime.device)
        model.eval()
        results = []
        for batch in self.batches(examples, batch_size):
            with self.runtime.autocast():
                results.append(fn(model, batch))
        return results

    @torch.no_grad()
    def probabilities(self, model: torch.nn.Module, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Class probabilities of ``texts`` (``[len(texts), num_labels]``, float32, on the CPU;
        eval mode, fp32, length-grouped batches, input order kept)."""
        return self._forward(model, texts, batch_size, hidden=False)

    @torch.no_grad()
    def cls_embeddings(self, model: torch.nn.Module, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """The last layer's first-token ([CLS]) representation of ``texts``
        (``[len(texts), hidden_size]``, float32, CPU; ``hidden_states[-1][:, 0]``)."""
        return self._forward(model, texts, batch_size, hidden=True)

    def _forward(self, model: torch.nn.Module, texts: Sequence[str], batch_size: int, hidden: bool) -> torch.Tensor:
        from .encoding import batch_order, collate

        data = self.encode([Example(t, 0) for t in texts])
        model.to(self.runtime.device)
        model.eval()
        rows: list[torch.Tensor | None] = [None] * len(texts)
        for indices in batch_order(data.lengths, batch_size, shuffle=False, group_by_length=True, seed=0):
            batch = collate(data, indices)
            out = model(input_ids=batch["input_ids"].to(self.runtime.device),
                        attention_mask=batch["attention_mask"].to(self.runtime.device),
                        output_hidden_states=hidden)
            values = out.hidden_states[-1][:, 0] if hidden else torch.softmax(out.logits.float(), -1)
            for i, row in zip(indices, values.float().cpu()):
                rows[i] = row
        if not rows:
            return torch.zeros(0, 0)
        return torch.stack(rows)  # type: ignore[arg-type]


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
    _poisoned_train: tuple[Example, ...] | None = None

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

    @property
    def poisoned_train(self) -> tuple[Example, ...]:
        """The poisoned training set, in the attack's order, every ``poisoned`` flag False (data
        filters only: the harness never grants it to another kind)."""
        return self._grant("poisoned_train", self._poisoned_train)

    def pretrained_model(self) -> torch.nn.Module:
        """A fresh copy of the victim's pre-trained (un-fine-tuned) weights, new random head."""
        return self._grant("pretrained_weights", self._pretrained)()

    def rng(self, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}:{self.defense_name}:{purpose}")

    def __getattr__(self, item: str):
        if item in ("poisoned_data", "trigger", "attack", "attack_name", "test", "test_data"):
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
    :class:`DefenseOutput`). ``model`` is the defense's own copy; editing it in place is fine.
    ``kind`` is the record's ``defense_kind`` (set by the base classes, never by a plugin)."""

    requires: ClassVar[frozenset[str]] = frozenset({"clean_data"})
    kind: ClassVar[str] = "purification"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        is_filter = any(base.__module__ == __name__ and base.__name__ == "DataFilter" for base in cls.__mro__)
        if "poisoned_train" in cls.requires and not is_filter:
            raise ThreatModelError(f"defense class {cls.__qualname__} declares 'poisoned_train', which only a "
                                   "DataFilter may declare (a model or input defense never sees the training set)")

    def purify(self, model: torch.nn.Module, ctx: DefenseContext) -> torch.nn.Module | DefenseOutput:
        raise NotImplementedError


def threshold_for_frr(clean_scores: Sequence[float], frr: float) -> float:
    """The smallest threshold ``t`` among the clean scores such that at most ``frr`` of them are
    flagged (flag = score > t): the ``floor(frr × n) + 1``-th largest clean score."""
    ordered = sorted((float(s) for s in clean_scores), reverse=True)
    if not ordered:
        raise ThreatModelError("a detector needs at least one clean calibration input to choose its threshold")
    allowed = int(frr * len(ordered) + 1e-9)
    return ordered[min(allowed, len(ordered) - 1)]


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What a detector chose on clean data: the threshold (flag = score > threshold) and the
    share of its clean calibration inputs flagged at it (``dev_frr``)."""

    threshold: float
    dev_frr: float
    size: int


class InputDetector(Defense):
    """Base class of input detectors (threat model: ``docs/defense-kinds.md``).

    The harness calls, in order: ``fit(model, ctx)`` (train or prepare on the declared assets);
    ``calibrate(model, ctx)`` (default: ``calibration_scores`` on clean data, threshold for
    ``self.params.frr``); ``score(model, texts, ctx)`` on the shuffled, unlabelled test inputs.
    ``model`` is the backdoored model the detector protects; a detector must not change it (work
    on a copy). A score is a float, higher = more suspicious; input ``i`` is flagged when
    ``score[i] > threshold``. ``info`` may be filled by ``fit`` for the record (JSON-ready).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"clean_dev"})
    kind: ClassVar[str] = "input_detection"

    def fit(self, model: torch.nn.Module, ctx: DefenseContext) -> None:
        """Prepare on the declared assets (default: nothing)."""

    def calibration_scores(self, model: torch.nn.Module, ctx: DefenseContext) -> list[float]:
        """Scores of clean inputs that ``fit`` did not use, to choose the threshold on (default:
        the clean dev texts)."""
        return list(self.score(model, [ex.text for ex in ctx.clean_dev], ctx))

    def calibrate(self, model: torch.nn.Module, ctx: DefenseContext) -> Calibration:
        scores = self.calibration_scores(model, ctx)
        threshold = threshold_for_frr(scores, self.params.frr)
        return Calibration(threshold, sum(s > threshold for s in scores) / len(scores), len(scores))

    def score(self, model: torch.nn.Module, texts: Sequence[str], ctx: DefenseContext) -> list[float]:
        raise NotImplementedError


class InputCorrector(Defense):
    """Base class of input-correction defenses (ONION): ``correct(model, texts, ctx)`` returns one
    rewritten text per input and, optionally, one suspicion score per input (higher = more
    suspicious; for the record's threshold-free AUROC) as ``(texts, scores or None)``. The harness
    classifies the rewritten texts with the unchanged backdoored model. Same threat model and
    ``defense_kind`` (``input_detection``) as :class:`InputDetector`; nothing is rejected."""

    requires: ClassVar[frozenset[str]] = frozenset()
    kind: ClassVar[str] = "input_detection"

    def fit(self, model: torch.nn.Module, ctx: DefenseContext) -> None:
        """Prepare on the declared assets (default: nothing)."""

    def correct(self, model: torch.nn.Module, texts: Sequence[str],
                ctx: DefenseContext) -> tuple[list[str], list[float] | None]:
        raise NotImplementedError


class DataFilter(Defense):
    """Base class of training-data filters (threat model: ``docs/defense-kinds.md``).

    ``keep(model, ctx)`` returns the indices of ``ctx.poisoned_train`` to keep. ``model`` is the
    victim as fine-tuned on that very set with the scenario's recipe (what the defender, who is
    the trainer here, has in hand; a filter that wants another encoder trains one with
    ``ctx.finetune``). The harness then retrains the victim from its pre-trained weights on the
    kept samples with the scenario's victim recipe and scores it. ``info`` may be filled for the
    record (JSON-ready). Declare ``poisoned_train``.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"poisoned_train"})
    kind: ClassVar[str] = "data_filtering"

    def keep(self, model: torch.nn.Module, ctx: DefenseContext) -> Sequence[int]:
        raise NotImplementedError
