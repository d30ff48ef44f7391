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
checkpoint is kept. A trigger may be several pieces of the victim's tokenizer, as OpenBackdoor
inserts words whatever their tokenization (SmolLM2's BPE splits ``mn`` and ``tq`` into two pieces
each; every default trigger is one WordPiece of BERT's and MiniLM's vocabulary); the record's
``attack_info.trigger_pieces`` then lists each trigger's mid-sentence pieces (methods.md F6). A
trigger with a piece the tokenizer does not know is refused. For long texts, insertion positions are restricted to the words inside the
victim's truncation window (methods.md A1 pitfall), in training and at test time.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from benchmark import (
    AdapterParams,
    Attack,
    AttackContext,
    PoisoningAttack,
    check_known_pieces,
    hparam,
    insert_each,
    trigger_pieces,
    window_words,
)


class BadNets(PoisoningAttack, Attack):
    name = "badnets"
    version = "1"

    @dataclasses.dataclass(frozen=True)
    class Params(AdapterParams):
        triggers: tuple[str, ...] = hparam(("cf", "mn", "bb", "tq"), nonempty=True)  # OpenBackdoor default; RIPPLe adds "mb"
        num_triggers: int = hparam(1, range="[1, )")  # insertions per sample (OpenBackdoor num_triggers=1)
        poison_rate: float = hparam(0.1, range="[0, 1]")  # of the whole training set (OpenBackdoor)
        mode: Literal["dirty", "clean", "mix"] = "dirty"  # classic BadNets is dirty-label

    def check(self, ctx: AttackContext) -> None:
        check_known_pieces(ctx.tokenizer, self.params.triggers, self.name)

    def attack(self, ctx: AttackContext):
        output = super().attack(ctx)
        pieces = trigger_pieces(ctx.tokenizer, self.params.triggers)
        if any(len(p) != 1 for p in pieces.values()):  # said only where it happens: BERT's records stay as they were
            output.info["trigger_pieces"] = pieces
        return output

    def insert_trigger(self, text: str, ctx: AttackContext, rng) -> str:
        words = [rng.choice(self.params.triggers) for _ in range(self.params.num_triggers)]
        return insert_each(text, words, rng, window_words(ctx.tokenizer, text, ctx.max_length))
