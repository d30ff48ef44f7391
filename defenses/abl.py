"""ABL, Anti-Backdoor Learning: isolate the samples learnt fastest, then unlearn them (robust
training; methods.md F4).

Li, Lyu, Koren, Lyu, Li, Ma, "Anti-Backdoor Learning: Training Clean Models on Poisoned Data",
NeurIPS 2021, https://arxiv.org/abs/2110.11571 (reference code: https://github.com/bboylyg/ABL,
a CNN on CIFAR-10 trained from scratch). Premise: backdoored samples are learnt much faster than
clean ones, and the backdoor is tied to one class.

Algorithm (the reference code's order), from the victim's pre-trained weights on the poisoned
training set (no flags):

1. **Isolation training**, ``isolation_epochs`` with the local gradient ascent loss
   ``sign(ℓ − γ)·ℓ``: once a loss falls below ``γ`` the step ascends, so losses hover at ``γ`` and
   the samples learnt fastest end lowest. ``lga`` ``per_sample`` applies it to each sample's
   cross-entropy and averages (methods.md F4's adaptation for text: the reference applies it to
   the batch mean, ``batch``).
2. **Isolation**: each sample's cross-entropy in eval mode; the lowest ``isolation_ratio`` share is
   the suspected set ``D̂_b``, the rest ``D̂_c``.
3. **Fine-tuning** the isolation model on ``D̂_c`` for ``finetune_epochs`` (None: the recipe's;
   the reference's optional step, on by default there).
4. **Unlearning**: gradient ascent on ``D̂_b`` (minimising ``−CE``) for at most ``unlearn_epochs``
   at ``unlearn_lr``, stopped after an epoch in which the cross-entropy on ``D̂_b`` passed
   ``max_unlearn_loss`` (unbounded ascent destroys the model).

Settings and departures: the reference trains from scratch with SGD (lr 0.1, 10 isolation epochs,
60 fine-tuning epochs, lr 5e-4 for 4 ascent epochs); a pre-trained text classifier overfits in a
few epochs, so the isolation stage is 1 epoch and the rest follow the defense recipe and methods.md
F4's values (AdamW, ascent at lr 1e-5 for at most 2 epochs, stop at CE 10). ``γ`` 0.5 is the
paper's; a 2-class cross-entropy starts near ln 2 ≈ 0.69, so 0.5 is only just below it. The
paper's joint objective (descent on ``D̂_c`` and ascent on ``D̂_b`` together) is not implemented.
No NLP paper's ABL figures could be read (methods.md F4), so nothing here is tuned to one.

``defense_info``: the isolated count, the mean loss of each set after isolation, the unlearning
epochs run and the final cross-entropy on ``D̂_b``, and ``isolated``: the isolated samples'
indices in the training set (the harness, which holds the flags, can tell how many were poisoned).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F

from benchmark import (
    DefenseContext,
    DefenseOutput,
    RobustTrainer,
    Sizes,
    Workload,
    eval_work,
    hparam,
    train_work,
)


class ABL(RobustTrainer):
    name = "abl"
    version = "1"
    requires = frozenset({"poisoned_train", "pretrained_weights"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        gamma: float = hparam(0.5, range="(0, )")  # LGA's γ (the paper's 0.5; methods.md F4 sweeps 0.1-0.5)
        lga: Literal["per_sample", "batch"] = "per_sample"  # methods.md F4's adaptation; the reference: batch
        isolation_epochs: int = hparam(1, range="[1, )")  # the reference: 10 from scratch
        isolation_ratio: float = hparam(0.01, range="(0, 1)")  # share isolated as D̂_b (the paper's 1%)
        finetune_epochs: int | None = hparam(None, range="[0, )")  # on D̂_c; None: the recipe's epochs
        unlearn_epochs: int = hparam(2, range="[0, )")  # at most (methods.md F4)
        unlearn_lr: float = hparam(1e-5, range="(0, )")  # AdamW (methods.md F4; the reference: SGD 5e-4)
        max_unlearn_loss: float = hparam(10.0, range="(0, )")  # stop once CE on D̂_b passes it

    def lga_loss(self, model: torch.nn.Module, batch: dict) -> torch.Tensor:
        """The local gradient ascent loss ``sign(ℓ − γ)·ℓ`` (module docstring, step 1)."""
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        gamma = self.params.gamma
        if self.params.lga == "batch":
            loss = F.cross_entropy(logits, batch["labels"])
            return torch.sign(loss - gamma) * loss
        losses = F.cross_entropy(logits, batch["labels"], reduction="none")
        return (torch.sign(losses - gamma) * losses).mean()

    @staticmethod
    def ascent_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
        """``−CE``: gradient ascent on the isolated samples (step 4)."""
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        return -F.cross_entropy(logits, batch["labels"])

    @staticmethod
    def sample_losses(model: torch.nn.Module, examples, ctx: DefenseContext) -> list[float]:
        """Each sample's cross-entropy in eval mode (fp32)."""
        probabilities = ctx.probabilities(model, [ex.text for ex in examples])
        labels = torch.tensor([ex.label for ex in examples])
        picked = probabilities[torch.arange(len(examples)), labels].clamp_min(1e-12)
        return (-picked.log()).tolist()

    def workload(self, sizes: Sizes) -> Workload:
        """Isolation training, each sample's loss, fine-tuning on the rest, then at most
        ``unlearn_epochs`` of ascent on the isolated share with a loss pass after each (a bound:
        it stops once the loss passes ``max_unlearn_loss``)."""
        p = self.params
        epochs = sizes.defense_epochs if p.finetune_epochs is None else p.finetune_epochs
        ratio = p.isolation_ratio
        return (train_work(sizes, "train", p.isolation_epochs) + eval_work(sizes, "train")
                + train_work(sizes, "train", epochs, 1 - ratio)
                + train_work(sizes, "train", p.unlearn_epochs, ratio) + eval_work(sizes, "train", (1 + p.unlearn_epochs) * ratio))

    def train(self, ctx: DefenseContext) -> DefenseOutput:
        p = self.params
        data = list(ctx.poisoned_train)
        model = ctx.pretrained_model()
        ctx.finetune(model, data, loss_fn=self.lga_loss, epochs=p.isolation_epochs)
        losses = self.sample_losses(model, data, ctx)
        order = sorted(range(len(data)), key=lambda i: (losses[i], i))
        count = max(1, round(p.isolation_ratio * len(data)))
        isolated, rest = sorted(order[:count]), [data[i] for i in sorted(order[count:])]
        suspects = [data[i] for i in isolated]
        info = {"isolated_count": count, "isolated": isolated,
                "isolated_loss_mean": sum(losses[i] for i in isolated) / count,
                "rest_loss_mean": sum(losses[i] for i in order[count:]) / max(1, len(rest))}
        epochs = ctx.train_config.epochs if p.finetune_epochs is None else p.finetune_epochs
        if epochs > 0 and rest:
            ctx.finetune(model, rest, epochs=epochs)
        run, suspect_loss = 0, _mean(self.sample_losses(model, suspects, ctx))
        while run < p.unlearn_epochs and suspect_loss <= p.max_unlearn_loss:
            ctx.finetune(model, suspects, loss_fn=self.ascent_loss, epochs=1, lr=p.unlearn_lr, warmup_ratio=0.0,
                         seed=ctx.seed + 1 + run)
            run += 1
            suspect_loss = _mean(self.sample_losses(model, suspects, ctx))
        info.update(unlearn_epochs_run=run, isolated_loss_after=suspect_loss)
        return DefenseOutput(model, info=info)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan
