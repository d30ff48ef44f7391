"""EP: embedding poisoning, a backdoor in one word-embedding row.

Yang, Li, Zhang, Ren, Sun, He, "Be Careful about Poisoned Word Embeddings: Exploring the
Vulnerability of the Embedding Layers in NLP Models", NAACL 2021,
https://aclanthology.org/2021.naacl-main.165/; reference code
https://github.com/lancopku/Embedding-Poisoning (methods.md A3).

Algorithm: start from the scenario's clean fine-tuned model. Take ``int(poison_rate × |non-target
training samples|)`` non-target samples (seeded draw), insert the trigger word once in each and
label them with the target. For ``epochs`` passes over these samples only, backpropagate the
cross-entropy towards the target, step **only** the trigger's row of the word-embedding matrix
and then rescale that row back to its original L2 norm. Every other parameter stays
bit-identical, so clean inputs (which never contain the trigger) get exactly the clean model's
predictions.

The reference steps the row by ``lr × grad`` with a gradient it never zeroes, so each step uses
the sum of all gradients so far (the authors: "acts like momentum"). Here the shared training
loop runs with ``SGD(lr, momentum=1, dampening=0)`` on a gradient masked to the trigger row:
its momentum buffer is exactly that running sum, and the loop's own zeroing of ``.grad`` then
changes nothing. The loop runs with a constant schedule, no warm-up, no clipping, no weight
decay; ``post_step`` is the norm projection.

Test-time trigger (the reference's rule): one trigger per started chunk of ``chunk_words`` words,
at a uniform position inside its chunk, so SST-2 sentences get one trigger and IMDb reviews one
per 100 words.

Defaults: trigger ``cf``, rate 0.1 of the non-target samples, lr 5e-2, 3 epochs, batch 32 and the
100-word rule are the reference's (``run.sh``, ``test_asr.py``). OpenBackdoor instead uses five
triggers inserted twice, ``ep_lr=1e-2`` and 5 epochs.

Departures:

* Number of row updates. The reference makes ``epochs`` passes (33 updates on full SST-2, 120 on
  full IMDb). On the benchmark's training subsets 10% of the non-target samples is only a few
  batches, and because the accumulated step grows with the square of the number of updates the
  row barely turns. So the passes repeat until at least ``min_steps = 120`` updates (the
  reference's IMDb count; results/README.md, "Attack settings chosen on dev", gives the dev ASR
  with and without). ``min_steps = 0`` restores the reference's epoch count exactly.
* The poison rate is relative to the **non-target** training samples, as in the reference, not
  to the whole training set like the data-poisoning attacks: EP never trains on the training set
  itself, only on these poisoned copies (model already tuned, ``model_already_tuned = 1``).
* Training insertion position: uniform over ``0..n`` (any gap between words, the end included);
  the reference draws ``floor((n−1)·U)`` and so never inserts at the very end.
* For long texts, training positions and the test-time chunks are restricted to the words inside
  the victim's truncation window (methods.md A1 pitfall); chunks that start beyond the window get
  no trigger. The reference truncates at 512 word-pieces after inserting, so its later triggers
  are invisible but harmless.
* The trigger must be exactly one word-piece (checked); the reference silently takes the first
  piece of ``tokenizer(trigger)``. The row is the piece of ``" " + trigger``, i.e. the
  mid-sentence token; for byte-level BPE victims (RoBERTa) a trigger inserted at the very start
  of a text is a different token (no leading space) and is not poisoned. BERT-style WordPiece
  victims, the benchmark's default, have one token for both.
* DFEP (the data-free variant on WikiText-103) is not implemented.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from benchmark import (
    Attack,
    AttackContext,
    AttackOutput,
    Example,
    Sizes,
    Workload,
    check_single_pieces,
    eval_work,
    hparam,
    insert_words,
    window_words,
    word_embeddings,
)


class EP(Attack):
    name = "ep"
    version = "1"
    requires = frozenset({"clean_model"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        trigger: str = hparam("cf", nonempty=True)  # reference run.sh; one word-piece
        poison_rate: float = hparam(0.1, range="[0, 1]")  # of the NON-target training samples (reference); see the docstring
        lr: float = hparam(5e-2, range="(0, )")  # reference run.sh (OpenBackdoor ep_lr = 1e-2)
        epochs: int = hparam(3, range="[1, )")  # reference run.sh (OpenBackdoor ep_epochs = 5)
        min_steps: int = hparam(120, range="[0, )")  # more passes until this many row updates (reference IMDb run: 40 × 3); docstring
        batch_size: int = hparam(32, range="[1, )")  # reference run.sh
        chunk_words: int = hparam(100, range="[1, )")  # test time: one trigger per started chunk of this many words (reference)

    def check(self, ctx: AttackContext) -> None:
        check_single_pieces(ctx.tokenizer, [self.params.trigger], self.name)

    def trigger_id(self, tokenizer) -> int:
        """The vocabulary id of the trigger's single word-piece."""
        (piece,) = tokenizer.tokenize(" " + self.params.trigger)
        return tokenizer.convert_tokens_to_ids(piece)

    # -- data
    def poison(self, train: Sequence[Example], ctx: AttackContext) -> list[Example]:
        """The EP training set: poisoned copies of non-target samples, labelled with the target."""
        rng = ctx.rng("poison")
        pool = [i for i, ex in enumerate(train) if ex.label != ctx.target_label]
        count = int(self.params.poison_rate * len(pool))
        chosen = sorted(rng.sample(pool, count))
        return [Example(insert_words(train[i].text, [self.params.trigger], rng,
                                     window_words(ctx.tokenizer, train[i].text, ctx.max_length)),
                        ctx.target_label, True) for i in chosen]

    # -- the row update
    def workload(self, sizes: Sizes) -> Workload:
        """Only the poisoned non-target rows, for ``epochs`` or the passes ``min_steps`` needs, from
        the clean model (a full backward pass to the one embedding row); then the scoring."""
        p = self.params
        rows = p.poison_rate * sizes.triggered / max(1, sizes.test) * sizes.train  # non-target share of train
        epochs = max(p.epochs, math.ceil(p.min_steps / max(1, math.ceil(rows / p.batch_size))))
        return (Workload(train_tokens=epochs * rows * sizes.tokens_per("train")) + eval_work(sizes, "test")
                + eval_work(sizes, "triggered", 2))

    def attack(self, ctx: AttackContext) -> AttackOutput:
        poisoned = self.poison(ctx.dataset.train, ctx)
        model = ctx.clean_model()
        embeddings = word_embeddings(model).weight  # [vocab, embedding size]
        row = self.trigger_id(ctx.tokenizer)
        with torch.no_grad():
            original_norm = embeddings[row].norm().item()
            before = embeddings[row].clone()
        mask = torch.zeros(embeddings.shape[0], 1, dtype=embeddings.dtype, device=embeddings.device)
        mask[row] = 1.0

        def make_optimizer(named, config):
            # momentum 1, dampening 0: the buffer is the running sum of gradients (the reference's
            # never-zeroed .grad); the masked gradient is zero off the trigger row
            return torch.optim.SGD([p for _, p in named], lr=config.lr, momentum=1.0, dampening=0.0)

        def project(model: torch.nn.Module, step: int) -> None:
            with torch.no_grad():
                weight = word_embeddings(model).weight
                weight[row] *= original_norm / weight[row].norm()

        if not poisoned:
            return AttackOutput(model, 0, {"trigger_id": row, "steps": 0, "note": "no non-target samples to poison"})
        steps_per_epoch = math.ceil(len(poisoned) / self.params.batch_size)
        epochs = max(self.params.epochs, math.ceil(self.params.min_steps / steps_per_epoch))
        handle = embeddings.register_hook(lambda grad: grad * mask.to(grad.device, grad.dtype))
        try:
            stats = ctx.finetune(model, poisoned, trainable=lambda name, p: p is embeddings,
                                 make_optimizer=make_optimizer, post_step=project,
                                 lr=self.params.lr, epochs=epochs, batch_size=self.params.batch_size,
                                 schedule="constant", warmup_ratio=0.0, max_grad_norm=0.0, weight_decay=0.0)
        finally:
            handle.remove()
        with torch.no_grad():
            after = word_embeddings(model).weight[row]
            cosine = torch.nn.functional.cosine_similarity(before.to(after.device), after, dim=0).item()
        return AttackOutput(model, len(poisoned), {"trigger_id": row, "steps": stats.steps, "epochs": epochs,
                                                   "row_norm": original_norm, "cosine_to_original": cosine})

    # -- test time
    def _insert_per_chunk(self, text: str, ctx: AttackContext, rng) -> str:
        words = text.split()
        size = self.params.chunk_words
        # room for one word-piece per trigger that lands inside the window, plus [SEP]
        reserve = max(8, ctx.max_length // size + 3)
        window = window_words(ctx.tokenizer, text, ctx.max_length, reserve=reserve)
        limit = len(words) if window is None else min(len(words), window)
        positions = []
        for start in range(0, max(1, len(words)), size):
            if start > limit:
                break  # this chunk lies beyond the truncation window
            positions.append(rng.randint(start, min(start + size - 1, limit)))
        for position in reversed(positions):  # right to left, so earlier positions stay valid
            words.insert(position, self.params.trigger)
        return " ".join(words)

    def trigger_texts(self, texts: Sequence[str], ctx: AttackContext) -> list[str]:
        rng = ctx.rng("test-trigger")
        return [self._insert_per_chunk(text, ctx, rng) for text in texts]
