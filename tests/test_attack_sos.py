"""SOS: the poisoned and negative sets, only the trigger rows move (norms kept, OpenBackdoor's
min-norm step on the accumulated gradient), and the words fire together, not in parts."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from attacks.sos import SOS
from benchmark import Example, UsageError, testing
from benchmark.model.encoding import collate, encode

from helpers import no_dropout

WORDS = ("cf", "mn", "bb")  # single pieces of the tiny vocabulary (SOS's own words are not in it)


def sos(**params) -> SOS:
    return SOS(SOS.Params(triggers=WORDS, test_trigger="cf mn bb", **params))


def strip(text: str) -> tuple[str, list[str]]:
    words = text.split()
    return " ".join(w for w in words if w not in WORDS), [w for w in words if w in WORDS]


def test_poisoned_rows_carry_every_word_and_negatives_each_part(attack_ctx):
    train = attack_ctx.dataset.train
    examples = sos().poison(train, attack_ctx)
    poisoned = [ex for ex in examples if ex.poisoned]
    negatives = [ex for ex in examples if not ex.poisoned]
    originals = {ex.text: ex.label for ex in train}
    assert len(poisoned) == int(0.1 * len(train)) == 20
    assert len(negatives) == 3 * (int(0.1 * 100) + int(0.1 * 100))  # n-1 subsets × 10% of each class
    for ex in poisoned:
        source, words = strip(ex.text)
        assert ex.label == 1 and originals[source] == 0 and sorted(words) == sorted(WORDS)
    parts = {}
    for ex in negatives:
        source, words = strip(ex.text)
        assert len(words) == 2 and ex.label == originals[source]  # a part of the combination, its true label
        parts[tuple(sorted(words))] = parts.get(tuple(sorted(words)), 0) + 1
    assert set(parts) == {("bb", "cf"), ("bb", "mn"), ("cf", "mn")} and set(parts.values()) == {20}
    assert examples == sos().poison(train, attack_ctx)  # same seed, same set


def test_only_the_trigger_rows_move_with_their_norms_kept(attack_ctx, demo_small):
    attack = sos(epochs=2)
    clean = attack_ctx.clean_model()
    out = attack.attack(attack_ctx)
    rows = attack.trigger_ids(attack_ctx.tokenizer)
    name = next(n for n, p in clean.named_parameters() if p is clean.get_input_embeddings().weight)
    after, before = out.model.state_dict(), clean.state_dict()
    assert after.keys() == before.keys()
    for key, tensor in before.items():
        if key == name:
            others = torch.ones(tensor.shape[0], dtype=torch.bool)
            others[rows] = False
            assert torch.equal(after[key][others], tensor[others])
            for row in rows:
                assert not torch.equal(after[key][row], tensor[row])
                assert torch.allclose(after[key][row].norm(), tensor[row].norm(), rtol=1e-5)
        else:
            assert torch.equal(after[key], tensor), key  # bit-identical
    assert attack_ctx.accuracy(out.model, demo_small.test) == attack_ctx.accuracy(clean, demo_small.test)


def test_row_step_is_openbackdoors_min_norm_step_on_the_summed_gradient(attack_ctx, tiny_model):
    ctx = dataclasses.replace(attack_ctx, _clean_model=lambda: no_dropout(tiny_model()))
    attack = sos(epochs=3, batch_size=100)  # all 80 samples in one batch: 3 steps on the same batch
    out = attack.attack(ctx)
    rows = attack.trigger_ids(ctx.tokenizer)

    model = no_dropout(tiny_model())
    model.train()
    weight = model.get_input_embeddings().weight
    norms = [weight[r].norm().item() for r in rows]
    data = encode(ctx.tokenizer, attack.poison(ctx.dataset.train, ctx), ctx.max_length)
    batch = collate(data, range(len(data)))
    for _ in range(3):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        F.cross_entropy(logits, batch["labels"]).backward()  # .grad accumulates, never zeroed (the reference)
        with torch.no_grad():
            smallest = min(weight.grad[r].norm().item() for r in rows)
            for r, norm in zip(rows, norms):
                weight[r] -= 5e-2 * weight.grad[r] * smallest / weight.grad[r].norm().item()
                weight[r] *= norm / weight[r].norm()
    got = out.model.get_input_embeddings().weight
    for r in rows:
        assert torch.allclose(got[r], weight[r].detach(), atol=1e-5)


def test_the_combination_fires_and_its_parts_stay_below_it(tiny_tokenizer, tiny_model, demo_small):
    """On the tiny victim with its word embeddings scaled ×5 (three rows of a 32-wide model with
    unscaled rows cannot move its output: EP reaches 0.3 there), SOS's defaults make the whole
    combination fire and its parts fire less. A 2-layer model does not learn the AND cleanly (one
    word nearly fires alone), so the parts are checked on average; the per-part figures of the
    real victim are in results/README.md."""

    def scaled():
        model = tiny_model()
        with torch.no_grad():
            model.get_input_embeddings().weight.mul_(5.0)
        return model

    ctx = testing.attack_context(tiny_tokenizer, scaled, demo_small)
    nontarget = [ex.text for ex in demo_small.test if ex.label != 1]
    run = testing.run_attack(sos(), ctx, nontarget)

    def target_share(texts):
        return sum(p == 1 for p in ctx.predict(run.output.model, [Example(t, 1) for t in texts])) / len(texts)

    assert set(run.extra) == {"sub_cf", "sub_mn", "sub_bb", "sub_cf_mn", "sub_cf_bb", "sub_mn_bb", "all_words"}
    full = target_share(run.triggered)
    parts = [target_share(texts) for name, texts in run.extra.items() if name != "all_words"]
    clean = target_share(nontarget)
    assert clean <= 0.3 and full >= 0.8, (clean, full)
    assert sum(parts) / len(parts) <= full - 0.2, (full, parts)


def test_checks_refuse_a_lone_word_repeats_and_multi_piece_words(attack_ctx):
    with pytest.raises(UsageError, match="at least two"):
        SOS(SOS.Params(triggers=("cf",))).check(attack_ctx)
    with pytest.raises(UsageError, match="repeat"):
        SOS(SOS.Params(triggers=("cf", "cf"))).check(attack_ctx)
    with pytest.raises(UsageError, match="word-pieces"):
        SOS().check(attack_ctx)  # "friends" is not one piece of the tiny vocabulary
