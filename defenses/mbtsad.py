"""MBTSAD: backdoor mitigation by token splitting and attention distillation (methods.md B7).

Yidong Ding, Jiafei Niu, Ping Yi, "MBTSAD: Mitigating Backdoors in Language Models Based on
Token Splitting and Attention Distillation", arXiv:2501.02754, 2025,
https://arxiv.org/abs/2501.02754. No public code; settings come from the project brief.

Algorithm (needs the clean subset only, no pre-trained weights):
1. Split: each clean sample gets ``copies`` augmented copies; in each copy ``split_rate`` of the
   tokens are cut in two at a random interior character ("beauty" -> "be auty"); labels kept.
2. Retrain: a copy of the backdoored model M_b is fine-tuned on clean ∪ augmentations at
   ``teacher_lr`` -> M_p, the teacher.
3. Distill: the teacher is frozen (eval mode, no grad); the student M_b is trained at
   ``student_lr`` on L = L_cls + alpha·L_a + beta·L_h, with L_a the self-attention maps and L_h
   the hidden states of ``layers``, padding masked (``benchmark.model.distill``). The student is
   returned; the teacher is scored beside it (``aux.teacher``).

Defaults and their sources. Brief: copies 3, split_rate 0.3, teacher_lr 2e-5, student_lr 5e-4,
20% clean data (the harness's ``clean_fraction``). Unknown (paper body unavailable), our reading:
* token = whitespace word (``unit="word"``): the paper's example cuts a whole word; ``"wordpiece"``
  cuts the victim tokenizer's word-pieces (offsets into the text) instead.
* splittable = at least 2 characters with a letter or digit; 1-character tokens and pure
  punctuation are never cut. The share is of *all* tokens: a copy of an n-token text gets
  round(split_rate·n) cuts (stochastic rounding, so the expected share is exact), drawn among the
  splittable tokens and capped by their number.
* ``split_rate = 0`` is the "no token splitting" control: the ``copies`` are unsplit duplicates,
  so stage 1 takes as many steps on the same texts and only the splitting differs (version 1
  dropped the copies, which also cut stage 1's steps by 1 + ``copies``); ``copies = 0`` retrains on
  the clean subset alone.
* stage 2 data: the clean subset (``distill_data="clean"``), as in NAD, which stage 2 follows;
  ``"augmented"`` distils on clean ∪ augmentations.
* epochs: the shared defense recipe's (Budget.defense_training) for both stages; warm-up 10% and clipping 1.0 kept.
* alpha 100, beta 1 (paper values unknown): L_a is a per-entry MSE of attention probabilities and
  L_h a per-dimension MSE of hidden states, so both are small numbers; the weights put each
  weighted term at the order of L_cls. ``info`` records each term at the first and last step.
* layers: every encoder layer; distance: MSE over valid query/key pairs, averaged over heads.
* the student's dropout is off in stage 2 (``student_dropout=False``): HF returns attention maps
  after attention dropout, which the teacher's eval-mode maps never match (distill.py pitfall).
* ``data_share`` further subsamples the clean subset (the clean-data-amount ablation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import re
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from benchmark import (
    Defense,
    DefenseContext,
    DefenseOutput,
    Example,
    Sizes,
    UsageError,
    Workload,
    attention_map_loss,
    eval_work,
    forward_pair,
    hidden_state_loss,
    hparam,
    resolve_layers,
    train_work,
)

Span = tuple[int, int]  # [start, end) character offsets of one token in a text


# --------------------------------------------------------------------------- 1. token splitting

def word_spans(text: str) -> list[Span]:
    """Whitespace-separated words."""
    return [m.span() for m in re.finditer(r"\S+", text)]


def wordpiece_spans(tokenizer) -> Callable[[str], list[Span]]:
    """The victim tokenizer's word-pieces (a fast tokenizer's offsets; special tokens left out)."""
    def spans(text: str) -> list[Span]:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return [(s, e) for s, e in offsets if e > s]
    return spans


def splittable(token: str) -> bool:
    return len(token) >= 2 and any(c.isalnum() for c in token)


def split_text(text: str, spans: Sequence[Span], rate: float, rng: random.Random) -> str:
    """``text`` with round(rate·len(spans)) splittable tokens cut by a space at a random interior point."""
    candidates = [(s, e) for s, e in spans if splittable(text[s:e])]
    expected = rate * len(spans)
    count = min(int(expected) + (rng.random() < expected - int(expected)), len(candidates))
    cuts = sorted(rng.randint(s + 1, e - 1) for s, e in rng.sample(candidates, count))
    pieces, last = [], 0
    for cut in cuts:
        pieces.append(text[last:cut])
        last = cut
    pieces.append(text[last:])
    return " ".join(pieces)


def token_split(examples: Sequence[Example], rng: random.Random, *, copies: int = 3, rate: float = 0.3,
                spans: Callable[[str], list[Span]] = word_spans) -> list[Example]:
    """``copies`` split copies of each example, in order, labels kept (the augmentations only)."""
    return [Example(split_text(ex.text, spans(ex.text), rate, rng), ex.label)
            for ex in examples for _ in range(copies)]


# --------------------------------------------------------------------------- 3. distillation terms

def distill_terms(student, teacher, batch: dict, layers: Sequence[int], *, attentions: bool = True,
                  hidden: bool = True, distance: Literal["mse", "kl"] = "mse") -> dict[str, torch.Tensor]:
    """L_cls, L_a and L_h on one batch (a switched-off term is a zero tensor, not computed)."""
    out_s, out_t = forward_pair(student, teacher, batch, attentions=attentions, hidden_states=hidden)
    terms = {"cls": F.cross_entropy(out_s.logits.float(), batch["labels"])}
    zero = terms["cls"].new_zeros(())
    mask = batch["attention_mask"]
    terms["attention"] = (attention_map_loss(out_s.attentions, out_t.attentions, mask, layers, distance)
                          if attentions else zero)
    terms["hidden"] = hidden_state_loss(out_s.hidden_states, out_t.hidden_states, mask, layers) if hidden else zero
    return terms


@contextlib.contextmanager
def dropout_off(model: torch.nn.Module, off: bool = True):
    """Every dropout module of ``model`` at p = 0 inside the block (attention dropout included)."""
    saved = [(m, m.p) for m in model.modules() if isinstance(m, torch.nn.Dropout)] if off else []
    for module, _ in saved:
        module.p = 0.0
    try:
        yield model
    finally:
        for module, p in saved:
            module.p = p


class MBTSAD(Defense):
    name = "mbtsad"
    version = "2"
    requires = frozenset({"clean_data"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        copies: int = hparam(3, range="[0, )")  # N augmented copies per clean sample (brief)
        split_rate: float = hparam(0.3, range="[0, 1]")  # share of the tokens cut per copy (brief); 0: unsplit copies (control)
        unit: Literal["word", "wordpiece"] = "word"  # what a token is (our reading: whitespace word)
        teacher_lr: float = hparam(2e-5, range="(0, )")  # stage 1 retraining lr (brief)
        teacher_epochs: int | None = hparam(None, range="[1, )")  # None: the shared defense recipe's epochs; paper value unknown
        student_lr: float = hparam(5e-4, range="(0, )")  # stage 2 distillation lr (brief)
        student_epochs: int | None = hparam(None, range="[1, )")  # None: the shared defense recipe's epochs; paper value unknown
        alpha: float = hparam(100.0, range="[0, )")  # weight of L_a, attention maps (paper value unknown; our scale reading)
        beta: float = hparam(1.0, range="[0, )")  # weight of L_h, hidden states (paper value unknown; our scale reading)
        layers: tuple[int, ...] = hparam((), range="[1, )")  # 1-based encoder layers for L_a and L_h; () = all
        distance: Literal["mse", "kl"] = "mse"  # attention-map distance (TinyBERT-style MSE)
        distill_data: Literal["clean", "augmented"] = "clean"  # stage 2 data (our reading: clean, as NAD)
        student_dropout: bool = False  # dropout in the student during stage 2 (off: clean maps)
        data_share: float = hparam(1.0, range="(0, 1]")  # share of ctx.clean_data used (clean-data-amount ablation)

    def workload(self, sizes: Sizes) -> Workload:
        """Stage 1 on the clean share and its split copies; stage 2's student on the distillation
        data with the frozen teacher's forward pass at every step (split copies counted at the
        clean data's mean length)."""
        p = self.params
        teacher = p.teacher_epochs if p.teacher_epochs is not None else sizes.defense_epochs
        student = p.student_epochs if p.student_epochs is not None else sizes.defense_epochs
        data = p.data_share * (1 + p.copies)
        distill = data if p.distill_data == "augmented" else p.data_share
        return (train_work(sizes, "clean", teacher, data) + train_work(sizes, "clean", student, distill)
                + eval_work(sizes, "clean", student * distill))

    def purify(self, model, ctx: DefenseContext) -> DefenseOutput:
        p = self.params
        if not (0.0 <= p.split_rate <= 1.0 and 0.0 < p.data_share <= 1.0 and p.copies >= 0):
            raise UsageError(f"mbtsad: need 0 <= split_rate <= 1, 0 < data_share <= 1, copies >= 0; got {p}")
        clean = list(ctx.clean_data)
        if p.data_share < 1.0:
            clean = ctx.rng("data_share").sample(clean, max(1, math.ceil(p.data_share * len(clean))))

        # -- 1. token splitting (split_rate 0: unsplit duplicates, the control for the splitting itself)
        spans = word_spans if p.unit == "word" else wordpiece_spans(ctx.tokenizer)
        augmented = token_split(clean, ctx.rng("token_split"), copies=p.copies, rate=p.split_rate, spans=spans)

        # -- 2. retrain a copy of M_b on clean ∪ augmentations -> teacher M_p, then freeze it
        teacher = ctx.train_teacher(model, clean + augmented, lr=p.teacher_lr, epochs=p.teacher_epochs)

        # -- 3. attention distillation into the student M_b
        layers = resolve_layers(p.layers, model.config.num_hidden_layers, self.name)
        first: dict[str, torch.Tensor] = {}
        last: dict[str, torch.Tensor] = {}  # kept on the device, read once at the end: no host sync per step

        def loss_fn(student, batch):
            terms = distill_terms(student, teacher, batch, layers, attentions=p.alpha > 0, hidden=p.beta > 0,
                                  distance=p.distance)
            last.update({k: v.detach() for k, v in terms.items()})
            if not first:
                first.update(last)
            return terms["cls"] + p.alpha * terms["attention"] + p.beta * terms["hidden"]

        data = clean + augmented if p.distill_data == "augmented" else clean
        with dropout_off(model, off=not p.student_dropout):
            ctx.finetune(model, data, loss_fn=loss_fn, lr=p.student_lr, epochs=p.student_epochs)
        return DefenseOutput(model, aux_models={"teacher": teacher}, info={
            "clean_size": len(clean), "augmented_size": len(augmented), "distill_size": len(data),
            "loss_first": {k: float(v) for k, v in first.items()},
            "loss_last": {k: float(v) for k, v in last.items()}})
