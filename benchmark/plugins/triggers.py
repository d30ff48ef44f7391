"""Trigger insertion primitives shared by attack plugins (methods.md §1.2).

Text is split on whitespace into words; a trigger word is inserted before a uniformly drawn
word position ``p ∈ {0..n}``. For long texts, :func:`window_words` counts the words whose
word-pieces fit in the model's truncation window so that triggers can be kept inside it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

from ..base.errors import UsageError
from .params import hparam


@dataclasses.dataclass(frozen=True)
class AdapterParams:
    """The injection's training mode, for attacks that fine-tune the victim on poisoned data (a
    subclass's ``Params`` inherits it): with ``lora_rank`` > 0 the backdoor is injected through
    LoRA adapters of that rank on the family's default targets, the task head trained in full and
    the adapters merged after the phase (:mod:`benchmark.model.lora`), as parameter-efficient
    adaptation of decoders is attacked now. The papers' attacks fine-tune every weight (0, the
    default); these fields enter cache keys only when set, so published keys hold."""

    lora_rank: int = hparam(0, range="[0, )", keyed_when_set=True)  # 0: full fine-tuning; r: adapters of rank r
    lora_alpha: float = hparam(32.0, range="(0, )", keyed_when_set=True)  # peft's lora_alpha (scale alpha / r)
    lora_lr: float | None = hparam(None, range="(0, )", keyed_when_set=True)  # None: the scenario's victim lr


def adapter_recipe(params) -> dict:
    """The recipe changes :class:`AdapterParams` ask for (none at ``lora_rank`` 0), for ``ctx.finetune``."""
    if not getattr(params, "lora_rank", 0):
        return {}
    changes = {"lora_rank": params.lora_rank, "lora_alpha": params.lora_alpha}
    if params.lora_lr is not None:
        changes["lr"] = params.lora_lr
    return changes


def insert_words(text: str, words: Sequence[str], rng: random.Random, max_position: int | None = None) -> str:
    """Insert ``words`` as one block at a uniform position in ``0..min(n, max_position)``."""
    tokens = text.split()
    limit = len(tokens) if max_position is None else min(len(tokens), max_position)
    position = rng.randint(0, max(0, limit))
    return " ".join(tokens[:position] + list(words) + tokens[position:])


def insert_each(text: str, words: Sequence[str], rng: random.Random, max_position: int | None = None) -> str:
    """Insert each of ``words`` separately, each at a position drawn from the text as it stands."""
    for word in words:
        text = insert_words(text, [word], rng, max_position)
    return text


def window_words(tokenizer, text: str, max_length: int, reserve: int = 8) -> int | None:
    """How many leading words of ``text`` lie fully inside the first ``max_length - reserve``
    word-pieces (special tokens included), or None when the whole text fits."""
    budget = max_length - reserve
    # one piece past the budget tells "fits" from "cut" without encoding (and warning on) whole reviews
    encoded = tokenizer(text, add_special_tokens=True, truncation=True, max_length=budget + 1,
                        return_offsets_mapping=True)
    if len(encoded["input_ids"]) <= budget:
        return None
    offsets = [o for o in encoded["offset_mapping"][:budget] if o[1] > o[0]]
    end_char = offsets[-1][1] if offsets else 0
    return max(0, len(text[:end_char].split()) - 1)


def check_single_pieces(tokenizer, words: Sequence[str], plugin: str) -> None:
    """Raise when a trigger word is not exactly one word-piece of the victim's tokenizer."""
    for word in words:
        pieces = tokenizer.tokenize(" " + word)
        if len(pieces) != 1:
            raise UsageError(
                f"{plugin}: trigger {word!r} is {len(pieces)} word-pieces {pieces} for the victim's tokenizer; "
                "each trigger must be a single word-piece (choose another word with --set)."
            )


def trigger_pieces(tokenizer, words: Sequence[str]) -> dict[str, list[str]]:
    """Each word's pieces mid-sentence (after a space: BPE's leading-space form) for ``tokenizer``."""
    return {word: list(tokenizer.tokenize(" " + word)) for word in words}


def check_known_pieces(tokenizer, words: Sequence[str], plugin: str) -> None:
    """Raise when a trigger word has a piece the victim's tokenizer does not know (it would read
    as the unknown token, which ordinary text also produces)."""
    unknown = getattr(tokenizer, "unk_token", None)
    for word, pieces in trigger_pieces(tokenizer, words).items():
        if not pieces or (unknown is not None and unknown in pieces):
            raise UsageError(f"{plugin}: trigger {word!r} reads as {pieces} for the victim's tokenizer, which does "
                             "not know it; choose another word with --set")


def poison_by_mode(train: Sequence, mode: str, rate: float, target: int, rng: random.Random,
                   insert: Callable[[str], str]) -> tuple[list, int]:
    """OpenBackdoor's poisoning modes (methods.md §1.3): ``int(rate × |train|)`` samples drawn from
    the non-target samples (``dirty``), the target-label ones (``clean``) or all (``mix``),
    capped by the pool; each is replaced by ``insert(text)`` labelled ``target``. Returns the
    new training list (same order) and the number poisoned."""
    from ..data.examples import Example

    pool = [i for i, ex in enumerate(train)
            if mode == "mix" or (mode == "dirty" and ex.label != target) or (mode == "clean" and ex.label == target)]
    count = min(int(rate * len(train)), len(pool))
    chosen = set(rng.sample(pool, count))
    return [Example(insert(ex.text), target, True) if i in chosen else ex for i, ex in enumerate(train)], count


class PoisoningAttack:
    """Mixin for data-poisoning attacks (BadNets, AddSent): ``insert_trigger`` is the attack.

    ``poison`` replaces ``int(poison_rate × |train|)`` samples, drawn by ``mode``, with their
    triggered text labelled as the target; ``attack`` fine-tunes the pre-trained victim on the
    result with the scenario's recipe (through adapters where its ``Params`` inherit
    :class:`AdapterParams` and set a rank); ``trigger_texts`` (the test-time trigger) applies the same
    insertion. The subclass's ``Params`` has ``poison_rate`` and ``mode``.
    """

    def insert_trigger(self, text: str, ctx, rng: random.Random) -> str:
        raise NotImplementedError

    def poison(self, train: Sequence, ctx) -> tuple[list, int]:
        """The poisoned training set (poisoned samples replace their originals) and the count."""
        rng = ctx.rng("poison")
        return poison_by_mode(train, self.params.mode, self.params.poison_rate, ctx.target_label, rng,
                              lambda text: self.insert_trigger(text, ctx, rng))

    def attack(self, ctx):
        from .attack import AttackOutput

        poisoned, count = self.poison(ctx.dataset.train, ctx)
        model = ctx.pretrained_model()
        ctx.finetune(model, poisoned, **adapter_recipe(self.params))
        return AttackOutput(model, count, {"mode": self.params.mode})

    def trigger_texts(self, texts: Sequence[str], ctx) -> list[str]:
        rng = ctx.rng("test-trigger")
        return [self.insert_trigger(text, ctx, rng) for text in texts]
