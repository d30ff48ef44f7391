"""Weight updates computed at every forward pass (benchmark.model.lowrank) and the two robust
trainers built on them, Moderate-fitting (defenses/moderate_fitting.py) and MuScleLoRA
(defenses/muscle_lora.py): step 0 is the base model, the merge is exact, only the declared
tensors change, the reparameterisation trains only its generators, and the gradient alignment
points each gradient along the reference gradient."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from benchmark import (
    Generated,
    LowRank,
    MultiScale,
    ParamGenerator,
    merge_updates,
    parametrize_tensor,
    target_modules,
    trainable_factors,
    update_factors,
)
from benchmark.plugins.triggers import insert_words, poison_by_mode
from benchmark.testing import (
    FAST_RECIPE,
    defense_context,
    demo_dataset,
    load_tokenizer,
    model_factory,
    tiny_victim,
)
from defenses.moderate_fitting import ModerateFitting
from defenses.muscle_lora import MuScleLoRA, mslr_layer

DATA = demo_dataset(0, n_train=96, n_dev=40, n_test=16)


@pytest.fixture(scope="module")
def victims(tmp_path_factory):
    built = {}

    def get(family="bert"):
        if family not in built:
            built[family] = tiny_victim(tmp_path_factory.mktemp(family), family)
        return built[family]

    return get


def context(folder, cls, **kwargs):
    rng = random.Random(0)
    poisoned, _ = poison_by_mode(DATA.train, "dirty", 0.1, 1, rng, lambda text: insert_words(text, ["cf"], rng))
    return defense_context(load_tokenizer(folder), DATA, cls.requires, pretrained=model_factory(folder),
                           poisoned_train=poisoned, recipe=FAST_RECIPE, **kwargs)


def logits(model, ctx):
    model.eval()
    batch = ctx.batch(DATA.test)
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_a_low_rank_update_starts_at_the_base_weight_and_merges_exactly():
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 4)
    base = linear.weight.detach().clone()
    parametrize_tensor(linear, "weight", LowRank(linear, 2, 4.0, torch.Generator().manual_seed(1)))
    assert torch.equal(linear.weight, base)  # B = 0
    update = linear.parametrizations.weight[0]
    with torch.no_grad():
        update.B.normal_()
    x = torch.randn(3, 6)
    adapted = linear(x)
    assert torch.allclose(linear.weight, base + 4.0 * update.B @ update.A)
    assert linear.parametrizations.weight.original.requires_grad is False
    assert merge_updates(linear) == ["weight"]
    assert type(linear) is torch.nn.Linear and linear.weight.requires_grad
    assert torch.equal(linear(x), adapted)


def test_a_conv1d_update_is_transposed_as_its_weight():
    from transformers.pytorch_utils import Conv1D

    conv = Conv1D(12, 5)  # GPT-2's c_attn layout: weight [in 5, out 12]
    update = LowRank(conv, 2, 1.0)
    with torch.no_grad():
        update.B.normal_()
    assert update.delta().shape == conv.weight.shape
    assert torch.allclose(update.delta(), (update.B @ update.A).t())


def test_the_multi_scale_update_scales_each_rank_one_part_by_its_band():
    linear = torch.nn.Linear(5, 3)
    update = MultiScale(linear, (1, 4, 8), 2, 3.0, generator=torch.Generator().manual_seed(0))
    assert update.L.shape == (6, 5) and update.R.shape == (3, 6)
    assert update.k.tolist() == [1, 1, 4, 4, 8, 8]
    expected = 3.0 * sum(update.k[j] * torch.outer(update.R[:, j], update.L[j]) for j in range(6))
    assert torch.allclose(update.delta(), expected, atol=1e-6)
    assert torch.any(update.delta() != 0)  # both factors Kaiming-initialised: not zero at step 0


def test_generated_tensors_are_slices_of_one_generator_and_zero_from_a_zero_input():
    source = ParamGenerator(10, 2, 3, zero_input=False, generator=torch.Generator().manual_seed(0))
    zero = ParamGenerator(4, 2, 3, zero_input=True)
    assert torch.equal(Generated(source, 4, (2, 3)).value(), source()[4:10].view(2, 3))
    assert not torch.any(zero())


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_moderate_fitting_trains_only_its_generators_and_changes_only_the_adapted_matrices_and_the_head(
        victims, family):
    folder = victims(family)
    ctx = context(folder, ModerateFitting)
    defense = ModerateFitting(ModerateFitting.Params(epochs=1))
    base = ctx.pretrained_model()
    model = ctx.pretrained_model()
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), model.state_dict().values()))
    targets = target_modules(model, "default")
    from benchmark import modules_named, task_head

    adapted = modules_named(model, targets)
    info = defense.reparameterise(model, adapted, ctx)
    for name, module in adapted:  # every B is generated from a zero input: step 0 is the base weight
        assert torch.equal(module.weight, base.get_submodule(name).weight)
    head_values = sum(t.numel() for _, m in task_head(model) for t in m.parameters())
    a_values = sum(8 * module.parametrizations.weight.original.shape[0 if family == "gpt2" else 1]
                   for _, module in adapted)
    b_values = info["generated_values"] - head_values - a_values
    # e (2) + W1 (2x2) + W2 (2 x group size), for both groups
    assert info["trained_parameters"] == 2 * (2 + 4) + 2 * (head_values + a_values) + 2 * b_values
    ctx.finetune(model, list(ctx.poisoned_train), trainable=trainable_factors(model), epochs=1, lr=3e-4)
    merge_updates(model)
    head_names = {name for name, _ in task_head(model)}
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, base.state_dict()[n])}
    allowed = {f"{name}.weight" for name, _ in adapted} | {n for n in changed if n.split(".")[0] in head_names}
    assert changed and changed <= allowed, changed - allowed
    assert not any("parametriz" in n for n in model.state_dict())


def test_moderate_fitting_keeps_its_comparisons_one_switch_away(victims):
    folder = victims()
    for capacity in ("lora", "full"):
        ctx = context(folder, ModerateFitting)
        out = ModerateFitting(ModerateFitting.Params(capacity=capacity, epochs=1)).train(ctx)
        assert out.info["capacity"] == capacity
        assert torch.isfinite(logits(out.model, ctx)).all()


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_muscle_lora_changes_only_the_lora_targets_and_the_mslr_layer(victims, family):
    """The head stays at its random initialisation (a decoder's folds in the new frozen two-layer
    head), every other pre-trained weight is bit-identical."""
    folder = victims(family)
    ctx = context(folder, MuScleLoRA)
    out = MuScleLoRA(MuScleLoRA.Params(epochs=1, reference_size=8)).train(ctx)
    base = ctx.pretrained_model()
    changed = {n for n, t in out.model.state_dict().items() if not torch.equal(t, base.state_dict()[n])}
    suffixes = tuple(f"{name}.weight" for name in target_modules(base, "default"))
    lora = {n for n in changed if n.endswith(suffixes)}
    rest = changed - lora
    if family == "llama":
        assert rest == {"score.weight"}
    else:
        mslr = next(n for n, m in base.named_modules() if m is mslr_layer(base))
        assert rest == {f"{mslr}.weight"}
    assert lora and out.info["reference_size"] == 8 and out.info["selection_size"] == len(DATA.dev) - 8
    assert out.info["epoch_kept"] == 1


def test_muscle_lora_aligns_each_gradient_with_the_reference_gradient(victims):
    """Where alignment applies, each trainable tensor's gradient becomes
    ``|<g, g_ref>| / |g_ref|² · g_ref`` (the reference batch here being the whole reference set,
    dropout off, so that g_ref can be recomputed)."""
    folder = victims()
    ctx = context(folder, MuScleLoRA)
    defense = MuScleLoRA(MuScleLoRA.Params(reference_size=8, reference_batch=8, min_ref_loss=0.0))
    model = ctx.pretrained_model()
    settings = defense.settings(model)
    defense.attach(model, settings, ctx)
    factors = update_factors(model)
    with torch.no_grad():
        for f in factors:
            f.add_(0.01 * torch.randn_like(f))
    model.eval()
    reference = list(DATA.dev[:8])
    batch = ctx.batch(DATA.train[:16])
    F.cross_entropy(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                    batch["labels"]).backward()
    raw = [f.grad.clone() for f in factors]
    ref = ctx.batch(reference)
    expected_ref = torch.autograd.grad(
        F.cross_entropy(model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).logits, ref["labels"]),
        factors)
    counts = {"replaced": 0, "mixed": 0, "kept": 0}
    defense.aligner(reference, factors, settings, ctx, steps_per_epoch=10, counts=counts)(model, 0)
    assert counts["replaced"] == 1
    for f, g, r in zip(factors, raw, expected_ref):
        aligned = (g * r).sum().abs() / (r * r).sum() * r
        assert torch.allclose(f.grad, aligned, rtol=1e-3, atol=1e-9)
        assert float((f.grad * r).sum()) >= 0  # along +g_ref


def test_muscle_lora_takes_the_reference_settings_of_the_model_kind(victims):
    defense = MuScleLoRA(MuScleLoRA.Params(rank=4))
    encoder = defense.settings(model_factory(victims())())
    decoder = defense.settings(model_factory(victims("llama"))())
    assert encoder["rank"] == decoder["rank"] == 4  # set: kept
    assert (encoder["alpha"], encoder["epochs"], encoder["lr"], encoder["mslr_alpha"]) == (32.0, 10, 2e-5, 6.0)
    assert (decoder["alpha"], decoder["epochs"], decoder["lr"], decoder["mslr_alpha"]) == (8.0, 5, 1e-5, 4.0)
    assert encoder["freq_band"] == (1, 4, 8, 12, 16, 20, 24, 28) and decoder["freq_band"] == (1, 2, 3, 4)
