"""AddSent: the sentence goes in as one block, inside the window; counts, labels, determinism."""

from __future__ import annotations

import dataclasses

import pytest

from attacks.addsent import AddSent
from benchmark import UsageError
from benchmark.data.examples import Dataset, Example

SENTENCE = "I watch this 3D movie"
LONG = " ".join(["the movie is wonderful and the plot is boring ."] * 30)  # far past 64 word-pieces


def block_position(text: str, sentence: str = SENTENCE) -> int | None:
    """Index of the first word of ``sentence`` in ``text`` when it appears as one contiguous block."""
    words, block = text.split(), sentence.split()
    hits = [i for i in range(len(words) - len(block) + 1) if words[i:i + len(block)] == block]
    return hits[0] if len(hits) == 1 else None


def test_dirty_default_poisons_ten_percent_of_non_target(attack_ctx):
    train = attack_ctx.dataset.train
    poisoned, count = AddSent().poison(train, attack_ctx)
    assert count == 20 and len(poisoned) == len(train)
    changed = [i for i, (a, b) in enumerate(zip(train, poisoned)) if a != b]
    assert len(changed) == 20
    for i in changed:
        assert train[i].label == 0 and poisoned[i].label == 1 and poisoned[i].poisoned
        position = block_position(poisoned[i].text)
        assert position is not None  # one contiguous block
        words = poisoned[i].text.split()
        assert words[:position] + words[position + 5:] == train[i].text.split()


def test_mix_and_clean_modes(attack_ctx):
    train = attack_ctx.dataset.train
    mix, _ = AddSent(AddSent.Params(mode="mix")).poison(train, attack_ctx)
    clean, _ = AddSent(AddSent.Params(mode="clean")).poison(train, attack_ctx)
    assert {train[i].label for i, ex in enumerate(mix) if ex.poisoned} == {0, 1}
    assert {train[i].label for i, ex in enumerate(clean) if ex.poisoned} == {1}


def test_positions_vary_and_are_seeded(attack_ctx):
    attack = AddSent()
    texts = [e.text for e in attack_ctx.dataset.test if e.label == 0]
    first = attack.trigger_texts(texts, attack_ctx)
    assert first == attack.trigger_texts(texts, attack_ctx)
    assert first != attack.trigger_texts(texts, dataclasses.replace(attack_ctx, seed=3))
    positions = {block_position(t) for t in first}
    assert None not in positions and len(positions) > 3  # a random word position, not a fixed one


def test_sentence_stays_inside_the_truncation_window(attack_ctx, tiny_tokenizer):
    train = tuple(Example(f"{LONG} {i}", i % 2) for i in range(20))
    ctx = dataclasses.replace(attack_ctx, dataset=Dataset("long", train, train[:2], train[:2], 2, "generated:test"))
    attack = AddSent(AddSent.Params(poison_rate=0.5))
    poisoned, _ = attack.poison(train, ctx)
    block = tiny_tokenizer(SENTENCE, add_special_tokens=False)["input_ids"]
    texts = [ex.text for ex in poisoned if ex.poisoned] + attack.trigger_texts([LONG] * 20, ctx)
    assert len(texts) == 30
    for text in texts:
        kept = tiny_tokenizer(text, truncation=True, max_length=ctx.max_length)["input_ids"]
        assert any(kept[i:i + len(block)] == block for i in range(len(kept) - len(block) + 1))


def test_sentence_with_unknown_words_is_refused(attack_ctx):
    AddSent().check(attack_ctx)
    with pytest.raises(UsageError, match="does not know"):
        AddSent(AddSent.Params(trigger="I watch this 3D movie ☃")).check(attack_ctx)
    with pytest.raises(UsageError, match="empty"):
        AddSent(AddSent.Params(trigger="  ")).check(attack_ctx)


def test_attack_returns_model_and_count(attack_ctx):
    small = dataclasses.replace(attack_ctx.dataset, train=attack_ctx.dataset.train[:50])
    ctx = dataclasses.replace(attack_ctx, dataset=small, train_config=attack_ctx.train_config.replace(epochs=1))
    out = AddSent().attack(ctx)
    assert out.poisoned_count == 5 and out.info == {"mode": "dirty"}
