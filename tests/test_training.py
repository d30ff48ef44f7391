import math

import pytest
import torch

from benchmark.base.errors import TrainingError
from benchmark.model.encoding import batch_order, collate, encode
from benchmark.model.training import TrainConfig, cross_entropy_loss, micro_batches, train
from benchmark.testing import FAST_RECIPE


def test_dynamic_padding_and_length_groups(tiny_tokenizer, demo_small):
    data = encode(tiny_tokenizer, demo_small.train, 64)
    assert encode(tiny_tokenizer, demo_small.train, 64) is data  # tokenized once
    batches = batch_order(data.lengths, 16, shuffle=True, group_by_length=True, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(len(data)))
    batch = collate(data, batches[0])
    assert batch["input_ids"].shape[1] == max(data.lengths[i] for i in batches[0])
    assert batch["attention_mask"].sum() == sum(data.lengths[i] for i in batches[0])
    spread_grouped = sum(max(data.lengths[i] for i in b) - min(data.lengths[i] for i in b) for b in batches)
    random_order = batch_order(data.lengths, 16, shuffle=True, group_by_length=False, seed=0)
    spread_random = sum(max(data.lengths[i] for i in b) - min(data.lengths[i] for i in b) for b in random_order)
    assert spread_grouped < spread_random


def test_same_seed_same_weights(tiny_model, tiny_tokenizer, demo_small, cpu_fp32):
    data = encode(tiny_tokenizer, demo_small.train[:64], 64)
    runs = []
    for _ in range(2):
        model = tiny_model()
        train(model, data, TrainConfig(epochs=1, lr=1e-3, batch_size=16), cpu_fp32, seed=5)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_trainable_filter_and_post_step(tiny_model, tiny_tokenizer, demo_small, cpu_fp32):
    data = encode(tiny_tokenizer, demo_small.train[:32], 64)
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = []
    train(model, data, TrainConfig(epochs=1, lr=1e-3, batch_size=16), cpu_fp32, seed=0,
          trainable=lambda name, p: name.startswith("classifier"), post_step=lambda m, s: steps.append(s))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"classifier.weight", "classifier.bias"}
    assert steps == [0, 1]
    assert all(p.requires_grad for p in model.parameters())  # restored after training


def test_non_finite_loss_is_reported(tiny_model, tiny_tokenizer, demo_small, cpu_fp32):
    data = encode(tiny_tokenizer, demo_small.train[:16], 64)
    with pytest.raises(TrainingError, match="non-finite loss .* at step 0"):
        train(tiny_model(), data, FAST_RECIPE, cpu_fp32, seed=0,
              loss_fn=lambda model, batch: torch.tensor(math.nan, requires_grad=True))


def test_bf16_autocast_trains(tiny_model, tiny_tokenizer, demo_small):
    from benchmark.model.runtime import Runtime

    data = encode(tiny_tokenizer, demo_small.train, 64)
    model = tiny_model()
    stats = train(model, data, FAST_RECIPE, Runtime(torch.device("cpu"), "bf16"), seed=0)
    assert math.isfinite(stats.final_loss) and stats.tokens == data.num_tokens * FAST_RECIPE.epochs
    assert next(model.parameters()).dtype == torch.float32  # master weights stay fp32


def test_keep_mask_has_dropouts_distribution():
    from benchmark.model.kernels import keep_mask

    torch.manual_seed(0)
    mask = keep_mask((400, 500), 0.1)
    assert mask.dtype == torch.bool and mask.shape == (400, 500)
    dropped = 1 - mask.float().mean().item()
    assert abs(dropped - 0.1) < 4 * (0.09 / mask.numel()) ** 0.5  # four standard deviations
    # neighbours are independent: P(both kept) = 0.81 within noise, for each of the 4 pieces of a word
    flat = mask.flatten().float()
    for lag in (1, 2, 3, 4):
        both = (flat[:-lag] * flat[lag:]).mean().item()
        assert abs(both - 0.81) < 0.005
    torch.manual_seed(0)
    assert torch.equal(keep_mask((400, 500), 0.1), mask)  # torch's seed decides the mask


def test_fast_dropout_scales_and_masks_the_gradient():
    from benchmark.model.kernels import dropout

    torch.manual_seed(1)
    x = torch.randn(64, 64, requires_grad=True)
    y = dropout(x, 0.25)
    y.sum().backward()
    kept = y != 0
    assert torch.allclose(y[kept], x.detach()[kept] / 0.75)
    assert torch.equal(x.grad != 0, kept) and torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.75))
    assert dropout(x, 0.25, training=False) is x


def test_fast_training_swaps_kernels_and_restores_them(tiny_model):
    from benchmark.model.kernels import ATTENTION_NAME, FastDropout, fast_training

    model = tiny_model()
    before = [type(m) for m in model.modules()]
    implementation = model.config._attn_implementation
    with fast_training(model, torch.device("cpu")):
        assert any(isinstance(m, FastDropout) for m in model.modules())
        assert model.config._attn_implementation == ATTENTION_NAME
    assert [type(m) for m in model.modules()] == before
    assert model.config._attn_implementation == implementation


def test_fast_attention_matches_the_models_own_without_dropout(tiny_model, tiny_tokenizer, demo_small):
    from benchmark.model.kernels import fast_training

    model = tiny_model()
    model.eval()
    batch = collate(encode(tiny_tokenizer, demo_small.train[:8], 64), range(8))
    reference = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    for module in model.modules():  # the fast path is taken only with dropout: force it with p → 0
        if hasattr(module, "dropout") and isinstance(module.dropout, torch.nn.Dropout):
            module.dropout.p = 1e-9
    with fast_training(model, torch.device("cpu")):
        model.train()
        torch.manual_seed(0)
        fast = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(fast, reference, atol=1e-5)


def test_bf16_training_is_repeatable_with_fast_kernels(tiny_model, tiny_tokenizer, demo_small):
    from benchmark.model.runtime import Runtime

    data = encode(tiny_tokenizer, demo_small.train[:64], 64)
    runs = []
    for _ in range(2):
        model = tiny_model()
        train(model, data, TrainConfig(epochs=1, lr=1e-3, batch_size=16), Runtime(torch.device("cpu"), "bf16"), seed=3)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_non_finite_loss_found_in_a_group_names_its_step():
    """The grouped check that CUDA uses reports the first bad step, as the per-step check does."""
    from benchmark.model.training import _check_finite

    steps = [(i, 0, torch.tensor(v)) for i, v in enumerate([0.5, 0.4, math.nan, 0.3])]
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at step 2 \(epoch 1\)"):
        _check_finite(steps)
    ok = [(0, 0, torch.tensor(0.5))]
    _check_finite(ok)
    assert ok == []


def test_attention_maps_leave_the_models_attention_implementation(tiny_model, tiny_tokenizer, demo_small):
    from benchmark import forward_internals

    model = tiny_model()
    implementation = model.config._attn_implementation
    batch = collate(encode(tiny_tokenizer, demo_small.train[:4], 64), range(4))
    out = forward_internals(model, batch)
    assert len(out.attentions) == model.config.num_hidden_layers
    assert model.config._attn_implementation == implementation


def test_on_epoch_end_sees_each_epoch_without_changing_the_run(tiny_model, tiny_tokenizer, demo_small, cpu_fp32):
    data = encode(tiny_tokenizer, demo_small.train, 64)
    recipe = FAST_RECIPE.replace(epochs=3)
    seen = []

    def look(model, epoch):
        seen.append((epoch, model.training, torch.is_grad_enabled()))

    watched, plain = tiny_model(), tiny_model()
    train(watched, data, recipe, cpu_fp32, seed=0, on_epoch_end=look)
    train(plain, data, recipe, cpu_fp32, seed=0)
    assert seen == [(1, False, False), (2, False, False), (3, False, False)]
    assert all(torch.equal(a, b) for a, b in zip(watched.state_dict().values(), plain.state_dict().values()))


def test_micro_batches_split_evenly_in_order_within_the_token_budget():
    lengths = [10] * 7 + [40]
    indices = list(range(8))
    assert micro_batches(indices, lengths, None) == [indices]
    assert micro_batches(indices, lengths, 8 * 40) == [indices]  # fits: one pass
    parts = micro_batches(indices, lengths, 100)  # 2 samples of the longest per pass -> 4 parts of 2
    assert parts == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert all(len(p) * 40 <= 100 for p in parts)
    assert [len(p) for p in micro_batches(indices, lengths, 120)] == [3, 3, 2]  # sizes differ by one at most
    assert micro_batches(indices, lengths, 10) == [[i] for i in indices]  # one sample is the floor


def test_micro_batched_step_equals_the_whole_batch_step(tiny_model, tiny_tokenizer, demo_small, cpu_fp32):
    """Without dropout, accumulating sample-weighted micro-batch losses gives the whole batch's
    gradient up to summation order: the weights after an epoch agree to float precision."""
    data = encode(tiny_tokenizer, demo_small.train[:48], 64)
    longest = max(data.lengths)
    states, passes = [], []
    for budget in (None, 4 * longest):  # the batch holding the longest sequence runs as 4 passes
        model = tiny_model()
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        calls = []

        def counted(model, batch, calls=calls):
            calls.append(len(batch["labels"]))
            return cross_entropy_loss(model, batch)

        train(model, data, TrainConfig(epochs=1, lr=1e-3, batch_size=16, max_batch_tokens=budget), cpu_fp32, seed=3,
              loss_fn=counted)
        states.append(model.state_dict())
        passes.append(calls)
    whole, split = states
    assert passes[0] == [16, 16, 16]  # one pass per batch without a budget
    assert len(passes[1]) > 3 and sum(passes[1]) == 48  # more passes than batches, every sample once
    assert all(torch.allclose(whole[k], split[k], atol=1e-5) for k in whole)
    assert not all(torch.equal(whole[k], split[k]) for k in whole)  # it did split (summation order differs)


def test_max_batch_tokens_is_keyed_only_when_set():
    assert "max_batch_tokens" not in TrainConfig().as_dict()  # cell ids of runs without it unchanged
    assert TrainConfig(max_batch_tokens=1024).as_dict()["max_batch_tokens"] == 1024
