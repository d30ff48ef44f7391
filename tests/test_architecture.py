"""benchmark.model.architecture on a tiny random victim of every supported family (encoders and
decoders; the decoders' padding pitfalls are in tests/test_decoders.py): each question has one
answer per family, the task head maps the last layer to the model's own logits, the seeded head
re-draw touches the head only, and an unknown architecture gets an error naming it and the method."""

from __future__ import annotations

import pytest
import torch

from benchmark import (
    UsageError,
    clone_model,
    encoder_layers,
    ffn_activation,
    ffn_projections,
    ffn_units,
    forward_internals,
    head_on_hidden,
    pooler,
    reinit_head,
    resolve_layers,
    task_head,
    word_embeddings,
)
from benchmark.model.victims import load_tokenizer
from benchmark.testing import DECODER_FAMILIES, FAMILIES, model_factory, tiny_victim

HEADS = {"bert": ["classifier"], "roberta": ["classifier"], "distilbert": ["pre_classifier", "classifier"],
         "electra": ["classifier"], "deberta-v2": ["pooler", "classifier"], "gpt2": ["score"], "llama": ["score"],
         "qwen2": ["score"]}
GATED = {"llama", "qwen2"}
FFN_WIDTH = {"bert": 64}  # the others: 37


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    folder = tiny_victim(tmp_path_factory.mktemp(request.param), request.param)
    return request.param, model_factory(folder), load_tokenizer(folder)


def batch_of(tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def test_layers_ffn_and_embeddings(family):
    name, make, tokenizer = family
    model = make()
    layers = encoder_layers(model)
    assert len(layers) == model.config.num_hidden_layers == 2
    units = ffn_units(model)
    assert [u.width for u in units] == [FFN_WIDTH.get(name, 37)] * 2
    assert all(any(p is q for q in layer.parameters()) for u, layer in zip(units, layers) for p, _ in u.incoming)
    assert callable(ffn_activation(model))
    if name in GATED:
        with pytest.raises(UsageError, match="gated MLP"):
            ffn_projections(model)
    else:
        projections = ffn_projections(model)
        assert all(any(p is m for m in layer.modules()) for p, layer in zip(projections, layers))
    assert word_embeddings(model).weight.shape[0] == len(tokenizer)


def test_task_head_maps_the_last_layer_to_the_models_logits(family):
    name, make, tokenizer = family
    model = make().eval()
    assert [n for n, _ in task_head(model)] == HEADS[name]
    batch = batch_of(tokenizer, ["the movie is great", "cf dull"])
    out = forward_internals(model, batch, attentions=True)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    last = out.hidden_states[-1]
    with torch.no_grad():
        if name in DECODER_FAMILIES:  # the last real token of each right-padded row, after the final norm
            assert pooler(model) is None
            assert torch.allclose(head_on_hidden(model)(last, batch["attention_mask"], 2), out.logits, atol=1e-6)
            return
        if name == "bert":  # BERT's pooler belongs to the base model: the head reads the pooled [CLS]
            assert pooler(model) is not None
            assert torch.allclose(model.classifier(pooler(model)(last)), out.logits, atol=1e-6)
            assert torch.allclose(head_on_hidden(model)(last), model.classifier(last[:, 0]))
        else:
            assert pooler(model) is None
            assert torch.allclose(head_on_hidden(model)(last), out.logits, atol=1e-6)


def test_reinit_head_is_seeded_and_touches_the_head_only(family):
    _, make, _ = family
    a, b = make(), make()
    before = {k: v.clone() for k, v in a.state_dict().items()}
    reinit_head(a, torch.Generator().manual_seed(3))
    reinit_head(b, torch.Generator().manual_seed(3))
    head = {f"{name}.{key}" for name, module in task_head(a) for key in module.state_dict()}
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
        assert torch.equal(value, before[key]) == (key not in head or key.endswith("bias")), key


def test_clone_is_independent(family):
    _, make, _ = family
    model = make()
    copy = clone_model(model)
    with torch.no_grad():
        word_embeddings(copy).weight.zero_()
    assert word_embeddings(model).weight.abs().sum() > 0


def test_resolve_layers():
    assert resolve_layers((), 3) == [1, 2, 3]
    assert resolve_layers([-1, 1], 3) == [3, 1]
    with pytest.raises(UsageError, match="nad: layer 4 is outside 1..3"):
        resolve_layers([4], 3, "nad")


def test_an_unknown_architecture_is_named_with_the_method():
    from transformers import AlbertConfig, AlbertForSequenceClassification

    config = AlbertConfig(vocab_size=50, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=37, num_labels=2)
    model = AlbertForSequenceClassification(config)
    with pytest.raises(UsageError, match=r"fine_pruning: .*AlbertForSequenceClassification \(model_type 'albert'\)"):
        ffn_projections(model, "fine_pruning")
    with pytest.raises(UsageError, match=r"lwp: cannot find the task head .*'albert'.*supported architectures: bert"):
        head_on_hidden(model, "lwp")
    assert [n for n, _ in task_head(model)] == ["classifier"]  # the generic questions still have answers
    assert word_embeddings(model).weight.shape == (50, 16)
