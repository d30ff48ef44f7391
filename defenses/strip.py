"""STRIP: input detection by strong intentional perturbation, adapted to text (methods.md C2).

Gao, Xu, Wang, Chen, Ranasinghe, Nepal, "STRIP: A Defence Against Trojan Attacks on Deep Neural
Networks", ACSAC 2019, https://arxiv.org/abs/1902.06531; text version: Gao, Kim, Doan, Zhang,
Ranasinghe, Nepal, Abbott, "Design and Evaluation of a Multi-Domain Trojan Detection Method on
Deep Neural Networks", IEEE TDSC 2021, https://arxiv.org/abs/1911.10312.

Algorithm: for an input ``x`` of ``n`` words, make ``repeat`` perturbed copies; in each, replace
``max(1, int(swap_ratio × n))`` word positions (drawn with replacement) by the top-TF-IDF words
(English stop words removed) of one randomly drawn clean donor sample, in order of TF-IDF. The
score is minus the mean, over **x's own copies only**, of the Shannon entropy (bits) of the
model's class distribution: a trigger keeps the prediction confident whatever else changes, so
low entropy is suspicious. The threshold is chosen on clean dev inputs for a false-rejection
rate of ``frr``.

Departures and pitfalls avoided (OpenBackdoor's ``strip_defender.py``):

* OpenBackdoor reshapes the batch of perturbed copies' entropies so that one input's mean mixes
  the copies of different inputs (its "entropy reshape bug"); here each input's copies are
  indexed explicitly and its score uses only them (``tests/test_strip.py`` checks that an
  input's score does not depend on the other inputs).
* The clean dev split is split in two (``calibration_share``, seeded): the donors come from one
  part, the threshold from the other, so a calibration input is never its own donor.
* Each input's perturbations are drawn from a generator seeded by the scenario seed and the
  input's text: the score of an input does not depend on its position among the test inputs.
* OpenBackdoor replaces ``int(swap_ratio × n)`` words (none in a one-word text); at least one here.
* The detector only reads the model (eval mode, no gradients); it never changes it.
"""

from __future__ import annotations

import dataclasses
import math
import random

import torch

from benchmark import DefenseContext, InputDetector, Sizes, Workload, eval_work, hparam


class STRIP(InputDetector):
    name = "strip"
    version = "1"
    requires = frozenset({"clean_dev"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        repeat: int = hparam(5, range="[1, )")  # perturbed copies per input (OpenBackdoor repeat=5; RAP's re-implementation 20)
        swap_ratio: float = hparam(0.5, range="(0, 1]")  # share of words replaced (OpenBackdoor 0.5; RAP's 0.05)
        frr: float = hparam(0.01, range="[0, 1)")  # target false-rejection rate on clean inputs (OpenBackdoor 0.01)
        calibration_share: float = hparam(0.5, range="(0, 1)")  # of clean dev used for the threshold; the rest are donors
        batch_size: int = hparam(64, range="[1, )")  # forward-pass batch (no effect on the scores)

    def workload(self, sizes: Sizes) -> Workload:
        """``repeat`` perturbed copies of each calibration, test and triggered input, one forward
        pass each (the copies are counted at their source's length)."""
        share = self.params.calibration_share
        return (eval_work(sizes, "dev", share * self.params.repeat) + eval_work(sizes, "test", self.params.repeat)
                + eval_work(sizes, "triggered", self.params.repeat))

    def fit(self, model, ctx: DefenseContext) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        dev = [ex.text for ex in ctx.clean_dev]
        ctx.rng("split").shuffle(dev)
        cut = min(len(dev) - 1, max(1, round(len(dev) * self.params.calibration_share)))
        self._calibration, donors = dev[:cut], dev[cut:]
        vectorizer = TfidfVectorizer(stop_words="english")
        matrix = vectorizer.fit_transform(donors)
        vocabulary = vectorizer.get_feature_names_out()
        self._donor_words = []
        for row in range(matrix.shape[0]):
            values = matrix.getrow(row)
            ranked = sorted(zip(values.data, values.indices), key=lambda pair: (-pair[0], pair[1]))
            words = [str(vocabulary[i]) for _, i in ranked]
            if words:
                self._donor_words.append(words)
        if not self._donor_words:
            raise ValueError("strip: no donor words (the clean dev texts hold only stop words)")
        self.info = {"donors": len(self._donor_words), "calibration_inputs": len(self._calibration)}

    def calibration_scores(self, model, ctx: DefenseContext) -> list[float]:
        return self.score(model, self._calibration, ctx)

    def perturb(self, text: str, rng: random.Random) -> str:
        """One perturbed copy of ``text`` (the module docstring)."""
        words = text.split() or [""]
        count = max(1, int(len(words) * self.params.swap_ratio))
        donor = rng.choice(self._donor_words)
        for i in range(count):
            words[rng.randrange(len(words))] = donor[i % len(donor)]
        return " ".join(words)

    def copies(self, text: str, ctx: DefenseContext) -> list[str]:
        rng = random.Random(f"{ctx.seed}:strip:{text}")
        return [self.perturb(text, rng) for _ in range(self.params.repeat)]

    def entropies(self, model, texts, ctx: DefenseContext) -> list[float]:
        """Mean entropy (bits) of each input's own perturbed copies."""
        repeat = self.params.repeat
        perturbed = [copy for text in texts for copy in self.copies(text, ctx)]  # input i: [i*repeat, (i+1)*repeat)
        probs = ctx.probabilities(model, perturbed, self.params.batch_size)
        entropy = -(probs * torch.log2(probs.clamp_min(1e-12))).sum(-1)  # [len(texts) * repeat]
        per_input = entropy.view(len(texts), repeat)  # row i holds input i's copies only
        return [float(v) for v in per_input.mean(-1)] if len(texts) else []

    def score(self, model, texts, ctx: DefenseContext) -> list[float]:
        return [-h if math.isfinite(h) else 0.0 for h in self.entropies(model, list(texts), ctx)]
