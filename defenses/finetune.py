"""FT: fine-tuning the backdoored model on the defender's clean data (methods.md B1).

Liu, Dolan-Gavitt, Garg, "Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural
Networks", RAID 2018, https://arxiv.org/abs/1805.12185 (fine-tuning as a component and
baseline); used as a baseline by NAD, Fine-mixing, Fine-purifying and MBTSAD.

Algorithm: starting from the backdoored model, minimise cross-entropy on the clean subset over
all parameters with the shared defense recipe (``Budget.defense_training``: AdamW, lr 2e-5,
3 epochs, batch 32, linear schedule with 10% warm-up, weight decay 0.01 — methods.md B1's
recommendation). ``lr`` and ``epochs`` override the recipe (methods.md suggests also reporting
5e-5 and 1e-4, which erase more). The last checkpoint is returned: selecting on clean dev
would need ``clean_dev``, which this baseline does not declare.
"""

from __future__ import annotations

import dataclasses

from benchmark import Defense, DefenseContext, Sizes, Workload, hparam, train_work


class FineTune(Defense):
    name = "finetune"
    version = "1"
    requires = frozenset({"clean_data"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        lr: float | None = hparam(None, range="(0, )")  # None: the shared defense recipe's lr (Budget.defense_training)
        epochs: int | None = hparam(None, range="[1, )")  # None: the shared defense recipe's epochs

    def workload(self, sizes: Sizes) -> Workload:
        p = self.params
        return train_work(sizes, "clean", (p.epochs if p.epochs is not None else sizes.defense_epochs))

    def purify(self, model, ctx: DefenseContext):
        ctx.finetune(model, ctx.clean_data, lr=self.params.lr, epochs=self.params.epochs)
        return model
