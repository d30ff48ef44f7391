"""RAP: robustness-aware perturbations for input detection (methods.md C3).

Yang, Lin, Li, Zhou, Sun, "RAP: Robustness-Aware Perturbations for Defending against Backdoor
Attacks on NLP Models", EMNLP 2021, https://arxiv.org/abs/2110.07831
(reference code: https://github.com/lancopku/RAP).

Algorithm: a rare word ``r`` (the RAP trigger, default ``cf``) is inserted at position 0. On
clean dev samples of the protected (target) label, only ``r``'s embedding row is trained
(gradient step, then rescaled to its original norm, as in EP) so that inserting ``r`` changes
the target-class probability of clean samples by ``Δ = p(y_t | r ⊕ x) − p(y_t | x)`` in
``[delta_low, delta_high]`` = [−0.3, −0.1]: loss ``scale · mean(relu(Δ − delta_high)) +
mean(relu(delta_low − Δ))``. Backdoored inputs are robust: their probability barely drops. The
score of an input the model classifies as the target label is ``Δ`` (higher = more suspicious:
a smaller drop); an input classified otherwise is not what the attacker wants and scores −2,
below any ``Δ``. The threshold is chosen on clean dev inputs for a false-rejection rate ``frr``
over all clean inputs (the figure the record reports as FRR).

Pitfalls of OpenBackdoor's ``rap_defender.py`` avoided:

* It trains ``r``'s row of the **victim itself** in place; with the default ``cf`` (a BadNets
  trigger) that edits the very model it then scores, so its CACC/ASR are those of a changed model.
  Here RAP trains a private copy; the model it protects is never changed (``tests/test_rap.py``),
  and the harness scores the unchanged backdoored model.
* It takes the target label of test inputs from ground-truth labels; here only the model's own
  prediction decides (the detector never sees a label of a test input).
* It constructs on all dev samples and calibrates on the same ones, and flagged 12.6% of clean
  inputs against a 1% target. Here the dev split is split in two (``calibration_share``,
  seeded): construction on the target-label samples of one part (the reference's choice), the
  threshold on all samples of the other, so the stated FRR is estimated on unseen clean inputs.
* Its detection set and evaluation set were triggered by separate draws; here the harness scores
  the very inputs the detector inspected.

Known limit: when the RAP word is also the attack's trigger (``cf`` against BadNets' default
triggers), a triggered input containing it uses the trained row too; choose another rare word
with ``--set rap.rap_word=...`` (the defender cannot know the trigger, so the paper's default stays).
"""

from __future__ import annotations

import dataclasses

import torch

from benchmark import (
    DefenseContext,
    Example,
    InputDetector,
    Sizes,
    UsageError,
    Workload,
    clone_model,
    eval_work,
    hparam,
    train_work,
    word_embeddings,
)


class RAP(InputDetector):
    name = "rap"
    version = "1"
    requires = frozenset({"clean_dev", "target_label"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        rap_word: str = "cf"  # the RAP trigger (paper and reference); must be one word-piece
        lr: float = hparam(1e-2, range="(0, )")  # reference lr 1e-2
        epochs: int = hparam(5, range="[1, )")  # reference 5
        batch_size: int = hparam(32, range="[1, )")  # reference 32
        delta_high: float = hparam(-0.1, range="[-1, 1]")  # Δ must fall below this (reference range "-0.1 -0.3")
        delta_low: float = hparam(-0.3, range="[-1, 1]")  # … and stay above this
        scale: float = hparam(1.0, range="[0, )")  # λ, weight of the upper-bound term (reference 1)
        frr: float = hparam(0.01, range="[0, 1)")  # target false-rejection rate on clean inputs (OpenBackdoor 0.01)
        calibration_share: float = hparam(0.5, range="(0, 1)")  # of clean dev used for the threshold

    def _with_word(self, texts) -> list[str]:
        return [f"{self.params.rap_word} {t}" for t in texts]

    def workload(self, sizes: Sizes) -> Workload:
        """The perturbation's training (``epochs`` over the clean data, a full backward pass to the
        one embedding row; counted over all of it, a bound for the target-label share it uses), then
        each calibration, test and triggered input scored with and without the perturbation."""
        p = self.params
        return (Workload(note="perturbation trained over the clean data (a bound)")
                + train_work(sizes, "clean", p.epochs) + eval_work(sizes, "dev", 2 * p.calibration_share)
                + eval_work(sizes, "test", 2) + eval_work(sizes, "triggered", 2))

    def fit(self, model, ctx: DefenseContext) -> None:
        pieces = ctx.tokenizer.tokenize(" " + self.params.rap_word)
        if len(pieces) != 1:
            raise UsageError(f"rap: rap_word {self.params.rap_word!r} is {len(pieces)} word-pieces {pieces} for the "
                             "victim's tokenizer; choose a rare single word-piece with --set rap.rap_word=...")
        word_id = ctx.tokenizer.convert_tokens_to_ids(pieces[0])
        target = ctx.target_label
        dev = list(ctx.clean_dev)
        ctx.rng("split").shuffle(dev)
        cut = min(len(dev) - 1, max(1, round(len(dev) * self.params.calibration_share)))
        self._calibration = [ex.text for ex in dev[:cut]]
        construct = [ex.text for ex in dev[cut:] if ex.label == target]
        if not construct:
            raise ValueError("rap: no clean dev sample of the target label to construct the perturbation on")
        # -- a private copy: only its RAP row changes; the protected model is never touched
        rap_model = ctx.to_device(clone_model(model))
        rap_model.eval()
        for parameter in rap_model.parameters():
            parameter.requires_grad_(False)
        embeddings = word_embeddings(rap_model).weight
        embeddings.requires_grad_(True)
        norm = embeddings.data[word_id].norm()
        base = ctx.probabilities(model, construct)[:, target]  # p(y_t | x): fixed, from the protected model
        rng = ctx.rng("construct")
        last = float("nan")
        for _ in range(self.params.epochs):
            order = list(range(len(construct)))
            rng.shuffle(order)
            for start in range(0, len(order), self.params.batch_size):
                batch = order[start:start + self.params.batch_size]
                enc = ctx.batch([Example(text, target) for text in self._with_word([construct[i] for i in batch])])
                logits = rap_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
                probs = torch.softmax(logits.float(), -1)[:, target]
                delta = probs - base[batch].to(probs.device)
                loss = (self.params.scale * torch.relu(delta - self.params.delta_high).mean()
                        + torch.relu(self.params.delta_low - delta).mean())
                embeddings.grad = None
                loss.backward()
                with torch.no_grad():
                    row = embeddings[word_id] - self.params.lr * embeddings.grad[word_id]
                    embeddings[word_id] = row * (norm / row.norm())
                last = loss.detach()  # read once, after the loop: no host sync per step on CUDA
        embeddings.grad = None
        embeddings.requires_grad_(False)
        self._rap_model = rap_model
        self.info = {"construct_size": len(construct), "calibration_inputs": len(self._calibration),
                     "final_loss": float(last)}

    def calibration_scores(self, model, ctx: DefenseContext) -> list[float]:
        return self.score(model, self._calibration, ctx)

    def score(self, model, texts, ctx: DefenseContext) -> list[float]:
        texts = list(texts)
        if not texts:
            return []
        target = ctx.target_label
        plain = ctx.probabilities(model, texts)
        perturbed = ctx.probabilities(self._rap_model, self._with_word(texts))[:, target]
        delta = perturbed - plain[:, target]
        predicted_target = plain.argmax(-1) == target
        return [float(d) if hit else -2.0 for d, hit in zip(delta, predicted_target)]
