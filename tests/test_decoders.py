"""Decoder-only victims' padding and pooling pitfalls (methods.md F6), on tiny random GPT-2, Llama
and Qwen2 classifiers built as their checkpoints ship (GPT-2 and Llama without a pad token, Qwen2
with pad = EOS).

Each test fails when the padding or the pooling is wrong: a pad id missing or different between
tokenizer and config, left padding, a literal special-token string read as the pad id, EOS
appended to every text, or a head that reads the first token instead of the last real one."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark import head_on_hidden, pooled_hidden, pooled_positions
from benchmark.base.errors import CheckpointError
from benchmark.data.examples import Example
from benchmark.model.encoding import collate, encode
from benchmark.model.victims import check_victim, load_classifier, load_tokenizer
from benchmark.testing import (
    DECODER_FAMILIES,
    cpu_runtime,
    defense_context,
    demo_dataset,
    model_factory,
    tiny_tokenizer,
    tiny_victim,
)

TEXTS = ["the movie is great and fun", "cf dull", "a dull movie <|endoftext|>", "great"]


@pytest.fixture(scope="module", params=DECODER_FAMILIES)
def decoder(request, tmp_path_factory):
    folder = tiny_victim(tmp_path_factory.mktemp(request.param), request.param)
    return request.param, folder, load_tokenizer(folder), model_factory(folder)().eval()


def batch(tokenizer, texts, indices=None):
    encoded = encode(tokenizer, [Example(t, 0) for t in texts], 48)
    return collate(encoded, range(len(texts)) if indices is None else indices)


def logits(model, b):
    with torch.no_grad():
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits


def test_the_pad_token_is_set_on_both_sides(decoder):
    family, folder, tokenizer, model = decoder
    shipped = json.loads((folder / "config.json").read_text())
    assert (shipped.get("pad_token_id") is None) == (family in ("gpt2", "llama"))  # as the checkpoints ship
    assert tokenizer.pad_token_id is not None
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.pad_token_id == (tokenizer.eos_token_id if family != "qwen2" else tokenizer.pad_token_id)
    assert tokenizer.padding_side == "right"
    check_victim(str(folder))  # agreement is checked before any training


def test_a_row_alone_and_inside_a_padded_batch_agree(decoder):
    """The head reads each row's last real token: padding the batch changes nothing."""
    _, _, tokenizer, model = decoder
    together = logits(model, batch(tokenizer, TEXTS))
    alone = torch.cat([logits(model, batch(tokenizer, TEXTS, [i])) for i in range(len(TEXTS))])
    assert (together - alone).abs().max() <= 1e-4


def test_left_padding_would_break_it(decoder):
    """The same rows padded on the left (what a tokenizer's default padding side gives Llama):
    transformers' head still finds the last real token, but the content's positions shift, which
    GPT-2's learned positions see: bdbench's right padding is what keeps the row's logits."""
    family, _, tokenizer, model = decoder
    right = batch(tokenizer, TEXTS)
    mask = right["attention_mask"]
    lengths = mask.sum(1)
    left_ids = torch.full_like(right["input_ids"], tokenizer.pad_token_id)
    left_mask = torch.zeros_like(mask)
    width = right["input_ids"].shape[1]
    for row, n in enumerate(lengths.tolist()):
        left_ids[row, width - n:] = right["input_ids"][row, :n]
        left_mask[row, width - n:] = 1
    shifted = logits(model, {"input_ids": left_ids, "attention_mask": left_mask})
    if family == "gpt2":
        assert (shifted - logits(model, right)).abs().max() > 1e-4
    assert torch.equal(pooled_positions(model, mask), lengths - 1)


def test_a_literal_special_token_string_is_text(decoder):
    _, _, tokenizer, _ = decoder
    (ids,) = encode(tokenizer, [Example(TEXTS[2], 0)], 48).input_ids
    assert tokenizer.pad_token_id not in ids and tokenizer.eos_token_id not in ids


def test_the_head_on_hidden_states_reads_the_last_real_token(decoder):
    _, _, tokenizer, model = decoder
    b = batch(tokenizer, TEXTS)
    with torch.no_grad():
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)
        head = head_on_hidden(model)
        assert torch.allclose(head(out.hidden_states[-1], b["attention_mask"], 2), out.logits, atol=1e-6)
        first = model.score(out.hidden_states[-1][:, 0])  # an encoder's [CLS] reading: wrong here
        assert not torch.allclose(first, out.logits, atol=1e-4)
        inner = head(out.hidden_states[1], b["attention_mask"], 1)  # the final norm applied to an inner layer
        norm = model.base_model.ln_f if hasattr(model.base_model, "ln_f") else model.base_model.norm
        assert torch.allclose(inner, model.score(norm(pooled_hidden(model, out.hidden_states[1], b["attention_mask"]))))


def test_inputs_embeds_pool_the_last_position(decoder):
    """transformers cannot see padding through ``inputs_embeds`` and pools the last position; the
    toolkit's pooling from the mask gives the row's own logits."""
    _, _, tokenizer, model = decoder
    b = batch(tokenizer, TEXTS)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(b["input_ids"])
        out = model(inputs_embeds=embeds, attention_mask=b["attention_mask"], output_hidden_states=True)
        right = logits(model, b)
        padded = b["attention_mask"].sum(1) < b["input_ids"].shape[1]
        assert not torch.allclose(out.logits[padded], right[padded], atol=1e-4)
        mended = head_on_hidden(model)(out.hidden_states[-1], b["attention_mask"], 2)
        assert torch.allclose(mended, right, atol=1e-5)


def test_cls_embeddings_are_the_pooled_states(decoder):
    _, _, tokenizer, model = decoder
    ctx = defense_context(tokenizer, demo_dataset(0, n_train=8, n_dev=4, n_test=4), ())
    assert ctx.runtime == cpu_runtime()
    got = ctx.cls_embeddings(model, TEXTS)
    b = batch(tokenizer, TEXTS)
    with torch.no_grad():
        hidden = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                       output_hidden_states=True).hidden_states[-1]
    rows = torch.arange(len(TEXTS))
    assert torch.allclose(got, hidden[rows, b["attention_mask"].sum(1) - 1], atol=1e-6)


def test_a_tokenizer_that_appends_its_pad_token_is_refused(tmp_path):
    from tokenizers import processors

    folder = tiny_victim(tmp_path / "llama", "llama")
    tokenizer = tiny_tokenizer("llama")  # pad = EOS once loaded; now EOS appended to every text as well
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tokenizer.eos_token_id)])
    tokenizer.save_pretrained(str(folder))
    with pytest.raises(CheckpointError, match="appends its pad token"):
        load_tokenizer(folder)


def test_pad_ids_that_disagree_are_refused(tmp_path):
    folder = tiny_victim(tmp_path / "qwen2", "qwen2")
    config = json.loads((folder / "config.json").read_text())
    config["pad_token_id"] = 5  # a real word's id, not the tokenizer's pad token
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="pad token id 0 is not the config's pad_token_id 5"):
        check_victim(str(folder))
    assert load_classifier(folder, 2).config.pad_token_id == 5  # loading alone would not have told
