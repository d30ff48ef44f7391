"""Re-init on the tiny BERT: each mode resets exactly what it says."""

from __future__ import annotations

import pytest
import torch

from benchmark import ThreatModelError, clone_model
from defenses.reinit import Reinit, reset_head, reset_top

REQUIRES = Reinit.requires


@pytest.fixture
def pair(tiny_model):
    pretrained = tiny_model()
    backdoored = clone_model(pretrained)
    with torch.no_grad():
        for q in backdoored.parameters():
            q.add_(0.05)
    return backdoored, pretrained


def groups(model):
    out = {}
    for name, q in model.named_parameters():
        if name.startswith("classifier"):
            key = "head"
        elif ".pooler." in f".{name}":
            key = "pooler"
        elif ".layer." in name:
            key = f"layer{int(name.split('.layer.')[1].split('.')[0]) + 1}"
        else:
            key = "embeddings"
        out.setdefault(key, {})[name] = q.detach().clone()
    return out


def equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_head_mode_redraws_only_head_and_pooler(pair):
    backdoored, _ = pair
    before = groups(backdoored)
    assert reset_head(backdoored, torch.Generator().manual_seed(0)) == ["classifier", "pooler"]
    after = groups(backdoored)
    for key in ("embeddings", "layer1", "layer2"):
        assert equal(after[key], before[key])
    for key in ("head", "pooler"):
        assert not any(torch.equal(after[key][k], before[key][k]) for k in after[key] if k.endswith("weight"))
        assert all(float(v.abs().max()) == 0 for k, v in after[key].items() if k.endswith("bias"))


@pytest.mark.parametrize("to", ["pretrained", "random"])
def test_top_k_resets_the_top_layers(pair, to):
    backdoored, pretrained = pair
    before, pre = groups(backdoored), groups(pretrained)
    names = reset_top(backdoored, 1, pretrained if to == "pretrained" else None, torch.Generator().manual_seed(0))
    assert names == ["layer2", "classifier", "pooler"]
    after = groups(backdoored)
    assert equal(after["embeddings"], before["embeddings"]) and equal(after["layer1"], before["layer1"])
    if to == "pretrained":
        assert equal(after["layer2"], pre["layer2"]) and equal(after["pooler"], pre["pooler"])
    else:
        ln = {k: v for k, v in after["layer2"].items() if "LayerNorm" in k}
        assert all(float((v - (1.0 if k.endswith("weight") else 0.0)).abs().max()) == 0 for k, v in ln.items())
        weights = [v for k, v in after["layer2"].items() if k.endswith("dense.weight") or k.endswith("query.weight")]
        assert all(abs(float(w.std()) - 0.02) < 0.005 for w in weights)
    assert not equal(after["head"], before["head"])


def test_all_mode_starts_from_pretrained(pair, make_defense_ctx, monkeypatch):
    backdoored, _ = pair
    ctx = make_defense_ctx(REQUIRES)
    trained = {}

    def spy(model, examples, **kwargs):  # record the model handed to fine-tuning, skip the training
        trained["model"] = clone_model(model)

    monkeypatch.setattr(ctx, "finetune", spy)
    out = Reinit(Reinit.Params(mode="all")).purify(backdoored, ctx)
    fresh = ctx.pretrained_model()
    assert equal(groups(trained["model"])["layer2"], groups(fresh)["layer2"])
    assert equal(groups(trained["model"])["head"], groups(fresh)["head"])  # the seeded fresh head
    assert out.info["mode"] == "all"


@pytest.mark.parametrize("mode", ["head", "top_k", "all"])
def test_every_mode_runs_end_to_end(pair, make_defense_ctx, mode):
    backdoored, _ = pair
    out = Reinit(Reinit.Params(mode=mode, k=1, epochs=1)).purify(backdoored, make_defense_ctx(REQUIRES))
    assert out.info["mode"] == mode
    assert out.model(**{"input_ids": torch.tensor([[2, 10, 3]])}).logits.shape == (1, 2)


def test_pretrained_weights_are_refused_without_the_declaration(pair, make_defense_ctx):
    ctx = make_defense_ctx({"clean_data"})
    with pytest.raises(ThreatModelError, match="pretrained_weights"):
        ctx.pretrained_model()
    with pytest.raises(ThreatModelError):
        Reinit(Reinit.Params(mode="all")).purify(pair[0], ctx)
