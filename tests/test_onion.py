"""ONION (defenses/onion.py) with a tiny random causal LM and a word-level tokenizer."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark import UsageError
from defenses.onion import ONION

WORDS = ["the", "film", "is", "good", "bad", "cf", "mn", "a", "movie", "very"]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-lm")
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                        eos_token="<s>", pad_token="<unk>")
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_positions=32, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=1, eos_token_id=1)
    GPT2LMHeadModel(config).save_pretrained(str(folder), safe_serialization=True)
    return folder


def _onion(tiny_lm, make_defense_ctx, threshold=0.0):
    onion = ONION(ONION.Params(lm=str(tiny_lm), threshold=threshold))
    onion.fit(None, make_defense_ctx(frozenset()))
    return onion


def test_removes_the_word_whose_removal_lowers_perplexity_most(tiny_lm, make_defense_ctx):
    text = "the film cf is very good"
    onion = _onion(tiny_lm, make_defense_ctx)
    pairs = onion.suspicion(text)
    words = text.split()
    ppl = onion.perplexities([text] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))])
    assert [f for _, f in pairs] == pytest.approx([ppl[0] - p for p in ppl[1:]])
    best = max(range(len(pairs)), key=lambda i: pairs[i][1])
    onion = _onion(tiny_lm, make_defense_ctx, threshold=pairs[best][1])
    (rewritten,), (score,) = onion.correct(None, [text], make_defense_ctx(frozenset()))
    assert rewritten.split() == words[:best] + words[best + 1:]
    assert score == pytest.approx(pairs[best][1])


def test_perplexity_ignores_padding(tiny_lm, make_defense_ctx):
    onion = _onion(tiny_lm, make_defense_ctx)
    alone = onion.perplexities(["the film"])[0]
    batched = onion.perplexities(["the film", "the film is very very good a movie"])[0]
    assert alone == pytest.approx(batched, rel=1e-5)


def test_one_word_text_is_kept(tiny_lm, make_defense_ctx):
    onion = _onion(tiny_lm, make_defense_ctx, threshold=-1e9)
    (rewritten,), _ = onion.correct(None, ["good"], make_defense_ctx(frozenset()))
    assert rewritten == "good"
    assert math.isnan(onion.suspicion("good")[0][1])


def test_missing_language_model_is_one_clear_error(tmp_path, make_defense_ctx):
    onion = ONION(ONION.Params(lm=str(tmp_path / "no-such-lm")))
    with pytest.raises(UsageError, match="onion.lm"):
        onion.fit(None, make_defense_ctx(frozenset()))
