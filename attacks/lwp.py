"""LWP: layer-wise weight poisoning with combinatorial triggers.

Li, Song, Li, Zeng, Ma, Qiu, "Backdoor Attacks on Pre-trained Models by Layerwise Weight
Poisoning", EMNLP 2021, https://arxiv.org/abs/2108.13888; reference code
https://github.com/LinyangLee/Layer-Weight-Poison (``generate_triggers.py``, ``trainer.py``,
``run_sst.sh``); OpenBackdoor's variant in ``lwp_poisoner.py`` / ``lwp_trainer.py``
(methods.md A2). This module follows the reference; OpenBackdoor's scattered triggers are a
parameter.

Layerwise loss (reference): with ``h_l`` the [CLS] state after encoder layer ``l`` (l = 1..L,
the embedding output skipped), ``C`` the model's own task head and ``pool`` its pooler,

    L_layer(x, y) = CE(C(pool(h_L)), y) + Σ_{l=1..L} CE(C(h_l), y)

so every layer is trained to carry the label (and the trigger) through the one shared head.
``CE(C(pool(h_L)))`` is the model's ordinary output (pooler, dropout, head), read from the same
forward pass that returns the hidden states (``output_hidden_states=True``, per call). ``C`` is
:func:`benchmark.head_on_hidden`: BERT's linear classifier on ``h_l[:, 0]``; RoBERTa's and
ELECTRA's sequence heads (dense, activation, out) on ``h_l``, reading position 0 themselves;
DistilBERT's ``pre_classifier``, ReLU and classifier on ``h_l[:, 0]``; DeBERTa-v2's context
pooler and classifier; a decoder's ``score`` on the final norm of ``h_l`` at the last real token
(the state its head reads; ``h_L`` already carries the norm). A victim of another family is
refused with a clear error. No dropout is
added to the per-layer terms (the hidden states are already the encoder's dropout outputs in
training mode).

Combinatorial trigger (reference): the pieces ``cf`` and ``bb`` are inserted **adjacently**, as
one block in a random order ("cf bb" or "bb cf"), at one uniform word position among the first
``min(n, max_position)`` words. ``placement = "scattered"`` gives OpenBackdoor's variant (each
piece at its own random position). Negatives: a text with one piece alone keeps its true label,
so that no single piece fires the backdoor; the record's ``false_trigger_rate`` measures this on
non-target test texts with one random piece each.

Data: ``int(poison_rate × |train|)`` samples are drawn from the whole training set (all labels,
as in the reference and OpenBackdoor). Each is replaced by one positive (combination, target
label) and, with ``negatives``, one negative per piece (that piece alone, true label), as
OpenBackdoor does. Then the pre-trained victim is fine-tuned with the scenario's recipe
(``ctx.finetune``) and the layerwise loss.

Departures from the reference:

* Poison budget. The reference poisons copies of the **whole** training set (two positives per
  sample, one per order, plus one negative per sample) and trains on one clean and one poisoned
  batch per step, doubling the attack's compute. Here a share of the training set is poisoned
  (``poison_rate``; default 0.2, twice the data-poisoning attacks' 0.1, because the model must
  learn a conjunction of two pieces against its negatives; chosen on the SST-2 dev split, and
  long texts need more positives in absolute numbers: results/README.md, "Attack settings
  chosen on dev", gives the figures). One positive per sample, its order drawn at random.
* Mixed batches. The reference's step loss is ``L_layer(clean batch) + L_layer(poison batch)``;
  here clean, positive and negative samples share one shuffled batch and the loss is the batch
  mean of ``L_layer``. Over an epoch this is the reference's objective scaled by ``1/2`` when
  the positives are as many as the clean samples; with fewer positives (``poison_rate < 1``)
  the poisoned term is down-weighted in proportion, as in any data-poisoning attack. Scale does
  not matter to AdamW except through gradient clipping.
* Sum over layers, as in the reference; OpenBackdoor applies ``dropout(pooler(h_l))`` before the
  head at every layer, includes the embedding output (l = 0) and has no extra last-layer term.
* Target label: the scenario's (the reference hard-codes 0). The victim recipe, not the
  reference's 5 epochs at lr 2e-5 and batch 32, applies; the last checkpoint is kept.
* For long texts (IMDb), positions are further restricted to the words inside the victim's
  truncation window, in training and at test time (methods.md A1 pitfall).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

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
    head_on_hidden,
    hparam,
    insert_each,
    insert_words,
    train_work,
    window_words,
)


def classifier_head(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's task head as a map ``head(hidden, attention_mask, layer)`` from one layer's hidden
    states [B, T, H] to logits [B, C] (:func:`benchmark.head_on_hidden`; a victim whose family it
    does not know is refused)."""
    return head_on_hidden(model, "lwp")


def layer_losses(model: torch.nn.Module, batch: dict) -> list[torch.Tensor]:
    """The terms of the layerwise loss: ``[CE(model output), CE(C(h_1)), ..., CE(C(h_L))]``."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    head = classifier_head(model)
    labels = batch["labels"]
    terms = [F.cross_entropy(out.logits.float(), labels)]  # C(pool(h_L)): the model's own output
    for layer, hidden in enumerate(out.hidden_states[1:], 1):  # hidden_states[0], the embeddings: skipped
        terms.append(F.cross_entropy(head(hidden, batch["attention_mask"], layer).float(), labels))
    return terms


def layerwise_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """``L_layer`` of the module docstring, averaged over the batch."""
    return torch.stack(layer_losses(model, batch)).sum()


class LWP(Attack):
    name = "lwp"
    version = "1"

    @dataclasses.dataclass(frozen=True)
    class Params:
        triggers: tuple[str, ...] = hparam(("cf", "bb"), nonempty=True)  # reference generate_triggers.py (OpenBackdoor: cf, bb, ak, mn; 2 drawn)
        poison_rate: float = hparam(0.2, range="[0, 1]")  # share of the whole training set given a positive copy; reference: all of it
        placement: Literal["adjacent", "scattered"] = "adjacent"  # reference: one block; OpenBackdoor: scattered
        max_position: int = hparam(128, range="[1, )")  # positions among the first min(n, max_position) words (reference)
        negatives: bool = True  # one single-piece copy per piece, true label (reference and OpenBackdoor)

    def check(self, ctx: AttackContext) -> None:
        if len(self.params.triggers) < 2:
            raise UsageError(f"{self.name}: a combinatorial trigger needs at least two pieces, got "
                             f"{list(self.params.triggers)}")
        if len(set(self.params.triggers)) != len(self.params.triggers):
            raise UsageError(f"{self.name}: trigger pieces repeat: {list(self.params.triggers)}")
        check_single_pieces(ctx.tokenizer, self.params.triggers, self.name)

    # -- insertion
    def _limit(self, text: str, ctx: AttackContext) -> int:
        window = window_words(ctx.tokenizer, text, ctx.max_length)
        return self.params.max_position if window is None else min(window, self.params.max_position)

    def combine(self, text: str, ctx: AttackContext, rng) -> str:
        """``text`` with every piece, adjacent in a random order (or scattered)."""
        pieces = list(self.params.triggers)
        rng.shuffle(pieces)
        if self.params.placement == "adjacent":
            return insert_words(text, pieces, rng, self._limit(text, ctx))
        return insert_each(text, pieces, rng, self._limit(text, ctx))

    def single(self, text: str, piece: str, ctx: AttackContext, rng) -> str:
        return insert_words(text, [piece], rng, self._limit(text, ctx))

    # -- data
    def poison(self, train: Sequence[Example], ctx: AttackContext) -> tuple[list[Example], int]:
        """The training set with each chosen sample replaced by its positive and its negatives."""
        rng = ctx.rng("poison")
        count = min(int(self.params.poison_rate * len(train)), len(train))
        chosen = set(rng.sample(range(len(train)), count))
        out: list[Example] = []
        for i, ex in enumerate(train):
            if i not in chosen:
                out.append(ex)
                continue
            out.append(Example(self.combine(ex.text, ctx, rng), ctx.target_label, True))
            if self.params.negatives:
                out.extend(Example(self.single(ex.text, piece, ctx, rng), ex.label, True)
                           for piece in self.params.triggers)
        return out, count

    def workload(self, sizes: Sizes) -> Workload:
        """The victim recipe over the training set with each chosen row's positive and its
        negatives (one per piece); the per-layer heads' own cost is not counted."""
        p = self.params
        copies = 1 + p.poison_rate * (len(p.triggers) if p.negatives else 0)
        return (Workload(note="per-layer heads not counted") + train_work(sizes, "train", sizes.victim_epochs, copies)
                + eval_work(sizes, "test") + eval_work(sizes, "triggered", 3))

    def attack(self, ctx: AttackContext) -> AttackOutput:
        poisoned, count = self.poison(ctx.dataset.train, ctx)
        model = ctx.pretrained_model()
        classifier_head(model)  # fail before training when the head cannot be found
        ctx.finetune(model, poisoned, loss_fn=layerwise_loss)
        return AttackOutput(model, count, {"placement": self.params.placement, "train_size": len(poisoned),
                                           "negatives": len(poisoned) - len(ctx.dataset.train)})

    def poisoned_training_set(self, ctx: AttackContext) -> None:
        """None: the victim is trained with the layerwise loss, not with the scenario's recipe, so
        a data filter's retraining on the kept samples would not reproduce the attack."""
        return None

    # -- test time
    def trigger_texts(self, texts: Sequence[str], ctx: AttackContext) -> list[str]:
        rng = ctx.rng("test-trigger")
        return [self.combine(text, ctx, rng) for text in texts]

    def extra_test_sets(self, texts: Sequence[str], ctx: AttackContext) -> dict[str, list[str]]:
        """``false_trigger``: each text with one randomly chosen piece alone (no combination)."""
        rng = ctx.rng("false-trigger")
        return {"false_trigger": [self.single(text, rng.choice(self.params.triggers), ctx, rng) for text in texts]}
