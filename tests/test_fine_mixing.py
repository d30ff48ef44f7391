"""Fine-mixing and E-PUR on the tiny BERT: the mask keeps the stated share and is seeded, the
head is kept, ρ is chosen on clean dev as documented, E-PUR resets exactly what it selects."""

from __future__ import annotations

import pytest
import torch

from benchmark import ThreatModelError, clone_model
from defenses.fine_mixing import FineMixing, e_pur_reset, e_pur_select, mix_weights

REQUIRES = FineMixing.requires


@pytest.fixture
def pair(tiny_model):
    """(θ_B, θ_Pre): θ_Pre is the tiny victim, θ_B the same plus a perturbation of every weight."""
    pretrained = tiny_model()
    backdoored = clone_model(pretrained)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for q in backdoored.parameters():
            q.add_(torch.randn(q.shape, generator=generator) * 0.1)
    return backdoored, pretrained


def kept_share(mixed, backdoored, pretrained):
    head = {"classifier.weight", "classifier.bias"}
    b, pre = dict(backdoored.named_parameters()), dict(pretrained.named_parameters())
    same = total = 0
    for name, q in mixed.named_parameters():
        if name in head:
            assert torch.equal(q, b[name])  # the head is kept from θ_B
            continue
        from_b, from_pre = q == b[name], q == pre[name]
        assert bool((from_b | from_pre).all())  # every coordinate comes from one of the two
        same += int(from_b.sum())
        total += q.numel()
    return same / total


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.7])
def test_mask_keeps_the_stated_share(pair, rho):
    backdoored, pretrained = pair
    mixed = clone_model(backdoored)
    reported = mix_weights(mixed, pretrained, rho, seed=0)
    assert reported == pytest.approx(rho, abs=0.01)  # ~110k coordinates: 3σ < 0.5%
    assert kept_share(mixed, backdoored, pretrained) == pytest.approx(reported, abs=1e-9)


def test_mask_is_seeded_and_nested(pair):
    backdoored, pretrained = pair
    a, b, c, small = (clone_model(backdoored) for _ in range(4))
    mix_weights(a, pretrained, 0.5, seed=3)
    mix_weights(b, pretrained, 0.5, seed=3)
    mix_weights(c, pretrained, 0.5, seed=4)
    mix_weights(small, pretrained, 0.2, seed=3)
    wa, wb, wc = (dict(m.named_parameters())["bert.encoder.layer.0.intermediate.dense.weight"] for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    b_w = dict(backdoored.named_parameters())["bert.encoder.layer.0.intermediate.dense.weight"]
    ws = dict(small.named_parameters())["bert.encoder.layer.0.intermediate.dense.weight"]
    assert bool(((ws == b_w) <= (wa == b_w)).all())  # ρ=0.2 keeps a subset of ρ=0.5's coordinates


def test_e_pur_resets_exactly_what_it_selects(tiny_model, tiny_tokenizer):
    pretrained = tiny_model()
    model = clone_model(pretrained)
    vocab = tiny_tokenizer.get_vocab()
    rare, frequent, mild = vocab["cf"], vocab["the"], vocab["movie"]
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[rare] += 1.0  # far, and unseen in the clean data: a trigger
        emb[frequent] += 1.0  # as far, but frequent: normal fine-tuning drift
        emb[mild] += 0.3
    token_ids = [[frequent] * 50 + [mild]]
    tokens, scores = e_pur_select(model, pretrained, token_ids, top=2, normaliser="log")
    assert tokens == [rare, mild] and scores == sorted(scores, reverse=True)
    before = model.get_input_embeddings().weight.detach().clone()
    e_pur_reset(model, pretrained, tokens)
    after = model.get_input_embeddings().weight.detach()
    pre = pretrained.get_input_embeddings().weight.detach()
    changed = (after != before).any(1).nonzero().flatten().tolist()
    assert sorted(changed) == sorted(tokens)
    assert torch.equal(after[tokens], pre[tokens])
    # without the frequency normaliser, the frequent word ties with the trigger
    tokens, _ = e_pur_select(model, pretrained, token_ids, top=1, normaliser="none")
    assert tokens == [frequent]  # (the rare one was reset above)


def scripted(ctx, monkeypatch, accuracies):
    """Skip training and make dev accuracy follow ``accuracies`` (θ_B's first, then per ρ tried)."""
    values = iter(accuracies)
    monkeypatch.setattr(ctx, "finetune", lambda model, examples, **kw: None)
    monkeypatch.setattr(ctx, "accuracy", lambda model, examples: next(values))
    return ctx


def test_rho_selection_stops_at_the_smallest_rho_within_tolerance(pair, make_defense_ctx, monkeypatch):
    ctx = scripted(make_defense_ctx(REQUIRES), monkeypatch, [0.90, 0.80, 0.87, 0.89, 0.90])
    params = FineMixing.Params(rho_grid=(0.7, 0.5, 0.1, 0.3), tolerance=0.02)
    out = FineMixing(params).purify(pair[0], ctx)
    info = out.info
    assert [t["rho"] for t in info["tried"]] == [0.1, 0.3, 0.5]  # walked upwards, stopped at 0.89 >= 0.88
    assert info["rho"] == 0.5 and info["dev_acc"] == 0.89 and info["rho_selected"]
    assert kept_share(out.model, pair[0], pair[1]) == pytest.approx(0.5, abs=0.01)


def test_rho_fallback_is_the_best_dev_accuracy(pair, make_defense_ctx, monkeypatch):
    ctx = scripted(make_defense_ctx(REQUIRES), monkeypatch, [0.90, 0.70, 0.85, 0.80])
    out = FineMixing(FineMixing.Params(rho_grid=(0.1, 0.3, 0.5), tolerance=0.02)).purify(pair[0], ctx)
    assert [t["rho"] for t in out.info["tried"]] == [0.1, 0.3, 0.5]  # none within tolerance
    assert out.info["rho"] == 0.3 and out.info["dev_acc"] == 0.85
    assert kept_share(out.model, pair[0], pair[1]) == pytest.approx(0.3, abs=0.01)


def test_fine_mixing_trains_end_to_end(pair, make_defense_ctx):
    info = FineMixing(FineMixing.Params(rho_grid=(0.3,), epochs=1)).purify(pair[0], make_defense_ctx(REQUIRES)).info
    assert info["rho"] == 0.3 and 0 <= info["dev_acc"] <= 1


def test_e_pur_alone_and_fixed_rho(pair, make_defense_ctx):
    backdoored, _ = pair
    ctx = make_defense_ctx(REQUIRES)
    info = FineMixing(FineMixing.Params(mix=False, e_pur=True, e_pur_top=5, epochs=1)).purify(backdoored, ctx).info
    assert info["e_pur_reset"] == 5 and "rho" not in info
    info = FineMixing(FineMixing.Params(rho=0.5, epochs=1)).purify(clone_model(backdoored), ctx).info
    assert info["rho"] == 0.5 and not info["rho_selected"] and len(info["tried"]) == 1


def test_threat_model(make_defense_ctx, pair):
    assert REQUIRES == frozenset({"clean_data", "clean_dev", "pretrained_weights"})
    with pytest.raises(ThreatModelError, match="pretrained_weights"):
        FineMixing().purify(pair[0], make_defense_ctx({"clean_data", "clean_dev"}))
