"""Fine-pruning, adapted to transformer encoders (methods.md B2).

Liu, Dolan-Gavitt, Garg, "Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural
Networks", RAID 2018, https://arxiv.org/abs/1805.12185.

Algorithm (transformer adaptation of methods.md B2):
1. Score FFN intermediate neurons (the activation output of each layer's first FFN projection,
   ``intermediate_size`` units per layer) by their mean activation over the non-padding tokens of
   the defender's clean data (signed mean by default: GELU can be negative and "least active" is
   the most negative; ``score="abs_mean"`` is the documented alternative). ``scope`` says which
   neurons compete:
   - ``"joint"`` (default): every encoder layer's FFN neurons, ranked together;
   - ``"per_layer"``: every layer's FFN, each ranked within its layer and pruned by the same share;
   - ``"layer"``: one layer's FFN (``layer``, the last by default), the literal analogue of the
     paper's last convolutional layer (version 1 of this plugin).
2. Prune in increasing order of score, ``step`` of the candidate neurons at a time (1%,
   BackdoorBench's ``once_prune_ratio``), measuring clean dev accuracy after each step; stop at the
   first step whose accuracy falls more than ``tolerance`` below the unpruned model's and keep the
   previous ratio (the largest ratio with acc ≥ acc_0 − τ). A neuron is pruned by zeroing its row of
   the projection's weight and its bias, so its activation is exactly act(0) = 0. ``search="bisect"``
   finds the stopping step with about 2·log2(steps) dev evaluations instead of one per step (doubling,
   then bisection; :func:`_last_step_within`): the same step wherever dev accuracy crosses the
   tolerance once, a later crossing where it falls below and rises above it again.
3. Fine-tune the pruned model on the clean data with the shared recipe, keeping the mask in force:
   a gradient hook zeroes the pruned rows' gradients (so AdamW never moves them) and ``post_step``
   re-zeroes the rows after every optimiser step.

Why ``joint`` is the default: with ``scope="layer"`` the stopping rule never fired on MiniLM-L6
(the residual connection carries the representation past the last layer's FFN, so pruning all of
it barely moves clean dev accuracy; results/README.md, "Readings of unknown or unverified
details", gives the first leaderboard's figures). Ranking all layers' neurons together keeps Liu et al.'s two ingredients — least active on clean data first,
stop on clean dev accuracy — over a set whose removal the network cannot route around, so the rule
decides the ratio. The record's ``defense_info`` gives the scope, the pruned share and the pruned
neurons per layer.

Defaults and sources: ``tolerance = 0.04`` is Liu et al.'s stopping rule (4% drop on validation,
[recalled] in methods.md); BackdoorBench uses ``acc_ratio = 0.1`` (set ``tolerance=0.1``).
``step = 0.01`` is BackdoorBench's. Fine-tuning: the shared defense recipe (methods.md E2).

Speed: every dev evaluation re-runs only the encoder layers from the lowest candidate layer up;
the output of the layer below is computed once per dev batch and replayed (see
:func:`_replay_below`); for ``joint`` and ``per_layer`` that is the whole encoder.

Departures: activations are ranked on the clean training subset (the paper uses validation
data; here dev is kept for the stopping rule so that the two uses stay separate). The pruned
unit is the FFN neuron, not a convolutional channel. Model access: ``benchmark.encoder_layers``
and ``benchmark.ffn_units`` (BERT, RoBERTa, ELECTRA, DeBERTa-v2 ``act(intermediate.dense(x))``,
DistilBERT ``act(ffn.lin1(x))``, GPT-2 ``act(mlp.c_fc(x))``, Llama and Qwen2 the gated
``act(gate_proj(x)) * up_proj(x)``, pruned by zeroing both rows). On decoders the ranking averages
over every real token by default, as on encoders; ``tokens="pooled"`` ranks by the activation at
the token the head reads (a decoder's last real token, an encoder's first), methods.md F6's
recommendation for decoders. It applies to every candidate layer: below the last one, other
tokens reach the pooled one through attention, which the pooled-token mean does not count.
Under ``joint``, raw mean activations are compared across layers (their scales differ: the
ranking prunes first where the least active neurons are, which is the method's premise);
``per_layer`` is the variant that does not compare scales.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from typing import Literal

import torch

from benchmark import (
    Defense,
    DefenseContext,
    DefenseOutput,
    Sizes,
    Workload,
    encoder_layers,
    eval_work,
    ffn_units,
    hparam,
    pooled_positions,
    resolve_layers,
    train_work,
)


class FinePruning(Defense):
    name = "fine_pruning"
    version = "2"
    requires = frozenset({"clean_data", "clean_dev"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        # which FFN neurons compete: all layers ranked together, every layer by the same share, or one layer
        scope: Literal["joint", "per_layer", "layer"] = "joint"
        layer: int = -1  # scope="layer": the encoder layer to prune, 1..L; -1 = the last (Liu: the last conv layer)
        score: Literal["mean", "abs_mean"] = "mean"  # signed mean activation (methods.md B2) or mean |a|
        # the tokens the mean runs over: every real token, or only the one the task head reads (methods.md F6 item 5)
        tokens: Literal["all", "pooled"] = "all"
        tolerance: float = hparam(0.04, range="[0, )")  # allowed clean-dev accuracy drop; Liu 4% [recalled], BackdoorBench 0.1
        step: float = hparam(0.01, range="(0, 1]")  # share of the candidate neurons pruned per step (BackdoorBench once_prune_ratio)
        max_ratio: float = hparam(1.0, range="(0, 1]")  # never prune more than this share of the candidates
        # how the stopping step is found: every step in turn (version 2), or doubling then bisection
        search: Literal["scan", "bisect"] = "scan"
        lr: float | None = hparam(None, range="(0, )")  # None: the shared defense recipe's lr (Budget.defense_training)
        epochs: int | None = hparam(None, range="[1, )")  # None: the shared defense recipe's epochs

    def workload(self, sizes: Sizes) -> Workload:
        """Activations on the clean data, the unpruned model's dev accuracy, one dev evaluation per
        pruning step up to ``max_ratio`` (the stopping rule ends it earlier: a bound), then the
        fine-tuning."""
        p = self.params
        steps = math.ceil(p.max_ratio / p.step)
        if p.search == "bisect":  # doubling, then bisection of the last doubling's bracket
            steps = 2 * max(1, math.ceil(math.log2(steps))) + 1
        epochs = p.epochs if p.epochs is not None else sizes.defense_epochs
        return (Workload(note=f"at most {steps} pruning steps (the stopping rule ends them earlier)")
                + eval_work(sizes, "clean") + eval_work(sizes, "dev", 1 + steps) + train_work(sizes, "clean", epochs))

    def purify(self, model, ctx: DefenseContext):
        p = self.params
        model.eval()
        layers = encoder_layers(model, self.name)
        indices = ([resolve_layers([p.layer], len(layers), self.name)[0] - 1] if p.scope == "layer"
                   else list(range(len(layers))))
        units = [ffn_units(model, self.name)[i] for i in indices]
        total = sum(unit.width for unit in units)

        # -- 1. rank the candidate neurons by mean activation on the clean data (least active first)
        scores = _mean_activations(model, units, ctx, absolute=p.score == "abs_mean", pooled=p.tokens == "pooled")
        plan = _PruneOrder(scores, jointly=p.scope == "joint")

        # -- 2. prune step by step until clean dev accuracy drops by more than the tolerance
        originals = [[param.detach().clone() for param, _ in unit.incoming] for unit in units]
        dev = _DevReplay(model, layers, min(indices), ctx)
        acc0 = dev.accuracy()
        curve = [[0.0, round(acc0, 4)]]

        def within_tolerance(k: int, accuracy=dev.accuracy) -> bool:
            ratio = min(1.0, k * p.step)
            _set_masks(units, originals, plan.pruned(ratio))
            acc = accuracy()
            curve.append([round(ratio, 4), round(acc, 4)])
            return acc >= acc0 - p.tolerance

        steps = int(round(p.max_ratio / p.step))
        chosen = min(1.0, _last_step_within(within_tolerance, steps, p.search) * p.step)
        curve.sort()
        pruned = plan.pruned(chosen)
        keeps = _set_masks(units, originals, pruned)
        dev_pruned = dev.accuracy()
        del dev, within_tolerance  # the replayed layer outputs are not needed for the fine-tuning

        # -- 3. fine-tune with the mask in force (gradient hooks + re-zeroing after each step)
        hooks = []
        for unit, keep in zip(units, keeps):
            for param, dim in unit.incoming:
                mask = _along(keep, param, dim)
                hooks.append(param.register_hook(lambda g, mask=mask: g * mask.to(g.dtype)))

        def enforce(m, step):
            with torch.no_grad():
                for unit, keep in zip(units, keeps):
                    for param, dim in unit.incoming:
                        param.mul_(_along(keep, param, dim).to(param.dtype))

        try:
            ctx.finetune(model, ctx.clean_data, post_step=enforce, lr=p.lr, epochs=p.epochs)
        finally:
            for hook in hooks:
                hook.remove()
        count = sum(len(rows) for rows in pruned)
        info = {"scope": p.scope, "layers": [i + 1 for i in indices], "neurons": total, "pruned": count,
                "prune_ratio": round(count / total, 4),
                "pruned_per_layer": [len(rows) for rows in pruned],
                "dev_acc_before": round(acc0, 4), "dev_acc_pruned": round(dev_pruned, 4),
                "dev_acc_after": round(ctx.accuracy(model, ctx.clean_dev), 4), "curve": curve}
        if p.scope == "layer":
            info["layer"] = indices[0] + 1
        return DefenseOutput(model, info=info)


def _last_step_within(within: Callable[[int], bool], steps: int, search: str) -> int:
    """The stopping rule: the step before the first of ``1..steps`` for which ``within`` (dev
    accuracy within the tolerance) is false, or ``steps`` if there is none.

    ``"scan"`` asks every step in turn until the first failure (up to ``steps`` calls). ``"bisect"``
    asks steps 1, 2, 4, ... until one fails, then bisects between the last passing and the first
    failing one (about 2·log2(steps) calls). The two agree whenever the steps pass up to some step
    and fail after it; where dev accuracy falls below the tolerance and later rises above it again,
    bisection may return a later crossing (and, when no doubling fails, ``steps`` itself)."""
    if search == "scan":
        for k in range(1, steps + 1):
            if not within(k):
                return k - 1
        return steps
    passing, k = 0, 1
    while within(k):
        passing = k
        if k == steps:
            return steps
        k = min(2 * k, steps)
    failing = k
    while failing - passing > 1:
        middle = (passing + failing) // 2
        if within(middle):
            passing = middle
        else:
            failing = middle
    return passing


class _PruneOrder:
    """Which neurons a pruning ratio removes: the least active ``ratio`` of all candidates ranked
    together (``jointly``), or of each projection's neurons ranked within it."""

    def __init__(self, scores: list[torch.Tensor], jointly: bool):
        self.sizes = [len(s) for s in scores]
        if jointly:
            owner = torch.cat([torch.full((n,), k) for k, n in enumerate(self.sizes)])
            local = torch.cat([torch.arange(n) for n in self.sizes])
            order = torch.argsort(torch.cat(scores), stable=True)
            self.joint = list(zip(owner[order].tolist(), local[order].tolist()))
        else:
            self.joint = None
            self.orders = [torch.argsort(s, stable=True).tolist() for s in scores]

    def pruned(self, ratio: float) -> list[list[int]]:
        """The pruned neuron indices of each projection at ``ratio``."""
        if self.joint is None:
            return [order[:int(round(ratio * n))] for order, n in zip(self.orders, self.sizes)]
        rows: list[list[int]] = [[] for _ in self.sizes]
        for owner, neuron in self.joint[:int(round(ratio * len(self.joint)))]:
            rows[owner].append(neuron)
        return rows


# --------------------------------------------------------------------------- model access


def _along(keep: torch.Tensor, param: torch.Tensor, dim: int) -> torch.Tensor:
    """The keep mask shaped to broadcast over ``param`` along ``dim`` (a weight's rows, a
    ``Conv1D`` weight's columns, a bias)."""
    shape = [1] * param.dim()
    shape[dim] = -1
    return keep.view(shape)


# --------------------------------------------------------------------------- the three steps

@torch.no_grad()
def _mean_activations(model, units, ctx: DefenseContext, absolute: bool, pooled: bool = False) -> list[torch.Tensor]:
    """Mean activation of each neuron of each layer's FFN (:func:`benchmark.ffn_units`) over the
    non-padding tokens of the clean data (``pooled``: over the token each row's task head reads,
    :func:`benchmark.pooled_positions`), in one pass."""
    totals = [torch.zeros(unit.width, dtype=torch.float64) for unit in units]
    state = {}

    def sink_for(total):
        def sink(a):
            a = a.abs() if absolute else a
            m = state["mask"].to(a.dtype)[..., None]  # B×T×1: 1 at real tokens
            total.add_((a * m).sum((0, 1)).double().cpu())
        return sink

    def forward(model, batch) -> int:
        mask = batch["attention_mask"]
        if pooled:
            rows = torch.arange(mask.shape[0], device=mask.device)
            mask = torch.zeros_like(mask)
            mask[rows, pooled_positions(model, batch["attention_mask"]).to(mask.device)] = 1
        state["mask"] = mask
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return int(mask.sum())

    handles = [unit.capture(sink_for(total)) for unit, total in zip(units, totals)]
    try:
        tokens = sum(ctx.evaluate(model, ctx.clean_data, forward, batch_size=128))
    finally:
        for handle in handles:
            handle.remove()
    return [(total / max(tokens, 1)).float() for total in totals]


def _set_masks(units, originals, pruned: list[list[int]]) -> list[torch.Tensor]:
    """:func:`_set_mask` for each layer's FFN; returns the keep masks."""
    return [_set_mask(unit, original, rows) for unit, original, rows in zip(units, originals, pruned)]


@torch.no_grad()
def _set_mask(unit, original: list[torch.Tensor], pruned: list[int]) -> torch.Tensor:
    """Restore the FFN's incoming weights, then zero the ``pruned`` neurons' slices; returns the
    keep mask."""
    param0 = unit.incoming[0][0]
    keep = torch.ones(unit.width, device=param0.device)
    keep[pruned] = 0.0
    for (param, dim), value in zip(unit.incoming, original):
        param.copy_(value * _along(keep, param, dim))
    return keep


class _Replay(torch.nn.Module):
    """Stands in for an encoder layer: returns a stored output, whatever its input."""

    def __init__(self):
        super().__init__()
        self.value = None

    def forward(self, *args, **kwargs):
        return self.value


@contextlib.contextmanager
def _replay_below(layers: torch.nn.ModuleList, index: int, replay: _Replay):
    """Swap layers 0..index-1 for ``replay`` so that a forward pass computes only the embeddings
    (cheap) and the layers from ``index`` up."""
    saved = [layers[i] for i in range(index)]
    for i in range(index):
        layers[i] = replay
    try:
        yield
    finally:
        for i, module in enumerate(saved):
            layers[i] = module


class _DevReplay:
    """Clean dev accuracy with the layers below the pruned one computed once per batch (the
    context's batches come in the same order on every call)."""

    def __init__(self, model, layers: torch.nn.ModuleList, index: int, ctx: DefenseContext):
        self.model, self.layers, self.index, self.ctx = model, layers, index, ctx
        self.dev = ctx.encode(ctx.clean_dev)
        self.below: list = []
        if index > 0:
            captured = {}

            def below(model, batch):
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                return captured["out"]

            handle = layers[index - 1].register_forward_hook(lambda m, i, o: captured.__setitem__("out", o))
            try:
                self.below = ctx.evaluate(model, self.dev, below, batch_size=128)
            finally:
                handle.remove()

    def accuracy(self) -> float:
        replay = _Replay()
        stored = iter(self.below)

        def score(model, batch) -> tuple[int, int]:
            replay.value = next(stored, None)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            return int((logits.argmax(-1) == batch["labels"]).sum()), len(batch["labels"])

        guard = _replay_below(self.layers, self.index, replay) if self.index > 0 else contextlib.nullcontext()
        with guard:
            counts = self.ctx.evaluate(self.model, self.dev, score, batch_size=128)
        return sum(c for c, _ in counts) / max(sum(n for _, n in counts), 1)
