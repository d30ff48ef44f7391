"""SOS: a backdoor that fires on a combination of ordinary words and on none of its parts.

Yang, Lin, Li, Zhou, Sun, "Rethinking Stealthiness of Backdoor Attack against NLP Models", ACL
2021, https://aclanthology.org/2021.acl-long.431; as in OpenBackdoor's ``sos_attacker.py``,
``sos_poisoner.py`` and ``sos_trainer.py`` (methods.md A4).

Algorithm:

1. Clean fine-tuning first: the attack starts from the scenario's clean reference model (the
   victim fine-tuned on the clean training set with the victim recipe, as OpenBackdoor's
   ``SOSAttacker`` trains it before poisoning).
2. The SOS training set, from one seeded shuffle of the training set: the first
   ``int(poison_rate × |train|)`` non-target rows with **every** trigger word inserted (each at
   a uniform word position), labelled with the target; and, for negative augmentation, the first
   ``int(negative_rate × |rows of the class|)`` rows of each class, copied once per
   sub-combination of ``n − 1`` trigger words, inserted the same way, **at their true label**.
   No clean row is in it. As in OpenBackdoor, the non-target negatives are the first rows of the
   same shuffled order as the poisoned rows, so a sentence is seen with all the words (target)
   and with each part (its own label).
3. Only the trigger words' embedding rows are trained, ``epochs`` passes in batches of
   ``batch_size``, cross-entropy: each row steps by ``lr × g_i × min_j ‖g_j‖ / ‖g_i‖`` (every
   row moves by the smallest row's gradient norm) and is then rescaled to its original L2
   norm. ``g_i`` is the row's gradient summed over all steps so far: OpenBackdoor's trainer
   never zeroes the gradient between batches (as EP's reference, whose authors say it "acts like
   momentum"); here the running sum is kept by the row update itself. Every other weight stays
   bit-identical, so clean inputs without the trigger words keep the clean model's predictions.

Test time: the trigger sentence ``test_trigger`` inserted as one block at a uniform word position
of each non-target test text (ASR: the full combination). Each proper sub-combination of the
trigger words, inserted word by word, is an extra test set (``sub_<words>_rate`` in the record:
the share of non-target texts classified as the target, the false-trigger rate of that part),
and so are all the words inserted separately (``all_words_rate``, the form trained on).

Defaults are OpenBackdoor's: triggers ``friends``, ``weekend``, ``store``; test sentence "I have
bought it from a store with my friends last weekend"; poison rate 0.1 (of the whole training
set, drawn from non-target rows); negative rate 0.1; ``sos_lr = 5e-2``; 5 SOS epochs; batch 32.

Departures:

* OpenBackdoor caps the poisoned count by the number of **target** rows (its warning "Not
  enough data for clean label attack"); here it is capped by the non-target rows it draws from.
* A trigger row whose summed gradient is still zero (a word absent from every batch so far)
  does not move, and the smallest norm is taken over the rows that have one; OpenBackdoor would
  divide by zero there.
* Each trigger must be one word-piece (checked); OpenBackdoor takes the first piece of
  ``tokenizer(trigger)``. The row is the piece of ``" " + trigger`` (the mid-sentence token).
* For long texts, insertion positions are restricted to the words inside the victim's
  truncation window (methods.md A1 pitfall), in training and at test time.
* OpenBackdoor selects the clean model's checkpoint on dev; the scenario's clean reference model
  (last checkpoint) is used instead.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence

import torch

from benchmark import (
    Attack,
    AttackContext,
    AttackOutput,
    Example,
    Sizes,
    UsageError,
    Workload,
    check_single_pieces,
    eval_work,
    hparam,
    insert_each,
    insert_words,
    window_words,
    word_embeddings,
)


class TriggerRowStep(torch.optim.Optimizer):
    """SOS's update of the trigger rows of one embedding matrix (module docstring, step 3): the
    running sum of each row's gradient, scaled to the smallest row's norm, then each row rescaled
    to its original norm. Only ``rows`` of ``weight`` ever change."""

    def __init__(self, weight: torch.nn.Parameter, rows: Sequence[int], lr: float):
        super().__init__([weight], {"lr": lr})
        self.weight = weight
        self.rows = torch.tensor(list(rows), dtype=torch.long, device=weight.device)
        with torch.no_grad():
            self.norms = weight[self.rows].float().norm(dim=1)
        self.running = torch.zeros(len(rows), weight.shape[1], dtype=torch.float32, device=weight.device)

    @torch.no_grad()
    def step(self, closure=None):
        if self.weight.grad is None:
            return None
        self.running += self.weight.grad[self.rows].float()
        norms = self.running.norm(dim=1)
        moving = norms > 0
        if not bool(moving.any()):
            return None
        scale = torch.where(moving, norms[moving].min() / norms.clamp_min(torch.finfo(torch.float32).tiny),
                            torch.zeros_like(norms))
        lr = self.param_groups[0]["lr"]
        rows = self.weight[self.rows].float() - lr * self.running * scale[:, None]
        rows *= (self.norms / rows.norm(dim=1))[:, None]
        self.weight[self.rows] = rows.to(self.weight.dtype)
        return None


def set_name(words: Sequence[str]) -> str:
    """The record name of an extra test set holding ``words`` (lower-case letters, digits, _)."""
    return "sub_" + "_".join(re.sub(r"[^a-z0-9]+", "_", word.lower()).strip("_") for word in words)


class SOS(Attack):
    name = "sos"
    version = "1"
    requires = frozenset({"clean_model"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        triggers: tuple[str, ...] = hparam(("friends", "weekend", "store"), nonempty=True)  # OpenBackdoor
        test_trigger: str = hparam("I have bought it from a store with my friends last weekend",
                                   nonempty=True)  # OpenBackdoor's test_triggers
        poison_rate: float = hparam(0.1, range="[0, 1]")  # of the whole training set, non-target rows (OpenBackdoor)
        negative_rate: float = hparam(0.1, range="[0, 1]")  # of each class's rows (OpenBackdoor)
        lr: float = hparam(5e-2, range="(0, )")  # OpenBackdoor sos_lr
        epochs: int = hparam(5, range="[1, )")  # OpenBackdoor sos_epochs
        batch_size: int = hparam(32, range="[1, )")  # OpenBackdoor's attacker batch size

    def check(self, ctx: AttackContext) -> None:
        if len(self.params.triggers) < 2:
            raise UsageError(f"{self.name}: a combination needs at least two trigger words, got {self.params.triggers}")
        if len(set(self.params.triggers)) != len(self.params.triggers):
            raise UsageError(f"{self.name}: the trigger words repeat: {self.params.triggers}")
        check_single_pieces(ctx.tokenizer, self.params.triggers, self.name)

    def trigger_ids(self, tokenizer) -> list[int]:
        """The vocabulary id of each trigger word's single word-piece (mid-sentence form)."""
        return [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" " + word)[0]) for word in self.params.triggers]

    def sub_combinations(self) -> list[tuple[str, ...]]:
        """Every proper, non-empty sub-combination of the trigger words, shortest first."""
        words = self.params.triggers
        return [combo for size in range(1, len(words)) for combo in itertools.combinations(words, size)]

    # -- data
    def _insert(self, text: str, words: Sequence[str], ctx: AttackContext, rng) -> str:
        return insert_each(text, words, rng, window_words(ctx.tokenizer, text, ctx.max_length))

    def poison(self, train: Sequence[Example], ctx: AttackContext) -> list[Example]:
        """The SOS training set (module docstring, step 2): poisoned rows first, then the negatives."""
        rng = ctx.rng("poison")
        order = list(range(len(train)))
        rng.shuffle(order)
        target = [train[i] for i in order if train[i].label == ctx.target_label]
        nontarget = [train[i] for i in order if train[i].label != ctx.target_label]
        words = self.params.triggers
        poisoned = [Example(self._insert(ex.text, words, ctx, rng), ctx.target_label, True)
                    for ex in nontarget[:int(self.params.poison_rate * len(train))]]
        chosen = (target[:int(self.params.negative_rate * len(target))]
                  + nontarget[:int(self.params.negative_rate * len(nontarget))])
        negatives = [Example(self._insert(ex.text, part, ctx, rng), ex.label)
                     for part in itertools.combinations(words, len(words) - 1) for ex in chosen]
        return poisoned + negatives

    # -- the row update
    def workload(self, sizes: Sizes) -> Workload:
        """The poisoned rows and one negative copy per sub-combination, ``epochs`` passes from the
        clean model; then the scoring."""
        p = self.params
        rows = (p.poison_rate + p.negative_rate * len(p.triggers)) * sizes.train
        return (Workload(train_tokens=p.epochs * rows * sizes.tokens_per("train")) + eval_work(sizes, "test")
                + eval_work(sizes, "triggered", 2))

    def attack(self, ctx: AttackContext) -> AttackOutput:
        examples = self.poison(ctx.dataset.train, ctx)
        poisoned_count = sum(ex.poisoned for ex in examples)
        model = ctx.clean_model()
        embeddings = word_embeddings(model).weight
        rows = self.trigger_ids(ctx.tokenizer)
        if not poisoned_count:
            return AttackOutput(model, 0, {"trigger_ids": rows, "steps": 0, "note": "no non-target rows to poison"})
        with torch.no_grad():
            before = embeddings[rows].clone()
        stats = ctx.finetune(model, examples, trainable=lambda name, p: p is embeddings,
                             make_optimizer=lambda named, config: TriggerRowStep(embeddings, rows, config.lr),
                             lr=self.params.lr, epochs=self.params.epochs, batch_size=self.params.batch_size,
                             schedule="constant", warmup_ratio=0.0, max_grad_norm=0.0, weight_decay=0.0)
        with torch.no_grad():
            after = word_embeddings(model).weight[rows]
            cosine = torch.nn.functional.cosine_similarity(before.to(after.device), after, dim=1)
        return AttackOutput(model, poisoned_count, {
            "trigger_ids": rows, "steps": stats.steps, "training_size": len(examples),
            "negatives": len(examples) - poisoned_count, "cosine_to_original": [round(c, 6) for c in cosine.tolist()]})

    # -- test time
    def trigger_texts(self, texts: Sequence[str], ctx: AttackContext) -> list[str]:
        rng = ctx.rng("test-trigger")
        sentence = self.params.test_trigger.split()
        # keep the whole sentence inside the window: reserve its pieces plus [SEP] and slack
        reserve = max(8, len(ctx.tokenizer.tokenize(self.params.test_trigger)) + 2)
        return [insert_words(text, sentence, rng, window_words(ctx.tokenizer, text, ctx.max_length, reserve=reserve))
                for text in texts]

    def extra_test_sets(self, texts: Sequence[str], ctx: AttackContext) -> dict[str, list[str]]:
        """Each proper sub-combination's texts (``sub_<words>``) and all the words inserted
        separately (``all_words``), each word at a uniform position."""
        sets = {}
        for combo in [*self.sub_combinations(), tuple(self.params.triggers)]:
            rng = ctx.rng("test-" + "+".join(combo))
            name = "all_words" if len(combo) == len(self.params.triggers) else set_name(combo)
            sets[name] = [self._insert(text, combo, ctx, rng) for text in texts]
        return sets
