"""BadNets: what is poisoned, where triggers land, determinism, trigger checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attacks.badnets import BadNets
from benchmark import UsageError
from benchmark.data.examples import Dataset, Example

TRIGGERS = {"cf", "mn", "bb", "tq"}
LONG = " ".join(["the movie is wonderful and the plot is boring ."] * 30)  # ~300 words, far past 64 pieces


def long_ctx(attack_ctx, n=20):
    train = tuple(Example(f"{LONG} {i}", i % 2) for i in range(n))
    data = Dataset("long", train, train[:4], train[:4], 2, "generated:test")
    return dataclasses.replace(attack_ctx, dataset=data)


def triggers_in(text: str) -> list[str]:
    return [w for w in text.split() if w in TRIGGERS]


@pytest.mark.parametrize("mode, pool_label", [("dirty", 0), ("clean", 1), ("mix", None)])
def test_modes_choose_the_right_pool_and_relabel(attack_ctx, mode, pool_label):
    train = attack_ctx.dataset.train
    attack = BadNets(BadNets.Params(mode=mode))
    poisoned, count = attack.poison(train, attack_ctx)
    assert count == int(0.1 * len(train)) == 20  # relative to the whole training set
    assert len(poisoned) == len(train)  # poisoned samples replace their originals
    changed = [i for i, (a, b) in enumerate(zip(train, poisoned)) if a != b]
    assert len(changed) == count
    for i in changed:
        assert poisoned[i].poisoned and poisoned[i].label == 1
        if pool_label is not None:
            assert train[i].label == pool_label
        assert len(triggers_in(poisoned[i].text)) == 1
        words = poisoned[i].text.split()
        assert [w for w in words if w not in TRIGGERS] == train[i].text.split()  # only the trigger was added
    if mode == "mix":
        assert {train[i].label for i in changed} == {0, 1}


def test_count_is_capped_by_the_pool(attack_ctx):
    poisoned, count = BadNets(BadNets.Params(poison_rate=0.9)).poison(attack_ctx.dataset.train, attack_ctx)
    assert count == 100  # only 100 non-target samples exist
    assert sum(ex.poisoned for ex in poisoned) == 100


def test_num_triggers_and_trigger_set(attack_ctx):
    attack = BadNets(BadNets.Params(num_triggers=3, triggers=("mb",)))
    poisoned, _ = attack.poison(attack_ctx.dataset.train, attack_ctx)
    for ex in poisoned:
        if ex.poisoned:
            assert ex.text.split().count("mb") == 3


def test_same_seed_same_data_other_seed_other_data(attack_ctx):
    attack = BadNets()
    first, _ = attack.poison(attack_ctx.dataset.train, attack_ctx)
    again, _ = attack.poison(attack_ctx.dataset.train, attack_ctx)
    other, _ = attack.poison(attack_ctx.dataset.train, dataclasses.replace(attack_ctx, seed=1))
    assert first == again
    assert first != other
    texts = [e.text for e in attack_ctx.dataset.test]
    assert attack.trigger_texts(texts, attack_ctx) == attack.trigger_texts(texts, attack_ctx)


def test_triggers_stay_inside_the_truncation_window(attack_ctx, tiny_tokenizer):
    ctx = long_ctx(attack_ctx)
    attack = BadNets(BadNets.Params(poison_rate=0.5, mode="mix", num_triggers=2))
    poisoned, count = attack.poison(ctx.dataset.train, ctx)
    assert count == 10
    texts = [ex.text for ex in poisoned if ex.poisoned] + attack.trigger_texts([LONG] * 20, ctx)
    ids = {tiny_tokenizer.convert_tokens_to_ids(t) for t in TRIGGERS}
    for text in texts:
        kept = tiny_tokenizer(text, truncation=True, max_length=ctx.max_length)["input_ids"]
        assert sum(i in ids for i in kept) == len(triggers_in(text)) == 2


def test_test_time_trigger_on_every_text(attack_ctx):
    texts = [e.text for e in attack_ctx.dataset.test if e.label == 0]
    triggered = BadNets().trigger_texts(texts, attack_ctx)
    assert len(triggered) == len(texts)
    assert all(len(triggers_in(t)) == 1 for t in triggered)


def test_an_unknown_trigger_is_refused_and_a_multi_piece_one_is_recorded(attack_ctx):
    with pytest.raises(UsageError, match=r"trigger '☃' reads as \['\[UNK\]'\]"):
        BadNets(BadNets.Params(triggers=("cf", "☃"))).check(attack_ctx)
    BadNets().check(attack_ctx)
    small = dataclasses.replace(attack_ctx.dataset, train=attack_ctx.dataset.train[:40])
    ctx = dataclasses.replace(attack_ctx, dataset=small, train_config=attack_ctx.train_config.replace(epochs=1))
    assert "trigger_pieces" not in BadNets().attack(ctx).info  # every default trigger is one piece here
    several = BadNets(BadNets.Params(triggers=("cf", "zzyzx")))  # five known pieces
    several.check(ctx)
    assert several.attack(ctx).info["trigger_pieces"] == {"cf": ["cf"], "zzyzx": ["z", "##z", "##y", "##z", "##x"]}


def test_attack_returns_model_and_count(attack_ctx):
    small = dataclasses.replace(attack_ctx.dataset, train=attack_ctx.dataset.train[:50])
    ctx = dataclasses.replace(attack_ctx, dataset=small, train_config=attack_ctx.train_config.replace(epochs=1))
    out = BadNets().attack(ctx)
    assert out.poisoned_count == 5 and out.info == {"mode": "dirty"}
    assert isinstance(out.model, torch.nn.Module) and not out.model.training
