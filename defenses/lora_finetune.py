"""FT-LoRA: fine-tuning the backdoored model on the defender's clean data with LoRA adapters
(methods.md F1), beside full fine-tuning (``finetune``, B1) on the same data and recipe.

The claim it tests: clean fine-tuning with LoRA "is notably ineffective at removing backdoor
behaviors" (Luong & Chen, "Why LoRA Fails to Forget", arXiv 2601.06305, the RoRA paper; its
abstract only could be read: its models, ranks and numbers are unknown), because LoRA's updates
have singular values far below those of the pre-trained weights.

Algorithm: the shared training loop in LoRA mode (``benchmark.model.lora``): adapters on the
family's default targets (peft's q/v), the task head trained in full, merged into the weights at
the end; cross-entropy on the clean subset with the shared defense recipe (``lr`` and ``epochs``
override it, as for ``finetune``). A different defense from full fine-tuning, never a stand-in
for it.

Settings: ``rank`` 8, ``alpha`` 32, ``dropout`` 0 (methods.md F1's bdbench default, MuScleLoRA's
PLM values); ``targets`` ``default`` or ``attention_ffn`` (every attention and FFN projection) or
module names. ``lr`` defaults to the shared recipe's 2e-5, the literature's full fine-tuning rate
and ``finetune``'s, so that the two differ in the adapters only; methods.md F1 recommends 2e-4
(typical for LoRA) as well, since the effect depends on the update's size
(``--set lora_finetune.lr=2e-4``).

``defense_info`` reports, per adapted matrix, ``σ_max(ΔW) / σ_max(W0)`` (the merged update's
spectral norm over the original weight's; RoRA's diagnostic): its median and maximum.
"""

from __future__ import annotations

import dataclasses
import statistics

from benchmark import (
    Defense,
    DefenseContext,
    DefenseOutput,
    Sizes,
    Workload,
    hparam,
    spectral_ratios,
    task_head,
    train_work,
)


class LoraFineTune(Defense):
    name = "lora_finetune"
    version = "1"
    requires = frozenset({"clean_data"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        rank: int = hparam(8, range="[1, )")  # methods.md F1 (MuScleLoRA PLM: 8)
        alpha: float = hparam(32.0, range="(0, )")  # MuScleLoRA PLM: 32 (scale alpha / rank = 4)
        dropout: float = hparam(0.0, range="[0, 1)")
        targets: str = "default"  # peft's per-family q/v; "attention_ffn"; or "name,name"
        lr: float | None = hparam(None, range="(0, )")  # None: the shared defense recipe's lr (2e-5)
        epochs: int | None = hparam(None, range="[1, )")  # None: the shared defense recipe's epochs

    def workload(self, sizes: Sizes) -> Workload:
        p = self.params  # a full backward pass still runs through the frozen layers
        return train_work(sizes, "clean", (p.epochs if p.epochs is not None else sizes.defense_epochs))

    def purify(self, model, ctx: DefenseContext):
        p = self.params
        head = {id(q) for _, module in task_head(model) for q in module.parameters()}
        before = {name: param.detach().clone() for name, param in model.named_parameters()
                  if param.dim() == 2 and id(param) not in head}
        ctx.finetune(model, ctx.clean_data, lr=p.lr, epochs=p.epochs, lora_rank=p.rank, lora_alpha=p.alpha,
                     lora_dropout=p.dropout, lora_targets=p.targets)
        ratios = spectral_ratios(before, dict(model.named_parameters()))
        info = {"adapted_matrices": len(ratios)}
        if ratios:
            info.update(update_to_weight_median=round(statistics.median(ratios), 5),
                        update_to_weight_max=round(max(ratios), 5))
        return DefenseOutput(model, info=info)
