"""The defense plugin API: one base class per kind of defense.

Defenses come in four kinds (``docs/defense-kinds.md``), each a base class with its own threat model:

* :class:`Defense` — **model purification**: ``purify(model, ctx)`` returns a purified model;
* :class:`InputDetector` — **input detection**: ``fit(model, ctx)`` on what it declared, then
  ``score(model, texts, ctx)`` scores unlabelled test inputs (higher = more suspicious); the
  base class flags at a threshold chosen on clean calibration data for the detector's ``frr``.
  :class:`InputCorrector` (a detector's sibling) rewrites each input instead (ONION);
* :class:`DataFilter` — **training-data filtering**: ``keep(model, ctx)`` receives the poisoned
  training set (texts and labels, never poison flags) and returns the indices to keep; the
  harness retrains the victim on them with the scenario's victim recipe;
* :class:`RobustTrainer` — **robust training**: ``train(ctx)`` trains the classifier itself, from
  the pre-trained weights on the poisoned training set, so that the backdoor is not learnt.

Every defense sees only what it declared in ``requires``:

=================== ==========================================================
``clean_data``       the defender's clean training subset (``ctx.clean_data``)
``clean_dev``        the clean dev split, for model selection (``ctx.clean_dev``)
``pretrained_weights`` the victim's un-fine-tuned weights (``ctx.pretrained_model()``)
``target_label``     the attack's target label (``ctx.target_label``)
``poisoned_train``   the poisoned training set, **data filters and robust trainers only** (``ctx.poisoned_train``)
=================== ==========================================================

Nothing grants the trigger, the test labels or the attack's identity. The harness builds the
context with only the granted assets in it; asking for another raises
:class:`ThreatModelError` naming the defense and the missing declaration. A class that is neither a
:class:`DataFilter` nor a :class:`RobustTrainer` and declares ``poisoned_train`` is refused when it is defined.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import torch

from ..base.errors import ThreatModelError
from ..base.requirements import BY_NAME
from ..base.workload import Sizes, Workload, eval_work, train_work
from .contexts import DefenseContext
from .plugin import Plugin


@dataclasses.dataclass(frozen=True)
class DefenseOutput:
    """model: the purified model. aux_models: further models the harness should score (e.g. a
    teacher): each gets CACC and ASR in the record under ``aux``. info: JSON-ready extras."""

    model: torch.nn.Module
    aux_models: dict[str, torch.nn.Module] = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)


_BASE_OF_KIND = {"purification": "Defense", "input_detection": "InputDetector or InputCorrector",
                 "data_filtering": "DataFilter", "robust_training": "RobustTrainer"}


class Defense(Plugin):
    """Base class of defense plugins: ``purify(model, ctx)`` returns the purified model (or a
    :class:`DefenseOutput`). ``model`` is the defense's own copy; editing it in place is fine.
    ``kind`` is the record's ``defense_kind`` (set by the base classes, never by a plugin).

    ``requires`` has no default, here or on the other kinds' base classes: every defense states
    what it needs (``frozenset()`` for nothing), and the registry refuses one that does not
    (:func:`declares_requires`), so that nothing is granted by omission."""

    requires: ClassVar[frozenset[str]]
    kind: ClassVar[str] = "purification"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in getattr(cls, "requires", ()):
            only = BY_NAME[name].only if name in BY_NAME else None  # the kinds that may declare it
            if only is not None and cls.kind not in only:
                raise ThreatModelError(f"defense class {cls.__qualname__} declares {name!r}, which only a "
                                       f"{' or '.join(_BASE_OF_KIND[k] for k in only)} may declare (a model or "
                                       "input defense never sees the training set)")

    def workload(self, sizes: Sizes) -> Workload:
        """The defense phase's model work (:mod:`benchmark.base.workload`), counted from the
        algorithm's loops. This default, for a defense that declares none, is one fine-tuning run
        of the defense recipe on the clean data, and says so."""
        return Workload(note="not declared: counted as one fine-tuning run") + train_work(
            sizes, "clean", sizes.defense_epochs)

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

    kind: ClassVar[str] = "input_detection"

    def workload(self, sizes: Sizes) -> Workload:
        """Default for a detector that declares none: one scoring pass over the clean dev split,
        the test split and the triggered rows."""
        return (Workload(note="not declared: counted as one scoring pass") + eval_work(sizes, "dev")
                + eval_work(sizes, "test") + eval_work(sizes, "triggered"))

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

    kind: ClassVar[str] = "input_detection"

    def workload(self, sizes: Sizes) -> Workload:
        """Default for a detector that declares none: one scoring pass over the clean dev split,
        the test split and the triggered rows."""
        return (Workload(note="not declared: counted as one scoring pass") + eval_work(sizes, "dev")
                + eval_work(sizes, "test") + eval_work(sizes, "triggered"))

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

    kind: ClassVar[str] = "data_filtering"

    def workload(self, sizes: Sizes) -> Workload:
        """The filter's own work (the harness's retraining on the kept samples is a phase of its
        own); default for a filter that declares none: one scoring pass over the training set."""
        return Workload(note="not declared: counted as one scoring pass") + eval_work(sizes, "train")

    def keep(self, model: torch.nn.Module, ctx: DefenseContext) -> Sequence[int]:
        raise NotImplementedError


class RobustTrainer(Defense):
    """Base class of robust-training defenses (threat model: ``docs/defense-kinds.md``): the
    defender is the trainer. ``train(ctx)`` trains a classifier from the victim's pre-trained
    weights (``ctx.pretrained_model()``) on the possibly poisoned training set
    (``ctx.poisoned_train``: texts and labels, never poison flags) with a procedure meant to keep
    a backdoor from being learnt, and returns it (or a :class:`DefenseOutput`). It never receives
    the attacked model, the test data or the trigger; clean data only where declared. Declare
    ``poisoned_train`` and ``pretrained_weights`` (refused otherwise, when the class is defined).
    The harness scores the returned model as it scores a purified one, beside the scenario's
    attacked model (ordinary training on the same set with the scenario's recipe) and its clean
    reference model."""

    kind: ClassVar[str] = "robust_training"

    def workload(self, sizes: Sizes) -> Workload:
        """Default for a robust trainer that declares none: one training run of the defense recipe
        on the training set."""
        return Workload(note="not declared: counted as one training run") + train_work(
            sizes, "train", sizes.defense_epochs)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        missing = {"poisoned_train", "pretrained_weights"} - set(getattr(cls, "requires", None) or ())
        if getattr(cls, "requires", None) is not None and missing:
            raise ThreatModelError(f"robust-training defense {cls.__qualname__} must declare {sorted(missing)}: it "
                                   "trains from the pre-trained weights on the poisoned training set")

    def train(self, ctx: DefenseContext) -> torch.nn.Module | DefenseOutput:
        raise NotImplementedError


def declares_requires(cls: type) -> bool:
    """True when the defense class (or a plugin class it inherits from) sets ``requires``."""
    return isinstance(getattr(cls, "requires", None), (frozenset, set))


def defense_kind(defense: Defense | type) -> str:
    """``purification``, ``input_detection``, ``data_filtering`` or ``robust_training``: the
    record's ``defense_kind``, read from the base class the defense derives from."""
    cls = defense if isinstance(defense, type) else type(defense)
    for base, kind in ((RobustTrainer, "robust_training"), (DataFilter, "data_filtering"),
                       (InputDetector, "input_detection"), (InputCorrector, "input_detection")):
        if issubclass(cls, base):
            return kind
    return "purification"
