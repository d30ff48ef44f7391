import math

import pytest
import torch

from benchmark.encoding import batch_order, collate, encode
from benchmark.errors import TrainingError
from benchmark.training import TrainConfig, train

from conftest import FAST_RECIPE


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
    from benchmark.runtime import Runtime

    data = encode(tiny_tokenizer, demo_small.train, 64)
    model = tiny_model()
    stats = train(model, data, FAST_RECIPE, Runtime(torch.device("cpu"), "bf16"), seed=0)
    assert math.isfinite(stats.final_loss) and stats.tokens == data.num_tokens * FAST_RECIPE.epochs
    assert next(model.parameters()).dtype == torch.float32  # master weights stay fp32
