"""Fine-pruning, adapted to transformer encoders (methods.md B2).

Liu, Dolan-Gavitt, Garg, "Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural
Networks", RAID 2018, https://arxiv.org/abs/1805.12185.

Algorithm (transformer adaptation of methods.md B2):
1. Score the FFN intermediate neurons (the activation output of the FFN's first projection,
   ``intermediate_size`` units) of one encoder layer — the last by default, the analogue of the
   paper's last convolutional layer — by their mean activation over the non-padding tokens of
   the defender's clean data (signed mean by default: GELU can be negative and "least active"
   is the most negative; ``score="abs_mean"`` is the documented alternative).
2. Prune in increasing order of score, ``step`` of the neurons at a time (1%, BackdoorBench's
   ``once_prune_ratio``), measuring clean dev accuracy after each step; stop at the first step
   whose accuracy falls more than ``tolerance`` below the unpruned model's and keep the previous
   ratio (the largest ratio with acc ≥ acc_0 − τ). A neuron is pruned by zeroing its row of the
   projection's weight and its bias, so its activation is exactly act(0) = 0.
3. Fine-tune the pruned model on the clean data with the shared recipe, keeping the mask in force:
   a gradient hook zeroes the pruned rows' gradients (so AdamW never moves them) and ``post_step``
   re-zeroes the rows after every optimiser step.

Defaults and sources: ``tolerance = 0.04`` is Liu et al.'s stopping rule (4% drop on validation,
[recalled] in methods.md); BackdoorBench uses ``acc_ratio = 0.1`` (set ``tolerance=0.1``).
``step = 0.01`` is BackdoorBench's. Fine-tuning: the shared defense recipe (methods.md E2).

Observed (MiniLM-L6 backdoored by BadNets or EP on 2000 SST-2 samples): clean dev accuracy fell
by under 1 point when the whole last-layer FFN was pruned, so the rule pruned all of it (the
residual connection carries the representation past the FFN); the curve is in the record.

Speed: every dev evaluation re-runs only the encoder layers from the pruned one up; the output
of the layer below is computed once per dev batch and replayed (see :func:`_replay_below`).

Departures: activations are ranked on the clean training subset (the paper uses validation
data; here dev is kept for the stopping rule so that the two uses stay separate). The pruned
unit is the FFN neuron, not a convolutional channel. Model access: the layer stack is found as
the base model's ``ModuleList`` of ``num_hidden_layers`` entries, and the FFN projection as the
layer's one ``Linear`` with ``intermediate_size`` outputs (BERT's ``intermediate.dense``), in
:func:`_ffn_projection` only.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Literal

import torch

from benchmark import Defense, DefenseContext, DefenseOutput, PluginError
from benchmark.encoding import iterate_batches
from benchmark.params import hparam
from benchmark.victims import encoder_layers


class FinePruning(Defense):
    name = "fine_pruning"
    version = "1"
    requires = frozenset({"clean_data", "clean_dev"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        layer: int = -1  # encoder layer to prune, 1..L; -1 = the last (Liu: the last conv layer)
        score: Literal["mean", "abs_mean"] = "mean"  # signed mean activation (methods.md B2) or mean |a|
        tolerance: float = hparam(0.04, range="[0, )")  # allowed clean-dev accuracy drop; Liu 4% [recalled], BackdoorBench 0.1
        step: float = hparam(0.01, range="(0, 1]")  # share of the neurons pruned per step (BackdoorBench once_prune_ratio)
        max_ratio: float = hparam(1.0, range="(0, 1]")  # never prune more than this share of the layer's neurons
        lr: float | None = hparam(None, range="(0, )")  # None: the shared recipe's lr (2e-5)
        epochs: int | None = hparam(None, range="[1, )")  # None: the shared recipe's epochs (3)

    def purify(self, model, ctx: DefenseContext):
        p = self.params
        if not 0 < p.step <= 1 or not 0 < p.max_ratio <= 1 or p.tolerance < 0:
            raise PluginError(f"{self.name}: need 0 < step <= 1, 0 < max_ratio <= 1, tolerance >= 0; got {p}")
        model.to(ctx.runtime.device).eval()
        layers = encoder_layers(model)
        index = _layer_index(p.layer, len(layers), self.name)
        proj = _ffn_projection(layers[index], model.config)
        n = proj.out_features

        # -- 1. rank the neurons by mean activation on the clean data (least active first)
        scores = _mean_activations(model, proj, ctx, absolute=p.score == "abs_mean")
        order = torch.argsort(scores).tolist()

        # -- 2. prune step by step until clean dev accuracy drops by more than the tolerance
        original = (proj.weight.detach().clone(), proj.bias.detach().clone())
        dev = _DevReplay(model, layers, index, ctx)
        acc0 = dev.accuracy()
        curve, chosen = [[0.0, round(acc0, 4)]], 0
        for k in range(1, int(round(p.max_ratio / p.step)) + 1):
            count = min(n, int(round(k * p.step * n)))
            _set_mask(proj, original, order[:count])
            acc = dev.accuracy()
            curve.append([round(count / n, 4), round(acc, 4)])
            if acc < acc0 - p.tolerance:
                break
            chosen = count
        keep = _set_mask(proj, original, order[:chosen])
        dev_pruned = dev.accuracy()
        del dev

        # -- 3. fine-tune with the mask in force (gradient hooks + re-zeroing after each step)
        hooks = [proj.weight.register_hook(lambda g: g * keep[:, None].to(g.dtype)),
                 proj.bias.register_hook(lambda g: g * keep.to(g.dtype))]

        def enforce(m, step):
            with torch.no_grad():
                proj.weight.mul_(keep[:, None].to(proj.weight.dtype))
                proj.bias.mul_(keep.to(proj.bias.dtype))

        try:
            ctx.finetune(model, ctx.clean_data, post_step=enforce, lr=p.lr, epochs=p.epochs)
        finally:
            for hook in hooks:
                hook.remove()
        info = {"layer": index + 1, "neurons": n, "pruned": chosen, "prune_ratio": round(chosen / n, 4),
                "dev_acc_before": round(acc0, 4), "dev_acc_pruned": round(dev_pruned, 4),
                "dev_acc_after": round(ctx.accuracy(model, ctx.clean_dev), 4), "curve": curve}
        return DefenseOutput(model, info=info)


# --------------------------------------------------------------------------- model access


def _ffn_projection(layer: torch.nn.Module, config) -> torch.nn.Linear:
    """The FFN's first projection (BERT: ``intermediate.dense``): the one Linear of the layer
    with ``intermediate_size`` outputs; its activated output is the neuron vector."""
    found = [m for m in layer.modules()
             if isinstance(m, torch.nn.Linear) and m.out_features == config.intermediate_size]
    if len(found) != 1 or found[0].bias is None:
        raise PluginError(f"fine_pruning: expected one biased Linear with {config.intermediate_size} outputs "
                          f"in {type(layer).__name__}, found {len(found)}")
    return found[0]


def _layer_index(layer: int, num_layers: int, plugin: str) -> int:
    if layer == -1:
        return num_layers - 1
    if not 1 <= layer <= num_layers:
        raise PluginError(f"{plugin}: layer {layer} is outside 1..{num_layers} (or -1 for the last)")
    return layer - 1


# --------------------------------------------------------------------------- the three steps

@torch.no_grad()
def _mean_activations(model, proj: torch.nn.Linear, ctx: DefenseContext, absolute: bool) -> torch.Tensor:
    """Mean activation of each neuron over the non-padding tokens of the clean data."""
    from transformers.activations import ACT2FN

    act = ACT2FN[model.config.hidden_act]
    total = torch.zeros(proj.out_features, dtype=torch.float64)
    tokens = 0
    state = {}

    def hook(module, inputs, output):
        a = act(output.float())
        a = a.abs() if absolute else a
        m = state["mask"].to(a.dtype)[..., None]  # B×T×1: 1 at real tokens
        total.add_((a * m).sum((0, 1)).double().cpu())

    handle = proj.register_forward_hook(hook)
    try:
        for batch in iterate_batches(ctx.encode(ctx.clean_data), 128, device=ctx.runtime.device):
            state["mask"] = batch["attention_mask"]
            tokens += int(batch["attention_mask"].sum())
            with ctx.runtime.autocast():
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        handle.remove()
    return (total / max(tokens, 1)).float()


@torch.no_grad()
def _set_mask(proj: torch.nn.Linear, original: tuple[torch.Tensor, torch.Tensor], pruned: list[int]) -> torch.Tensor:
    """Restore the projection, then zero the ``pruned`` neurons' rows; returns the keep mask."""
    keep = torch.ones(proj.out_features, device=proj.weight.device)
    keep[pruned] = 0.0
    proj.weight.copy_(original[0] * keep[:, None])
    proj.bias.copy_(original[1] * keep)
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
    """Clean dev accuracy with the layers below the pruned one computed once per batch."""

    def __init__(self, model, layers: torch.nn.ModuleList, index: int, ctx: DefenseContext):
        self.model, self.layers, self.index, self.runtime = model, layers, index, ctx.runtime
        self.batches = list(iterate_batches(ctx.encode(ctx.clean_dev), 128, device=ctx.runtime.device))
        self.below: list = [None] * len(self.batches)
        if index > 0:
            captured = {}
            handle = layers[index - 1].register_forward_hook(lambda m, i, o: captured.__setitem__("out", o))
            try:
                with torch.no_grad(), ctx.runtime.autocast():
                    for k, batch in enumerate(self.batches):
                        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                        self.below[k] = captured["out"]
            finally:
                handle.remove()

    @torch.no_grad()
    def accuracy(self) -> float:
        replay = _Replay()
        correct = total = 0
        guard = _replay_below(self.layers, self.index, replay) if self.index > 0 else contextlib.nullcontext()
        with guard, self.runtime.autocast():
            for batch, below in zip(self.batches, self.below):
                replay.value = below
                logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                correct += int((logits.argmax(-1) == batch["labels"]).sum())
                total += len(batch["labels"])
        return correct / max(total, 1)
