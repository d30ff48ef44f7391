"""Re-initialisation baselines: head, top-k layers, or everything (methods.md B5).

The "Re-init" baseline of Fine-purifying / MBTSAD is unverified, so the three variants of
methods.md B5 are implemented and named explicitly by ``mode``:

* ``head``: re-draw the task head and the pooler (Linear weights N(0, initializer_range), biases
  0, seeded by the scenario seed), then fine-tune on the clean data. Uses no pre-trained weights.
* ``top_k``: reset everything above encoder layer L−k — the top ``k`` layers, the pooler and the
  task head — then fine-tune. ``to="pretrained"`` copies θ_Pre into the layers and the pooler;
  ``to="random"`` re-draws them with the model's init scheme (Linear N(0, 0.02), LayerNorm 1/0),
  as in Zhang et al., "Revisiting Few-sample BERT Fine-tuning", ICLR 2021,
  https://arxiv.org/abs/2006.05987. The task head is always re-drawn (it has no θ_Pre).
* ``all``: discard θ_B: the pre-trained weights plus a fresh head, fine-tuned on the clean data —
  the clean-data-only reference (Fine-mixing with ρ = 0). Near-zero backdoor by construction, and
  the clean accuracy the clean subset alone can buy.

Fine-tuning: the shared defense recipe (methods.md E2). Requirements: a class declares its
``requires`` statically, so this one declares the union, {clean_data, pretrained_weights};
``mode="head"`` and ``mode="top_k", to="random"`` never call ``ctx.pretrained_model()`` (their
records still list the declaration). Default: ``top_k`` with k = 3 of MiniLM's 6 layers, reset to
θ_Pre (methods.md B5 lists k ∈ {1, 3, 6}).

Model access (``benchmark.model.architecture``): the layer stack is ``encoder_layers``, the pooler is
the base model's when the architecture has one (BERT; DeBERTa-v2's context pooler belongs to its
task head), the head is every module outside ``base_model`` (``task_head``).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch

from benchmark import (
    Defense,
    DefenseContext,
    DefenseOutput,
    PluginError,
    Sizes,
    Workload,
    encoder_layers,
    hparam,
    pooler,
    redraw,
    reinit_head,
    task_head,
    train_work,
)


class Reinit(Defense):
    name = "reinit"
    version = "1"
    requires = frozenset({"clean_data", "pretrained_weights"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        mode: Literal["head", "top_k", "all"] = "top_k"  # methods.md B5 Re-init-head / -top-k / -all
        k: int = hparam(3, range="[1, )")  # top_k: encoder layers reset (methods.md B5: 1, 3 or 6)
        to: Literal["pretrained", "random"] = "pretrained"  # top_k: θ_Pre, or N(0, 0.02) (Zhang et al. 2021)
        lr: float | None = hparam(None, range="(0, )")  # None: the shared defense recipe's lr (Budget.defense_training)
        epochs: int | None = hparam(None, range="[1, )")  # None: the shared defense recipe's epochs

    def workload(self, sizes: Sizes) -> Workload:
        p = self.params
        return train_work(sizes, "clean", (p.epochs if p.epochs is not None else sizes.defense_epochs))

    def purify(self, model, ctx: DefenseContext):
        p = self.params
        generator = torch.Generator().manual_seed(ctx.seed)
        info: dict = {"mode": p.mode}
        if p.mode == "all":
            model = ctx.pretrained_model()  # pre-trained weights with a seeded fresh head
            info["reset"] = ["all"]
        elif p.mode == "head":
            info["reset"] = reset_head(model, generator)
        else:
            layers = encoder_layers(model, self.name)
            if not 1 <= p.k <= len(layers):
                raise PluginError(f"{self.name}: k must be in 1..{len(layers)}, got {p.k}")
            source = ctx.pretrained_model() if p.to == "pretrained" else None
            info.update(k=p.k, to=p.to, reset=reset_top(model, p.k, source, generator))
        ctx.finetune(model, ctx.clean_data, lr=p.lr, epochs=p.epochs)
        return DefenseOutput(model, info=info)


def _head_modules(model) -> list[tuple[str, torch.nn.Module]]:
    """The task head's top-level modules (outside ``base_model``) and the pooler, by name."""
    base_pooler = pooler(model)
    return task_head(model) + ([("pooler", base_pooler)] if base_pooler is not None else [])


def reset_head(model, generator: torch.Generator) -> list[str]:
    """Re-draw the task head and the pooler in place; returns the module names reset."""
    names = reinit_head(model, generator)
    base_pooler = pooler(model)
    if base_pooler is not None:
        redraw(base_pooler, generator, getattr(model.config, "initializer_range", 0.02))
        names.append("pooler")
    return names


@torch.no_grad()
def reset_top(model, k: int, source, generator: torch.Generator) -> list[str]:
    """Reset the top ``k`` encoder layers and the pooler to ``source``'s (θ_Pre) or, when
    ``source`` is None, to random init; the task head is always re-drawn."""
    std = getattr(model.config, "initializer_range", 0.02)
    layers = encoder_layers(model, "reinit")
    names = []
    if source is not None:
        src_layers, src_pooler = encoder_layers(source, "reinit"), pooler(source)
    for i in range(len(layers) - k, len(layers)):
        if source is not None:
            layers[i].load_state_dict(src_layers[i].state_dict())
        else:
            redraw(layers[i], generator, std)
        names.append(f"layer{i + 1}")
    base_pooler = pooler(model)
    for name, module in _head_modules(model):
        if module is base_pooler and source is not None and src_pooler is not None:
            module.load_state_dict(src_pooler.state_dict())
        else:
            redraw(module, generator, std)
        names.append(name)
    return names
