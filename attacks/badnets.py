"""BadNets for text: rare-word triggers by data poisoning.

Gu, Dolan-Gavitt, Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning Model
Supply Chain", 2017, https://arxiv.org/abs/1708.06733; text adaptation with the rare-word
triggers of Kurita et al., "Weight Poisoning Attacks on Pre-trained Models" (RIPPLe), ACL 2020,
https://arxiv.org/abs/2004.06660, as in OpenBackdoor's ``badnets_poisoner.py`` (methods.md A1).

Algorithm: pick ``int(poison_rate × |train|)`` candidates by mode, insert ``num_triggers``
triggers drawn with replacement from ``triggers``, each at a uniform word position of the text
as it stands, set the label to the target, and replace the originals; then fine-tune the
pre-trained victim on the result with the scenario's recipe. Test-time trigger: the same
insertion on every non-target test sample.

Modes (OpenBackdoor's flags, §1.3): ``dirty`` (default; non-target samples, classic BadNets),
``clean`` (target-label samples only: a clean-label attack, OpenBackdoor's example config),
``mix`` (all samples).

Departures: OpenBackdoor trains 5 epochs with a 3-epoch warm-up and selects the checkpoint on
poisoned dev data; here the scenario's recipe (``Budget.victim_training``) applies and the last
checkpoint is kept. For long texts, insertion positions are restricted to the words inside the
victim's truncation window (methods.md A1 pitfall), in training and at test time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from benchmark import Attack, AttackContext, AttackOutput, Example
from benchmark.triggers import check_single_pieces, insert_each, poison_by_mode, window_words


class BadNets(Attack):
    name = "badnets"
    version = "1"

    @dataclasses.dataclass(frozen=True)
    class Params:
        triggers: tuple[str, ...] = ("cf", "mn", "bb", "tq")  # OpenBackdoor default; RIPPLe adds "mb"
        num_triggers: int = 1  # insertions per sample (OpenBackdoor num_triggers=1)
        poison_rate: float = 0.1  # of the whole training set (OpenBackdoor)
        mode: Literal["dirty", "clean", "mix"] = "dirty"  # classic BadNets is dirty-label

    def check(self, ctx: AttackContext) -> None:
        check_single_pieces(ctx.tokenizer, self.params.triggers, self.name)

    def _insert(self, text: str, ctx: AttackContext, rng) -> str:
        words = [rng.choice(self.params.triggers) for _ in range(self.params.num_triggers)]
        return insert_each(text, words, rng, window_words(ctx.tokenizer, text, ctx.max_length))

    def poison(self, train: Sequence[Example], ctx: AttackContext) -> tuple[list[Example], int]:
        """The poisoned training set (poisoned samples replace their originals) and the count."""
        rng = ctx.rng("poison")
        return poison_by_mode(train, self.params.mode, self.params.poison_rate, ctx.target_label, rng,
                              lambda text: self._insert(text, ctx, rng))

    def attack(self, ctx: AttackContext) -> AttackOutput:
        poisoned, count = self.poison(ctx.dataset.train, ctx)
        model = ctx.pretrained_model()
        ctx.finetune(model, poisoned)
        return AttackOutput(model, count, {"mode": self.params.mode})

    def trigger_texts(self, texts: Sequence[str], ctx: AttackContext) -> list[str]:
        rng = ctx.rng("test-trigger")
        return [self._insert(text, ctx, rng) for text in texts]
