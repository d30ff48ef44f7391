"""The defense's side of a defense call, for every kind: run the plugin on what it was given and
return what it answered, never a metric.

:func:`apply_defense` runs in whichever process holds the defense: the isolated child
(:mod:`benchmark.harness.isolation`) or, with ``isolation="none"``, the harness's own process
(:mod:`benchmark.harness.defense_call`). The harness scores the answer itself
(:mod:`benchmark.harness.purification`, :mod:`~benchmark.harness.detection`,
:mod:`~benchmark.harness.filtering`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from ..base import costs
from ..base.errors import PluginError
from ..plugins.contexts import DefenseContext
from ..plugins.defense import DataFilter, Defense, DefenseOutput, InputDetector, RobustTrainer, defense_kind


@dataclasses.dataclass
class DefenseAnswer:
    """What a defense answered, by kind. model, aux_models: a purification's purified model (a robust
    trainer's trained one) and the further models it asks the harness to score (None and empty for
    the other kinds). output: an
    input detector's ``scores``/``flags``/``threshold``/``dev_frr``/``calibration_size``, a
    corrector's ``texts``/``scores``, a filter's ``kept`` indices (None for a purification).
    info: the defense's own JSON-ready figures. phase_costs: :meth:`~benchmark.base.costs.PhaseCost.as_dict`
    per phase (``defense``; detectors and correctors also ``detection``)."""

    model: torch.nn.Module | None
    aux_models: dict[str, torch.nn.Module]
    info: dict
    phase_costs: dict[str, dict]
    output: dict | None = None


def _finite_scores(values, n: int, name: str) -> list[float]:
    scores = [float(v) for v in values]
    if len(scores) != n:
        raise PluginError(f"defense {name!r} returned {len(scores)} scores for {n} inputs")
    if not all(math.isfinite(s) for s in scores):
        raise PluginError(f"defense {name!r} returned a score that is not finite")
    return scores


def apply_defense(defense: Defense, model: torch.nn.Module | None, ctx: DefenseContext,
                  texts: Sequence[str] | None = None) -> DefenseAnswer:
    """Run ``defense`` on ``model`` (its own copy) and ``ctx``: ``purify`` for a purification,
    ``fit``/``calibrate``/``score`` for an input detector on ``texts``, ``fit``/``correct`` for a
    corrector, ``keep`` for a data filter, ``train`` for a robust trainer (``model`` None: it never
    sees the attacked model). Checks the answer's shape (a model; one score per input, finite;
    distinct indices in range) and raises :class:`PluginError` naming the defense otherwise."""
    device = ctx.runtime.device
    phase_costs: dict[str, dict] = {}
    if defense_kind(defense) in ("purification", "robust_training"):
        with costs.phase("defense", device) as cost:
            result = defense.train(ctx) if isinstance(defense, RobustTrainer) else defense.purify(model, ctx)
        output = result if isinstance(result, DefenseOutput) else DefenseOutput(result)
        if not isinstance(output.model, torch.nn.Module):
            verb = "train" if isinstance(defense, RobustTrainer) else "purify"
            raise PluginError(f"defense {defense.name!r}: {verb} returned {type(output.model).__name__}, not a model")
        return DefenseAnswer(output.model, dict(output.aux_models), dict(output.info), {"defense": cost.as_dict()})
    with costs.phase("defense", device) as cost:
        if isinstance(defense, DataFilter):
            kept = [int(i) for i in defense.keep(model, ctx)]
        else:
            defense.fit(model, ctx)
            calibration = defense.calibrate(model, ctx) if isinstance(defense, InputDetector) else None
    phase_costs["defense"] = cost.as_dict()
    if isinstance(defense, DataFilter):
        size = len(ctx.poisoned_train)
        if any(not 0 <= i < size for i in kept) or len(set(kept)) != len(kept):
            raise PluginError(f"defense {defense.name!r}: keep() must return distinct indices in [0, {size})")
        return DefenseAnswer(None, {}, _info(defense), phase_costs, {"kept": sorted(kept)})
    texts = list(texts or [])
    with costs.phase("detection", device) as cost:
        if isinstance(defense, InputDetector):
            scores = _finite_scores(defense.score(model, texts, ctx), len(texts), defense.name)
            output = {"scores": scores, "flags": [s > calibration.threshold for s in scores],
                      "threshold": calibration.threshold, "dev_frr": calibration.dev_frr,
                      "calibration_size": calibration.size}
        else:
            rewritten, scores = defense.correct(model, texts, ctx)
            rewritten = [str(t) for t in rewritten]
            if len(rewritten) != len(texts):
                raise PluginError(f"defense {defense.name!r} returned {len(rewritten)} texts for {len(texts)} inputs")
            output = {"texts": rewritten,
                      "scores": None if scores is None else _finite_scores(scores, len(texts), defense.name)}
    phase_costs["detection"] = cost.as_dict()
    return DefenseAnswer(None, {}, _info(defense), phase_costs, output)


def _info(defense: Defense) -> dict:
    """What a detector, corrector or filter put in ``self.info`` while it ran (read after it ran)."""
    return dict(getattr(defense, "info", {}) or {})
