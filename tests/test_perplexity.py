"""Perplexity under a causal LM (benchmark/model/perplexity.py): a text's own tokens only, the same
figures whatever the batching, NaN where nothing can be scored, ΔPPL per scenario in the records
(``--stealth-lm``). The real SmolLM2 is read in tests/test_gguf_victim.py, once for the whole suite."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark import UsageError
from benchmark.model.perplexity import load_causal_lm, perplexity_figures
from benchmark.testing import TINY_BUDGET, run, tiny_victim

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
    config = GPT2Config(vocab_size=len(vocab), n_positions=16, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=1, eos_token_id=1)
    GPT2LMHeadModel(config).save_pretrained(str(folder), safe_serialization=True)
    return folder


def test_batching_does_not_change_a_texts_perplexity(tiny_lm):
    lm = load_causal_lm(str(tiny_lm))
    texts = ["the film", "the film is very very good a movie", "a", "bad movie cf", "the " * 20]
    one = [lm.perplexities([t])[0] for t in texts]
    many = lm.perplexities(texts, batch_size=2)
    for a, b in zip(one, many):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-5)
    assert not math.isnan(one[2])  # "<s> a": one token to predict
    assert math.isnan(one[4])  # longer than the 16-position context: never truncated


def test_a_long_scoring_loop_says_how_far_it_is(tiny_lm, caplog, monkeypatch):
    monkeypatch.setenv("BDBENCH_HEARTBEAT_S", "0")
    monkeypatch.delenv("BDBENCH_PROGRESS", raising=False)
    lm = load_causal_lm(str(tiny_lm))
    with caplog.at_level("INFO", logger="benchmark.base.costs"):
        lm.perplexities(["the film is good", "a bad movie", "the movie", "very good"], batch_size=1)
    assert any("perplexity of 4 texts: " in r.getMessage() and "/4 steps" in r.getMessage() for r in caplog.records)


def test_perplexity_figures(tiny_lm):
    lm = load_causal_lm(str(tiny_lm))
    clean, poisoned = ["the film is good", "a bad movie"], ["the film cf is good", "a bad mn movie"]
    figures = perplexity_figures(lm, clean, poisoned)
    assert figures["lm"] == str(tiny_lm) and figures["ppl_texts"] == [2, 2]
    assert figures["ppl_increase"] == pytest.approx(figures["ppl_poisoned_mean"] - figures["ppl_clean_mean"])
    assert figures["ppl_clean_mean"] == pytest.approx(sum(lm.perplexities(clean)) / 2)


def test_records_carry_the_scenarios_delta_ppl(tmp_path, tiny_lm):
    victim = tiny_victim(tmp_path / "victim")
    records = run(tmp_path, victim, defenses=("none",), budget=TINY_BUDGET, stealth_lm=str(tiny_lm))
    stealth = records[0]["attack_stealth"]
    assert records[0]["status"] == "ok" and stealth["lm"] == str(tiny_lm)
    assert math.isfinite(stealth["ppl_increase"]) and stealth["pairs"] > 0
    again = run(tmp_path, victim, defenses=("none", "finetune"), budget=TINY_BUDGET, stealth_lm=str(tiny_lm),
                resume=True)  # computed once per scenario, kept in the store
    assert all(r["attack_stealth"] == stealth for r in again)


def test_a_missing_lm_is_one_clear_error(tmp_path):
    with pytest.raises(UsageError, match=r"--stealth-lm: cannot load the language model .*chosen with --stealth-lm"):
        load_causal_lm(str(tmp_path / "nothing"), who="--stealth-lm", option="--stealth-lm")
