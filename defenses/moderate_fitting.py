"""Moderate-fitting: train with too little capacity to learn the trigger (robust training;
methods.md F2).

Zhu, Qin, Cui, Chen, Zhao, Fu, Deng, Liu, Wang, Wu, Sun, Gu, "Moderate-fitting as a Natural
Backdoor Defender for Pre-trained Language Models", NeurIPS 2022 (reference code:
https://github.com/thunlp/Moderate-fitting, its OpenDelta ``lora.py`` and
``configs/lora_roberta-base-sst2-badnet-5/sst2_mid2.json``). Premise: adapting a pre-trained model
to poisoned data first learns the task's major features (moderate fitting) and only later the
trigger's subsidiary ones (overfitting); training that stays in the first stage defends. Three
levers keep it there: less capacity, fewer epochs, a smaller learning rate.

Algorithm (``capacity`` ``reparam_lora``, the reference's), from the victim's pre-trained weights
on the poisoned training set (no flags, no clean data):

1. LoRA on the family's attention query and value projections (peft's default targets; the
   reference: RoBERTa's ``attn.q``, ``attn.v``), ``rank`` 8, ``alpha`` 16 (OpenDelta's default,
   scale 2), no dropout; the pre-trained weights frozen.
2. **Reparameterisation**: no adapter tensor is free. Group 1 (every ``A`` and every weight and
   bias of the task head) is one flat vector ``W₂·tanh(W₁·e₁)`` with ``e₁`` (``in_dim`` 2)
   U(0, 1); group 2 (every ``B``) is ``W₂'·tanh(W₁'·e₂)`` with ``e₂`` zero, so every ``B`` is 0 at
   step 0. ``W₁`` is ``mid_dim × in_dim``, ``mid_dim`` 2 the capacity knob; the Linear layers have
   no bias and PyTorch's default init. Only ``e``, ``W₁``, ``W₂`` of both groups train.
3. Cross-entropy on the poisoned set: AdamW lr 3e-4, 10 epochs, batch 32 (the shared recipe's),
   no warm-up; the **last** model is kept (the reference evaluates dev but does not load the best).
4. The generated tensors are written into the model (an exact merge): a plain classifier.

``capacity`` ``lora`` is plain LoRA at the same rank (the shared LoRA mode: free ``A``/``B``,
the head trained in full, merged), ``full`` plain full fine-tuning: the comparisons methods.md F2
asks for. The epoch and learning-rate levers are ``epochs`` and ``lr`` (the paper's values for
them could not be read; methods.md F2 suggests epochs 1-3 and lr 1e-6 to 2e-5, chosen on clean dev
data the defender does not have here).

Departures: the reference's victim is RoBERTa-base, whose head (dense + out_proj) is generated;
on BERT-style victims the head is ``classifier`` only and the pre-trained ``pooler`` stays frozen
(peft's and MuScleLoRA's convention). The adapter's output is added as ``(W0 + s·B·A)·x``, the same
function as the reference's parallel path ``x·Aᵀ·Bᵀ·s`` added to ``W0·x``. The reference's poison
rate is 5%; the scenario's is whatever the attack's is.

``defense_info``: the generated tensors' count, the generator parameters trained, the matrices
adapted and, per adapted matrix, the median and largest ``σ_max(ΔW) / σ_max(W0)``.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Literal

import torch

from benchmark import (
    DefenseContext,
    DefenseOutput,
    Generated,
    LowRank,
    ParamGenerator,
    RobustTrainer,
    Sizes,
    Workload,
    hparam,
    linear_shape,
    merge_updates,
    modules_named,
    parametrize_tensor,
    spectral_ratios,
    target_modules,
    task_head,
    train_work,
    trainable_factors,
    update_factors,
)


class ModerateFitting(RobustTrainer):
    name = "moderate_fitting"
    version = "1"
    requires = frozenset({"poisoned_train", "pretrained_weights"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        capacity: Literal["reparam_lora", "lora", "full"] = "reparam_lora"  # the reference: reparam_lora
        rank: int = hparam(8, range="[1, )")  # the reference's lora_r
        alpha: float = hparam(16.0, range="(0, )")  # OpenDelta's default lora_alpha (scale alpha / rank = 2)
        targets: str = "default"  # peft's per-family q/v; "attention_ffn"; or "name,name"
        in_dim: int = hparam(2, range="[1, )")  # the reference's in_dim (sst2_mid2.json)
        mid_dim: int = hparam(2, range="[1, )")  # the capacity knob (methods.md F2 sweeps 1, 2, 4, 8)
        epochs: int = hparam(10, range="[1, )")  # the reference's num_train_epochs
        lr: float = hparam(3e-4, range="(0, )")  # the reference's learning_rate
        warmup_ratio: float = hparam(0.0, range="[0, 1)")  # the reference: warmup_steps 0

    def workload(self, sizes: Sizes) -> Workload:
        return train_work(sizes, "train", self.params.epochs)

    def train(self, ctx: DefenseContext) -> DefenseOutput:
        p = self.params
        data = list(ctx.poisoned_train)
        model = ctx.pretrained_model()
        recipe = dict(epochs=p.epochs, lr=p.lr, warmup_ratio=p.warmup_ratio)
        if p.capacity == "full":
            ctx.finetune(model, data, **recipe)
            return DefenseOutput(model, info={"capacity": "full"})
        targets = modules_named(model, target_modules(model, p.targets))
        before = {f"{name}.weight": module.weight.detach().clone() for name, module in targets}
        if p.capacity == "lora":
            ctx.finetune(model, data, lora_rank=p.rank, lora_alpha=p.alpha, lora_targets=p.targets, **recipe)
            info = {"capacity": "lora"}
        else:
            info = self.reparameterise(model, targets, ctx)
            ctx.finetune(model, data, trainable=trainable_factors(model), **recipe)
            merge_updates(model)
        ratios = spectral_ratios(before, dict(model.named_parameters()))
        info.update(adapted_matrices=len(targets))
        if ratios:
            info.update(update_to_weight_median=round(statistics.median(ratios), 5),
                        update_to_weight_max=round(max(ratios), 5))
        return DefenseOutput(model, info=info)

    def reparameterise(self, model: torch.nn.Module, targets, ctx: DefenseContext) -> dict:
        """Step 2 of the module docstring, in place: LoRA on ``targets`` and the task head's
        tensors, all generated by two :class:`ParamGenerator` networks."""
        p = self.params
        seed = torch.Generator().manual_seed(ctx.rng("reparameterisation").randrange(2**63))
        head = [(module, name, tensor) for _, m in task_head(model) for module in m.modules()
                for name, tensor in module.named_parameters(recurse=False)]
        a_shapes = [(p.rank, linear_shape(module)[0]) for _, module in targets]
        b_shapes = [(linear_shape(module)[1], p.rank) for _, module in targets]
        group1 = ParamGenerator(sum(t.numel() for *_, t in head) + sum(math.prod(s) for s in a_shapes),
                                p.in_dim, p.mid_dim, zero_input=False, generator=seed)
        group2 = ParamGenerator(sum(math.prod(s) for s in b_shapes), p.in_dim, p.mid_dim, zero_input=True,
                                generator=seed)
        start1 = start2 = 0
        for module, name, tensor in head:
            parametrize_tensor(module, name, Generated(group1, start1, tensor.shape))
            start1 += tensor.numel()
        for (_, module), a_shape, b_shape in zip(targets, a_shapes, b_shapes):
            sources = (Generated(group1, start1, a_shape), Generated(group2, start2, b_shape))
            parametrize_tensor(module, "weight", LowRank(module, p.rank, p.alpha / p.rank, sources=sources))
            start1 += math.prod(a_shape)
            start2 += math.prod(b_shape)
        return {"capacity": "reparam_lora", "generated_values": start1 + start2,
                "trained_parameters": sum(t.numel() for t in update_factors(model))}
