"""LWP: combinatorial poisoning (positives, negatives), adjacency, window, false-trigger set,
and a layerwise loss that covers every encoder layer."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from attacks.lwp import LWP, layer_losses, layerwise_loss
from benchmark import UsageError
from benchmark.data.examples import Dataset, Example
from benchmark.model.encoding import collate, encode

PIECES = {"cf", "bb"}
LONG = " ".join(["the movie is wonderful and the plot is boring ."] * 30)  # far past 64 word-pieces


def pieces_in(text: str) -> list[str]:
    return [w for w in text.split() if w in PIECES]


def adjacent(text: str) -> bool:
    words = text.split()
    return any({words[i], words[i + 1]} == PIECES for i in range(len(words) - 1))


def without_pieces(text: str) -> list[str]:
    return [w for w in text.split() if w not in PIECES]


def test_chosen_samples_become_one_positive_and_one_negative_per_piece(attack_ctx):
    train = attack_ctx.dataset.train
    poisoned, count = LWP().poison(train, attack_ctx)
    assert count == int(0.2 * len(train)) == 40  # share of the whole training set
    assert len(poisoned) == len(train) + 2 * count
    positives = [ex for ex in poisoned if ex.poisoned and len(pieces_in(ex.text)) == 2]
    negatives = [ex for ex in poisoned if ex.poisoned and len(pieces_in(ex.text)) == 1]
    assert len(positives) == count and len(negatives) == 2 * count
    assert all(ex.label == 1 and adjacent(ex.text) for ex in positives)
    untouched = [ex for ex in poisoned if not ex.poisoned]
    assert len(untouched) == len(train) - count and all(not pieces_in(ex.text) for ex in untouched)
    # every chosen original is gone, replaced by its three variants (true label on the negatives)
    originals = {ex.text: ex.label for ex in train}
    remaining = {ex.text for ex in untouched}
    chosen = [t for t in originals if t not in remaining]
    assert len(chosen) == count
    assert {originals[t] for t in chosen} == {0, 1}  # drawn from all labels (reference, OpenBackdoor)
    for neg in negatives:
        assert neg.label == originals[" ".join(without_pieces(neg.text))]
    assert {tuple(pieces_in(ex.text)) for ex in negatives} == {("cf",), ("bb",)}


def test_both_orders_and_scattered_variant(attack_ctx):
    texts = [e.text for e in attack_ctx.dataset.test if e.label == 0]
    adjacent_texts = LWP().trigger_texts(texts, attack_ctx)
    assert all(adjacent(t) and sorted(pieces_in(t)) == ["bb", "cf"] for t in adjacent_texts)
    assert {tuple(pieces_in(t)) for t in adjacent_texts} == {("cf", "bb"), ("bb", "cf")}
    scattered = LWP(LWP.Params(placement="scattered")).trigger_texts(texts, attack_ctx)
    assert all(sorted(pieces_in(t)) == ["bb", "cf"] for t in scattered)
    assert not all(adjacent(t) for t in scattered)
    assert all(without_pieces(t) == o.split() for t, o in zip(scattered, texts))


def test_false_trigger_set_has_single_pieces_only(attack_ctx):
    texts = [e.text for e in attack_ctx.dataset.test if e.label == 0]
    extra = LWP().extra_test_sets(texts, attack_ctx)
    assert set(extra) == {"false_trigger"}
    singles = extra["false_trigger"]
    assert len(singles) == len(texts)
    assert all(len(pieces_in(t)) == 1 for t in singles)
    assert {pieces_in(t)[0] for t in singles} == PIECES  # both pieces are tested
    assert all(without_pieces(t) == o.split() for t, o in zip(singles, texts))


def test_positions_respect_max_position_and_window(attack_ctx, tiny_tokenizer):
    text = " ".join(["wonderful"] * 40)  # 40 words, inside the window
    attack = LWP(LWP.Params(max_position=5))
    for t in attack.trigger_texts([text] * 30, attack_ctx):
        assert t.split().index(pieces_in(t)[0]) <= 5
    train = tuple(Example(f"{LONG} {i}", i % 2) for i in range(20))
    ctx = dataclasses.replace(attack_ctx, dataset=Dataset("long", train, train[:2], train[:2], 2, "generated:test"))
    poisoned, _ = LWP(LWP.Params(poison_rate=0.5)).poison(train, ctx)
    attack = LWP()
    texts = ([ex.text for ex in poisoned if ex.poisoned] + attack.trigger_texts([LONG] * 10, ctx)
             + attack.extra_test_sets([LONG] * 10, ctx)["false_trigger"])
    ids = {tiny_tokenizer.convert_tokens_to_ids(p) for p in PIECES}
    for t in texts:
        kept = tiny_tokenizer(t, truncation=True, max_length=ctx.max_length)["input_ids"]
        assert sum(i in ids for i in kept) == len(pieces_in(t)) > 0


def test_same_seed_same_poisoned_data(attack_ctx):
    first, _ = LWP().poison(attack_ctx.dataset.train, attack_ctx)
    again, _ = LWP().poison(attack_ctx.dataset.train, attack_ctx)
    other, _ = LWP().poison(attack_ctx.dataset.train, dataclasses.replace(attack_ctx, seed=5))
    assert first == again and first != other


def test_layerwise_loss_covers_every_layer(tiny_model, tiny_tokenizer, demo_small):
    model = tiny_model()
    model.eval()  # no dropout: terms are comparable with a manual computation
    batch = collate(encode(tiny_tokenizer, demo_small.train[:8], 64), range(8))
    terms = layer_losses(model, batch)
    n_layers = model.config.num_hidden_layers
    assert len(terms) == n_layers + 1  # the pooled output plus one term per encoder layer
    assert torch.allclose(layerwise_loss(model, batch), torch.stack(terms).sum())
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    assert torch.allclose(terms[0], F.cross_entropy(out.logits, batch["labels"]))
    for layer in range(1, n_layers + 1):  # term l reads layer l's [CLS] through the shared head
        manual = F.cross_entropy(model.classifier(out.hidden_states[layer][:, 0]), batch["labels"])
        assert torch.allclose(terms[layer], manual)
        model.zero_grad()
        terms = layer_losses(model, batch)
        terms[layer].backward()
        for k in range(n_layers):
            grads = [p.grad for n, p in model.named_parameters() if f"encoder.layer.{k}." in n]
            reached = any(g is not None and g.abs().sum() > 0 for g in grads)
            assert reached == (k < layer), (layer, k)  # layers up to l, none above
        assert model.classifier.weight.grad.abs().sum() > 0


def test_check_refuses_bad_triggers(attack_ctx):
    LWP().check(attack_ctx)
    with pytest.raises(UsageError, match="single word-piece"):
        LWP(LWP.Params(triggers=("cf", "zzyzx"))).check(attack_ctx)
    with pytest.raises(UsageError, match="at least two"):
        LWP(LWP.Params(triggers=("cf",))).check(attack_ctx)


def test_attack_trains_with_the_layerwise_loss(attack_ctx, monkeypatch):
    import attacks.lwp as lwp

    calls = []
    monkeypatch.setattr(lwp, "layerwise_loss", lambda model, batch: calls.append(1) or layerwise_loss(model, batch))
    small = dataclasses.replace(attack_ctx.dataset, train=attack_ctx.dataset.train[:50])
    ctx = dataclasses.replace(attack_ctx, dataset=small, train_config=attack_ctx.train_config.replace(epochs=1))
    out = LWP().attack(ctx)
    assert out.poisoned_count == 10 and out.info["train_size"] == 70 and out.info["negatives"] == 20
    assert len(calls) == 5  # every step (70 samples, batch 16) used the layerwise loss
