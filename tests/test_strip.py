"""STRIP (defenses/strip.py): each input's entropy comes from its own perturbations only."""

from __future__ import annotations

import torch

from defenses.strip import STRIP


def _fitted(make_defense_ctx, tiny_model, **params):
    ctx = make_defense_ctx({"clean_dev"})
    model = tiny_model()
    strip = STRIP(STRIP.Params(**params))
    strip.fit(model, ctx)
    return strip, model, ctx


def test_entropy_uses_only_that_inputs_perturbations(make_defense_ctx, tiny_model, demo_small):
    strip, model, ctx = _fitted(make_defense_ctx, tiny_model)
    a, b, c = (ex.text for ex in demo_small.test[:3])
    together = strip.entropies(model, [a, b, c], ctx)
    assert strip.entropies(model, [a], ctx)[0] == together[0]
    assert strip.entropies(model, [c, b, a], ctx) == together[::-1]
    # by hand: the mean entropy of a's own copies
    probs = ctx.probabilities(model, strip.copies(a, ctx))
    by_hand = float((-(probs * torch.log2(probs)).sum(-1)).mean())
    assert abs(by_hand - together[0]) < 1e-5
    assert strip.score(model, [a], ctx) == [-together[0]]


def test_perturbation_replaces_words_with_donor_words(make_defense_ctx, tiny_model):
    strip, _, ctx = _fitted(make_defense_ctx, tiny_model, swap_ratio=0.5, repeat=3)
    donors = {w for words in strip._donor_words for w in words}
    text = "one two three four five six"
    for copy in strip.copies(text, ctx):
        changed = [w for w, o in zip(copy.split(), text.split()) if w != o]
        assert changed and set(changed) <= donors and len(copy.split()) == 6


def test_threshold_meets_the_frr_on_calibration(make_defense_ctx, tiny_model):
    strip, model, ctx = _fitted(make_defense_ctx, tiny_model, frr=0.1)
    calibration = strip.calibrate(model, ctx)
    assert calibration.dev_frr <= 0.1 and calibration.size == len(strip._calibration)
    assert not set(strip._calibration) & {w for ws in strip._donor_words for w in ws if " " in w}
