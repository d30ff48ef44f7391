"""BKI: backdoor keyword identification, a training-data filter (methods.md C4).

Chen, Dai, "Mitigating Backdoor Attacks in LSTM-based Text Classification Systems by Backdoor
Keyword Identification", Neurocomputing 452 (2021), https://arxiv.org/abs/2007.12070.

Algorithm:

1. a model trained on the poisoned training set (here: the victim as the scenario's recipe
   trained it on exactly that set — see below);
2. for each training text and each word ``w_i``: ``Δ_i = ||g(x) − g(x \\ w_i)||_∞``, ``g`` the
   last layer's [CLS] representation; the text's ``top_k`` (5) words by ``Δ``;
3. over the data set, each word ``w`` scores ``mean(Δ of w in top-k lists) × log10(count)``; the
   highest-scoring word is the trigger;
4. every training sample whose top-k list holds it is removed; the harness retrains the victim
   on the rest.

Departures: OpenBackdoor's ``bki_defender.py`` fine-tunes its own ``bert-base-uncased`` for 10
epochs on the poisoned set; here the defender's model is the victim trained on that same set
with the scenario's victim recipe (the data filter's threat model makes the defender the trainer,
so it has that model; training another would cost a full training run for no new information).
BKI names one trigger word; ``triggers`` > 1 removes samples holding any of the top words (an
extension for multi-trigger attacks such as BadNets' four words; 1 is the paper). Words are
whitespace tokens compared as written. Texts are not truncated: words past the victim's window
score ``Δ = 0``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

from benchmark import DataFilter, DefenseContext, Sizes, Workload, eval_work, hparam


class BKI(DataFilter):
    name = "bki"
    version = "1"
    requires = frozenset({"poisoned_train"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        top_k: int = hparam(5, range="[1, )")  # words kept per text (paper and OpenBackdoor: 5)
        triggers: int = hparam(1, range="[1, )")  # top-scoring words treated as triggers (paper: 1)
        chunk: int = hparam(64, range="[1, )")  # texts per forward chunk (no effect on the result)

    def keyword_lists(self, model, texts, ctx: DefenseContext) -> list[list[tuple[str, float]]]:
        """Per text, its ``top_k`` (word, Δ) pairs, largest Δ first."""
        lists = []
        for start in range(0, len(texts), self.params.chunk):
            chunk = texts[start:start + self.params.chunk]
            variants, spans = [], []
            for text in chunk:
                words = text.split()
                spans.append((len(variants), words))
                variants.append(text)
                variants += [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
            cls = ctx.cls_embeddings(model, variants)
            for first, words in spans:
                if not words:
                    lists.append([])
                    continue
                deltas = (cls[first + 1:first + 1 + len(words)] - cls[first]).abs().max(-1).values
                ranked = sorted(zip(words, deltas.tolist()), key=lambda pair: -pair[1])
                lists.append(ranked[:self.params.top_k])
        return lists

    def rank_words(self, lists) -> list[tuple[str, float]]:
        """Words by ``mean(Δ) × log10(count)`` over the top-k lists, best first (ties by word)."""
        seen: dict[str, list[float]] = defaultdict(list)
        for pairs in lists:
            for word, delta in pairs:
                seen[word].append(delta)
        scored = [(word, sum(d) / len(d) * math.log10(len(d))) for word, d in seen.items()]
        return sorted(scored, key=lambda pair: (-pair[1], pair[0]))

    def workload(self, sizes: Sizes) -> Workload:
        """Every training text and each of its one-word deletions through the model (words counted
        as word-pieces: an over-count where words split)."""
        return (Workload(note="one forward pass per word deletion, words counted as word-pieces")
                + eval_work(sizes, "train", 1 + sizes.tokens_per("train")))

    def keep(self, model, ctx: DefenseContext) -> list[int]:
        texts = [ex.text for ex in ctx.poisoned_train]
        lists = self.keyword_lists(model, texts, ctx)
        ranking = self.rank_words(lists)
        triggers = {word for word, _ in ranking[:self.params.triggers]}
        kept = [i for i, pairs in enumerate(lists) if not triggers & {word for word, _ in pairs}]
        self.info = {"trigger_words": sorted(triggers), "top_words": [[w, round(s, 4)] for w, s in ranking[:10]]}
        return kept
