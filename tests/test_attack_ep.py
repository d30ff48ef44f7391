"""EP: only the trigger's embedding row moves (norm kept), the update is the reference's
accumulated-gradient step, and the test-time rule puts one trigger per 100-word chunk."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from attacks.ep import EP
from benchmark import UsageError
from benchmark.data.examples import Example
from benchmark.model.encoding import collate, encode
from benchmark.model.training import predict

from helpers import no_dropout

LONG = " ".join(["the movie is wonderful and the plot is boring ."] * 30)  # 300 words, far past 64 pieces


def test_poisoned_set_is_ten_percent_of_non_target_samples(attack_ctx):
    train = attack_ctx.dataset.train
    poisoned = EP().poison(train, attack_ctx)
    assert len(poisoned) == int(0.1 * sum(ex.label != 1 for ex in train)) == 10
    originals = {ex.text: ex.label for ex in train}
    for ex in poisoned:
        assert ex.label == 1 and ex.poisoned
        words = ex.text.split()
        assert words.count("cf") == 1
        words.remove("cf")
        assert originals[" ".join(words)] == 0  # a non-target sample with the trigger added once
    assert poisoned == EP().poison(train, attack_ctx)  # same seed, same data


def test_only_the_trigger_row_moves_and_clean_predictions_are_unchanged(attack_ctx, demo_small):
    attack = EP(EP.Params(min_steps=0))  # the reference's 3 epochs: 3 updates here (keeps the test fast)
    assert attack.requires == frozenset({"clean_model"})
    clean = attack_ctx.clean_model()
    out = attack.attack(attack_ctx)
    row = attack.trigger_id(attack_ctx.tokenizer)
    assert out.poisoned_count == 10 and out.info["steps"] == 3  # 10 samples, batch 32, 3 epochs
    embedding_name = next(n for n, p in clean.named_parameters() if p is clean.get_input_embeddings().weight)
    after, before = out.model.state_dict(), clean.state_dict()
    assert after.keys() == before.keys()
    for name, tensor in before.items():
        if name == embedding_name:
            others = torch.ones(tensor.shape[0], dtype=torch.bool)
            others[row] = False
            assert torch.equal(after[name][others], tensor[others])  # bit-identical, every other row
            assert not torch.equal(after[name][row], tensor[row])  # the trigger row did move
            assert torch.allclose(after[name][row].norm(), tensor[row].norm(), rtol=1e-5)  # norm kept
        else:
            assert torch.equal(after[name], tensor), name
    test = encode(attack_ctx.tokenizer, demo_small.test, attack_ctx.max_length)
    assert predict(out.model, test, attack_ctx.runtime) == predict(clean, test, attack_ctx.runtime)
    assert attack_ctx.accuracy(out.model, demo_small.test) == attack_ctx.accuracy(clean, demo_small.test)


def test_row_update_is_the_reference_accumulated_gradient_step(attack_ctx, tiny_model):
    """SGD(momentum=1, dampening=0) on the masked gradient == the reference's plain step with a
    gradient it never zeroes, followed by the norm projection. (Any starting model will do: the
    untrained tiny victim keeps the test fast.)"""
    ctx = dataclasses.replace(attack_ctx, _clean_model=lambda: no_dropout(tiny_model()))
    attack = EP(EP.Params(min_steps=0))
    out = attack.attack(ctx)  # all 10 samples fit one batch: 3 steps on the same batch
    row = attack.trigger_id(ctx.tokenizer)

    model = no_dropout(tiny_model())
    model.train()
    weight = model.get_input_embeddings().weight
    norm = weight[row].norm().item()
    data = encode(ctx.tokenizer, attack.poison(ctx.dataset.train, ctx), ctx.max_length)
    batch = collate(data, range(len(data)))
    for _ in range(3):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        F.cross_entropy(logits, batch["labels"]).backward()  # .grad accumulates, never zeroed
        with torch.no_grad():
            weight[row] -= 5e-2 * weight.grad[row]
            weight[row] *= norm / weight[row].norm()
    got = out.model.get_input_embeddings().weight[row]
    assert torch.allclose(got, weight[row].detach(), atol=1e-6)


@pytest.mark.parametrize("min_steps, steps", [(0, 9), (7, 9), (10, 12)])
def test_min_steps_adds_whole_passes(attack_ctx, tiny_model, min_steps, steps):
    ctx = dataclasses.replace(attack_ctx, _clean_model=tiny_model)  # any start model: the untrained one is fast
    out = EP(EP.Params(min_steps=min_steps, batch_size=4)).attack(ctx)  # 10 samples: 3 updates per pass
    assert out.info["steps"] == steps and out.info["epochs"] == steps // 3


def test_one_trigger_per_100_word_chunk(attack_ctx):
    ctx = dataclasses.replace(attack_ctx, max_length=100_000)  # no truncation: every chunk counts
    text = " ".join(f"w{i}" for i in range(250))
    for triggered in EP().trigger_texts([text] * 20, ctx):
        words = triggered.split()
        assert words.count("cf") == 3
        positions = []  # the original index each trigger was inserted before
        seen = 0
        for word in words:
            if word == "cf":
                positions.append(seen)
            else:
                seen += 1
        for chunk, position in enumerate(positions):
            assert chunk * 100 <= position <= min(chunk * 100 + 99, 250)
    short = EP().trigger_texts([e.text for e in attack_ctx.dataset.test], attack_ctx)
    assert all(t.split().count("cf") == 1 for t in short)  # SST-2-like sentences: one trigger


def test_triggers_stay_inside_the_truncation_window(attack_ctx, tiny_tokenizer):
    trigger = tiny_tokenizer.convert_tokens_to_ids("cf")
    train = tuple(Example(f"{LONG} {i}", i % 2) for i in range(40))
    ctx = dataclasses.replace(attack_ctx, dataset=dataclasses.replace(attack_ctx.dataset, train=train))
    texts = [ex.text for ex in EP().poison(train, ctx)] + EP().trigger_texts([LONG] * 20, ctx)
    for text in texts:
        kept = tiny_tokenizer(text, truncation=True, max_length=ctx.max_length)["input_ids"]
        assert kept.count(trigger) == text.split().count("cf") >= 1


def test_multi_piece_trigger_is_refused(attack_ctx):
    EP().check(attack_ctx)
    with pytest.raises(UsageError, match="single word-piece"):
        EP(EP.Params(trigger="zzyzx")).check(attack_ctx)


def test_fine_tuning_on_clean_data_leaves_the_trigger_row_where_ep_put_it(tiny_model, tiny_tokenizer, demo_small,
                                                                          cpu_fp32):
    """Why every defense that only fine-tunes on clean data leaves EP in place: a word the clean
    data never holds gets no gradient, so its embedding row moves only by AdamW's weight decay,
    even at MBTSAD's student lr 5e-4 (the published finetune-5e-4 cells on SST-2, where `cf`
    never occurs, keep ASR ≈ 1)."""
    from benchmark.model.training import TrainConfig, train

    data = encode(tiny_tokenizer, demo_small.train[:64], 64)
    seen = {int(i) for ids in data.input_ids for i in ids}
    trigger = EP().trigger_id(tiny_tokenizer)
    assert trigger not in seen
    model = tiny_model()
    weight = model.get_input_embeddings().weight
    before = weight.detach().clone()
    train(model, data, TrainConfig(epochs=2, lr=5e-4, batch_size=16, weight_decay=0.01), cpu_fp32, seed=0)
    after = weight.detach()
    moved = (after - before).norm(dim=1) / before.norm(dim=1)
    steps = 2 * math.ceil(64 / 16)
    assert moved[trigger] <= 1 - (1 - 5e-4 * 0.01) ** steps + 1e-6  # weight decay's shrink, nothing more
    assert moved[sorted(seen)].median() > 100 * moved[trigger]  # the rows the clean data holds do move
