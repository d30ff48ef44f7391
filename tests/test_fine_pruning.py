"""Fine-pruning on the tiny BERT: the mask survives fine-tuning, the stopping rule holds, the
three scopes prune what they say, and the cached dev evaluation agrees with a full one."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from benchmark import DefenseOutput, ThreatModelError, clone_model, encoder_layers, ffn_units
from benchmark.testing import defense_context, demo_dataset, load_tokenizer, model_factory, tiny_victim
from defenses.fine_pruning import (
    FinePruning,
    _DevReplay,
    _last_step_within,
    _mean_activations,
    _set_mask,
)

LAST = {"scope": "layer"}  # version 1's setting: the last layer's FFN only

REQUIRES = {"clean_data", "clean_dev"}


@pytest.fixture
def trained(tiny_model, make_defense_ctx):
    """A tiny classifier that has learnt the demo task (a stand-in for a backdoored model)."""
    model = tiny_model()
    make_defense_ctx(REQUIRES).finetune(model, make_defense_ctx(REQUIRES).clean_data)
    return model


def unit(model, layer_index):
    return ffn_units(model)[layer_index]


def pruned_rows(model, layer_index):
    """The neurons whose every incoming slice is zero."""
    ffn = unit(model, layer_index)
    zero = torch.ones(ffn.width, dtype=torch.bool)
    for param, dim in ffn.incoming:
        zero &= (param == 0).movedim(dim, 0).reshape(ffn.width, -1).all(1)
    return zero.nonzero().flatten().tolist()


def test_pruned_neurons_stay_zero_after_finetuning(trained, make_defense_ctx):
    ctx = make_defense_ctx(REQUIRES)
    defense = FinePruning(FinePruning.Params(**LAST, tolerance=1.0, step=0.25, max_ratio=0.5))
    out = defense.purify(trained, ctx)
    assert isinstance(out, DefenseOutput)
    info = out.info
    assert info["pruned"] == 32 and info["prune_ratio"] == 0.5  # tolerance 1.0: prunes to max_ratio
    rows = pruned_rows(out.model, info["layer"] - 1)
    assert len(rows) == info["pruned"]  # exactly the pruned neurons are zero, after 8 epochs of training
    assert [r for r, _ in info["curve"]] == [0.0, 0.25, 0.5]


def test_stopping_rule_keeps_the_last_ratio_within_tolerance(trained, make_defense_ctx):
    ctx = make_defense_ctx(REQUIRES)
    params = FinePruning.Params(tolerance=0.05, step=0.1, epochs=1)
    info = FinePruning(params).purify(trained, ctx).info
    acc0 = info["curve"][0][1]
    kept = [acc for ratio, acc in info["curve"] if 0 < ratio <= info["prune_ratio"]]
    assert all(acc >= acc0 - params.tolerance for acc in kept)
    last_ratio, last_acc = info["curve"][-1]
    if last_ratio > info["prune_ratio"]:  # it stopped on a drop (or it reached max_ratio)
        assert last_acc < acc0 - params.tolerance
    assert info["pruned"] == round(info["prune_ratio"] * info["neurons"])


def asking(verdicts: dict[int, bool] | None, crossing: int | None = None):
    """A dev check that answers ``verdicts[k]`` (or "within" below ``crossing``) and logs each step asked."""
    asked: list[int] = []

    def within(k: int) -> bool:
        asked.append(k)
        return verdicts[k] if verdicts is not None else k < crossing

    return within, asked


@pytest.mark.parametrize("steps", [1, 2, 7, 64, 100])
def test_bisection_finds_the_scans_step_where_accuracy_crosses_once(steps):
    for crossing in range(1, steps + 2):  # the first failing step; steps + 1: none fails
        scan, scanned = asking(None, crossing)
        bisect, bisected = asking(None, crossing)
        assert _last_step_within(scan, steps, "scan") == _last_step_within(bisect, steps, "bisect") == crossing - 1
        assert len(scanned) == min(crossing, steps)
        assert len(bisected) <= 2 * math.ceil(math.log2(steps)) + 1  # steps == 1: one question
        assert len(set(bisected)) == len(bisected)  # no step is evaluated twice


def test_bisection_returns_a_crossing_where_accuracy_recovers():
    verdicts = {k: k < 5 or 7 <= k < 12 for k in range(1, 17)}  # fails at 5-6, within again at 7-11
    scan, _ = asking(verdicts)
    bisect, asked = asking(verdicts)
    assert _last_step_within(scan, 16, "scan") == 4  # the first failure ends the scan
    found = _last_step_within(bisect, 16, "bisect")
    assert found == 11 and verdicts[found] and not verdicts[found + 1]  # a later crossing: step 8 passed
    assert asked == [1, 2, 4, 8, 16, 12, 10, 11]


def test_bisect_search_prunes_to_a_ratio_its_curve_supports(trained, make_defense_ctx):
    ctx = make_defense_ctx(REQUIRES)
    params = FinePruning.Params(tolerance=0.05, step=0.1, epochs=1, search="bisect")
    info = FinePruning(params).purify(clone_model(trained), ctx).info
    acc0 = info["curve"][0][1]
    ratios = [ratio for ratio, _ in info["curve"]]
    assert ratios == sorted(ratios) and len(ratios) <= 1 + 2 * math.ceil(math.log2(10)) + 1
    for ratio, acc in info["curve"][1:]:  # every step asked at or below the chosen ratio is within tolerance
        assert (acc >= acc0 - params.tolerance) == (ratio <= info["prune_ratio"] + params.step / 2)
    assert info["pruned"] == round(info["prune_ratio"] * info["neurons"])


def test_least_active_neurons_are_pruned_first(trained, make_defense_ctx):
    ctx = make_defense_ctx(REQUIRES)
    model = clone_model(trained)
    (scores,) = _mean_activations(model, [unit(model, model.config.num_hidden_layers - 1)], ctx, absolute=False)
    info = FinePruning(FinePruning.Params(**LAST, tolerance=1.0, step=0.25, max_ratio=0.25, epochs=1)).purify(model, ctx).info
    assert sorted(pruned_rows(model, info["layer"] - 1)) == sorted(torch.argsort(scores)[:16].tolist())


def test_mean_activation_ignores_padding(trained, make_defense_ctx, demo_small):
    short, long = demo_small.train[0], max(demo_small.train[:60], key=lambda ex: len(ex.text))
    model = trained
    last = unit(model, model.config.num_hidden_layers - 1)
    (alone,) = _mean_activations(model, [last], make_defense_ctx(REQUIRES, clean=[short]), absolute=False)
    (both,) = _mean_activations(model, [last], make_defense_ctx(REQUIRES, clean=[short, long]), absolute=False)
    (solo_long,) = _mean_activations(model, [last], make_defense_ctx(REQUIRES, clean=[long]), absolute=False)
    n_short = len(make_defense_ctx(REQUIRES).encode([short]).input_ids[0])
    n_long = len(make_defense_ctx(REQUIRES).encode([long]).input_ids[0])
    expected = (alone * n_short + solo_long * n_long) / (n_short + n_long)  # token-weighted, no pad tokens
    assert torch.allclose(both, expected, atol=1e-5)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_pooled_mean_reads_only_the_token_the_head_reads(tmp_path, family):
    """``tokens="pooled"``: the mean over an encoder's first token and a decoder's last real token
    (right padding), checked against each example's activations run alone, unpadded."""
    folder = tiny_victim(tmp_path, family)
    data = demo_dataset(0, n_train=48, n_dev=24, n_test=8)
    clean = [data.train[0], max(data.train[:40], key=lambda ex: len(ex.text))]  # two lengths: one is padded
    tokenizer = load_tokenizer(folder)
    ctx = defense_context(tokenizer, data, REQUIRES, clean=clean)
    model = model_factory(folder)().eval()
    last = unit(model, 1)
    (pooled,) = _mean_activations(model, [last], ctx, absolute=False, pooled=True)
    (every,) = _mean_activations(model, [last], ctx, absolute=False)
    alone = []
    for example in clean:
        ids = torch.tensor([ctx.encode([example]).input_ids[0]])
        seen = []
        handle = last.capture(seen.append)
        with torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
        handle.remove()
        alone.append(seen[0][0, 0 if family == "bert" else -1].float())
    assert torch.allclose(pooled, torch.stack(alone).mean(0), atol=2e-2)
    assert not torch.allclose(pooled, every, atol=2e-2)  # not the all-token mean


def test_joint_scope_prunes_the_least_active_neurons_of_every_layer_together(trained, make_defense_ctx):
    ctx = make_defense_ctx(REQUIRES)
    model = clone_model(trained)
    layers = encoder_layers(model)
    units = ffn_units(model)
    scores = torch.cat(_mean_activations(model, units, ctx, absolute=False))
    params = FinePruning.Params(tolerance=1.0, step=0.25, max_ratio=0.25, epochs=1)
    info = FinePruning(params).purify(model, ctx).info
    n = units[0].width
    expected = sorted(torch.argsort(scores)[: len(scores) // 4].tolist())
    got = sorted(i * n + row for i in range(len(layers)) for row in pruned_rows(model, i))
    assert got == expected  # the lowest quarter of all layers' neurons, wherever they are
    assert info["scope"] == "joint" and info["layers"] == [1, 2] and info["neurons"] == len(scores)
    assert info["pruned_per_layer"] == [len(pruned_rows(model, i)) for i in range(len(layers))]
    assert sum(info["pruned_per_layer"]) == info["pruned"] == len(scores) // 4


def test_per_layer_scope_prunes_the_same_share_of_each_layer(trained, make_defense_ctx):
    ctx = make_defense_ctx(REQUIRES)
    params = FinePruning.Params(scope="per_layer", tolerance=1.0, step=0.25, max_ratio=0.5, epochs=1)
    out = FinePruning(params).purify(trained, ctx)
    n = unit(out.model, 0).width
    assert out.info["pruned_per_layer"] == [n // 2, n // 2]
    assert [len(pruned_rows(out.model, i)) for i in range(2)] == [n // 2, n // 2]


@pytest.mark.parametrize("layer", [0, 1])
def test_cached_dev_accuracy_equals_full_evaluation(trained, make_defense_ctx, layer):
    ctx = make_defense_ctx(REQUIRES)
    model = trained.eval()
    layers = encoder_layers(model)
    ffn = unit(model, layer)
    original = [param.detach().clone() for param, _ in ffn.incoming]
    dev = _DevReplay(model, layers, layer, ctx)
    for pruned in ([], list(range(0, 64, 2)), list(range(60))):
        _set_mask(ffn, original, pruned)
        assert dev.accuracy() == ctx.accuracy(model, ctx.clean_dev)
    assert all(isinstance(m, type(layers[1])) for m in layers)  # the replay swap was undone


def test_requires_clean_dev(trained, make_defense_ctx):
    with pytest.raises(ThreatModelError):
        FinePruning().purify(trained, make_defense_ctx({"clean_data"}))


def test_params_are_frozen_and_documented():
    params = FinePruning.Params()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.tolerance = 0.1  # type: ignore[misc]
    assert FinePruning.requires == frozenset(REQUIRES)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_decoder_neurons_stay_pruned(tmp_path, family):
    """GPT-2's ``Conv1D`` (weight ``[in, out]``: columns pruned) and Llama's gated MLP (``gate`` and
    ``up`` rows pruned): the pruned neurons' activations are exactly zero after fine-tuning."""
    folder = tiny_victim(tmp_path, family)
    data = demo_dataset(0, n_train=48, n_dev=24, n_test=8)
    ctx = defense_context(load_tokenizer(folder), data, REQUIRES)
    model = model_factory(folder)()
    params = FinePruning.Params(tolerance=1.0, step=0.25, max_ratio=0.25, epochs=1)
    out = FinePruning(params).purify(model, ctx)
    rows = [pruned_rows(out.model, i) for i in range(2)]
    assert [len(r) for r in rows] == out.info["pruned_per_layer"] and sum(map(len, rows)) == out.info["pruned"] > 0
    seen = []
    handle = unit(out.model, 0).capture(seen.append)
    ctx.accuracy(out.model, data.dev)
    handle.remove()
    assert all(torch.all(a[..., rows[0]] == 0) for a in seen)
