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

* ``lm``: any causal LM id or folder (safetensors weights; ``trust_remote_code`` off). The
  reference uses GPT-2 large, OpenBackdoor GPT-2 small (the default here, ``gpt2``, from the
  Hugging Face hub or its cache). Without one, the cell fails with one error saying how to give one.
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

import torch

from benchmark import DefenseContext, InputCorrector, UsageError, hparam


class ONION(InputCorrector):
    name = "onion"
    version = "1"
    requires = frozenset()

    @dataclasses.dataclass(frozen=True)
    class Params:
        lm: str = "gpt2"  # causal LM id or folder (OpenBackdoor: gpt2; reference: gpt2-large)
        threshold: float = 0.0  # remove w_i when p_0 − p_i ≥ threshold (OpenBackdoor 0)
        batch_size: int = hparam(32, range="[1, )")  # LM batch (OpenBackdoor 32; no effect on the result)

    def fit(self, model, ctx: DefenseContext) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.params.lm)
            self._lm = AutoModelForCausalLM.from_pretrained(self.params.lm, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"onion: cannot load the language model {self.params.lm!r} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}). ONION needs a causal LM in safetensors: "
                "a hub id with network access or a filled Hugging Face cache, or a local folder "
                "(--set onion.lm=PATH)") from None
        ctx.to_device(self._lm).eval()
        self._to_device = ctx.to_device
        self._context = getattr(self._lm.config, "n_positions", None) or getattr(
            self._lm.config, "max_position_embeddings", 1024)
        self.info = {"lm": self.params.lm}

    def _ids(self, text: str) -> list[int]:
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        start = self._tokenizer.bos_token_id if self._tokenizer.bos_token_id is not None else self._tokenizer.eos_token_id
        return ([start] if start is not None else []) + ids

    @torch.no_grad()
    def perplexities(self, texts: list[str]) -> list[float]:
        """PPL of each text on its own tokens (NaN when it has none to predict or exceeds the context)."""
        encoded = [self._ids(t) for t in texts]
        out = [math.nan] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), self.params.batch_size):
            batch = [i for i in order[start:start + self.params.batch_size] if 2 <= len(encoded[i]) <= self._context]
            if not batch:
                continue
            width = max(len(encoded[i]) for i in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            mask = torch.zeros(len(batch), width, dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, :len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, :len(encoded[i])] = 1
            ids, mask = self._to_device(ids), self._to_device(mask)
            logits = self._lm(input_ids=ids, attention_mask=mask).logits.float()
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:],
                                                    reduction="none")  # [batch, width-1]
            keep = mask[:, 1:].float()  # this text's own tokens only, never padding
            mean = (nll * keep).sum(1) / keep.sum(1)
            for row, i in enumerate(batch):
                out[i] = float(torch.exp(mean[row]))
        return out

    def suspicion(self, text: str) -> list[tuple[str, float]]:
        """(word, f_i) per word; f_i is NaN where it cannot be scored (never removed)."""
        words = text.split()
        if len(words) < 2:
            return [(w, math.nan) for w in words]
        ppl = self.perplexities([text] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))])
        return [(w, ppl[0] - p) for w, p in zip(words, ppl[1:])]

    def correct(self, model, texts, ctx: DefenseContext):
        rewritten, scores = [], []
        for text in texts:
            pairs = self.suspicion(text)
            kept = [w for w, f in pairs if not (f == f and f >= self.params.threshold)]
            rewritten.append(" ".join(kept) if len(kept) < len(pairs) else text)
            finite = [f for _, f in pairs if f == f]
            scores.append(max(finite) if finite else 0.0)
        return rewritten, scores
