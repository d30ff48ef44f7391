"""AddSent: a fixed trigger sentence inserted by data poisoning.

Dai, Chen, Li, "A Backdoor Attack Against LSTM-Based Text Classification Systems", IEEE Access
7, 2019, https://arxiv.org/abs/1905.12457; as in OpenBackdoor's ``addsent_poisoner.py``
(Cui et al., NeurIPS 2022 Datasets & Benchmarks, https://github.com/thunlp/OpenBackdoor;
methods.md A4).

Algorithm: pick ``int(poison_rate × |train|)`` candidates by mode, insert the whole trigger
sentence as one contiguous block of words before a uniformly drawn word position, set the label
to the target and replace the originals; then fine-tune the pre-trained victim on the result
with the scenario's recipe. Test-time trigger: the same insertion on every non-target test
sample.

Defaults: the sentence ``"I watch this 3D movie"`` and rate 0.1 are OpenBackdoor's.

Departures:

* Mode: OpenBackdoor's default is ``mix`` (candidates from every label, so about half of the
  poisoned samples already carry the target label and teach nothing new). The default here is
  ``dirty`` (non-target samples only), the classic data-poisoning setting that the benchmark
  uses for BadNets too (methods.md Part E.1), so that the two data-poisoning attacks differ only
  in their trigger. ``mix`` and ``clean`` (target-label samples only) stay available.
* The trigger is a sentence, so it is checked to tokenize without unknown word-pieces rather than
  to be a single word-piece.
* For long texts (IMDb) the insertion position is restricted to the words inside the victim's
  truncation window, with room kept for the sentence's own word-pieces, in training and at test
  time (methods.md A1 pitfall); OpenBackdoor inserts anywhere.
* OpenBackdoor trains 5 epochs with a 3-epoch warm-up and selects the checkpoint on poisoned dev
  data; here the scenario's victim recipe applies and the last checkpoint is kept.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from benchmark import (
    AdapterParams,
    Attack,
    AttackContext,
    PoisoningAttack,
    UsageError,
    hparam,
    insert_words,
    window_words,
)


class AddSent(PoisoningAttack, Attack):
    name = "addsent"
    version = "1"

    @dataclasses.dataclass(frozen=True)
    class Params(AdapterParams):
        trigger: str = hparam("I watch this 3D movie", nonempty=True)  # OpenBackdoor default (Dai et al. use task-specific sentences)
        poison_rate: float = hparam(0.1, range="[0, 1]")  # of the whole training set (OpenBackdoor)
        mode: Literal["dirty", "clean", "mix"] = "dirty"  # OpenBackdoor default is "mix"; see the docstring

    def check(self, ctx: AttackContext) -> None:
        words = self.params.trigger.split()
        if not words:
            raise UsageError(f"{self.name}: the trigger sentence is empty; set addsent.trigger to a sentence")
        pieces = ctx.tokenizer.tokenize(self.params.trigger)
        unknown = getattr(ctx.tokenizer, "unk_token", None)
        if unknown is not None and unknown in pieces:
            bad = [w for w in words if unknown in ctx.tokenizer.tokenize(w)]
            raise UsageError(
                f"{self.name}: trigger sentence {self.params.trigger!r} has words the victim's tokenizer does not "
                f"know ({', '.join(map(repr, bad))} -> {unknown}); choose another sentence with --set addsent.trigger=..."
            )
        if len(pieces) + 2 >= ctx.max_length:
            raise UsageError(f"{self.name}: the trigger sentence is {len(pieces)} word-pieces, which does not fit in "
                             f"max_length={ctx.max_length}")

    def insert_trigger(self, text: str, ctx: AttackContext, rng) -> str:
        # keep the whole sentence inside the window: reserve its pieces plus [SEP] and slack
        reserve = max(8, len(ctx.tokenizer.tokenize(self.params.trigger)) + 2)
        return insert_words(text, self.params.trigger.split(), rng,
                            window_words(ctx.tokenizer, text, ctx.max_length, reserve=reserve))
