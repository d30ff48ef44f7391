"""MBTSAD: token splitting, the distillation terms, and the whole defense on the tiny BERT."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from benchmark import DefenseOutput, Example, UsageError
from benchmark.model.encoding import collate, encode
from defenses.mbtsad import (
    MBTSAD,
    distill_terms,
    dropout_off,
    split_text,
    splittable,
    token_split,
    word_spans,
    wordpiece_spans,
)

SENTENCES = [
    "it 's a charming and often affecting journey .",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's austere locales .",
    "a gorgeous , witty , seductive movie .",
    "if you sometimes like to go to the movies to have fun , wasabi is a good place to start .",
    "unflinchingly bleak and desperate",
]


def rejoin(original: str, split: str) -> bool:
    """True when ``split``'s words are ``original``'s, some of them cut once into two pieces."""
    words, pieces = original.split(), split.split()
    i = 0
    for word in words:
        if i < len(pieces) and pieces[i] == word:
            i += 1
        elif i + 1 < len(pieces) and pieces[i] + pieces[i + 1] == word and pieces[i] and pieces[i + 1]:
            i += 2
        else:
            return False
    return i == len(pieces)


# --------------------------------------------------------------------------- token splitting

def test_token_split_statistics(demo_small):
    data = list(demo_small.train) + [Example(s, i % 2) for i, s in enumerate(SENTENCES)]
    out = token_split(data, random.Random(0), copies=3, rate=0.3)
    assert len(out) == 3 * len(data)
    total = cut = 0
    for k, ex in enumerate(out):
        original = data[k // 3]
        assert ex.label == original.label and not ex.poisoned
        assert rejoin(original.text, ex.text), (original.text, ex.text)
        total += len(original.text.split())
        cut += len(ex.text.split()) - len(original.text.split())
    assert abs(cut / total - 0.3) < 0.02  # the share is of all tokens, stochastic rounding keeps it unbiased
    assert out == token_split(data, random.Random(0), copies=3, rate=0.3)
    assert out != token_split(data, random.Random(1), copies=3, rate=0.3)


def test_split_text_cuts_inside_words_only():
    text = "a , beauty . !! x ok"
    assert [t for t in text.split() if splittable(t)] == ["beauty", "ok"]
    seen = set()
    for seed in range(200):
        out = split_text(text, word_spans(text), 1.0, random.Random(seed))  # asks for 7 cuts, 2 possible
        assert out.split()[:2] == ["a", ","] and "!!" in out.split()
        assert rejoin(text, out)
        seen.add(out)
    assert "a , be auty . !! x o k" in seen and "a , beaut y . !! x o k" in seen
    assert len(seen) == 5  # "beauty" has 5 interior cut points, "ok" one
    assert split_text(text, word_spans(text), 0.0, random.Random(0)) == text


def test_short_texts_and_rate_zero():
    assert token_split([Example("a .", 1)], random.Random(0), copies=2, rate=0.9) == [Example("a .", 1)] * 2
    assert token_split([Example("beauty", 0)], random.Random(0), copies=0) == []
    assert token_split([Example("some words here", 0)], random.Random(0), rate=0.0)[0].text == "some words here"


def test_wordpiece_unit_cuts_pieces(tiny_tokenizer):
    text = "the movie is quite clever , and stunning"
    spans = wordpiece_spans(tiny_tokenizer)(text)
    assert [text[s:e] for s, e in spans][:3] == ["the", "movie", "is"]
    out = split_text(text, spans, 1.0, random.Random(0))
    assert out.replace(" ", "") == text.replace(" ", "")
    assert out.count(" ") - text.count(" ") == sum(splittable(text[s:e]) for s, e in spans)


# --------------------------------------------------------------------------- distillation terms

@pytest.fixture
def pair(tiny_model):
    student, teacher = tiny_model(), tiny_model()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return student.eval(), teacher.eval().requires_grad_(False)


def padded_batch(tokenizer):
    data = encode(tokenizer, [Example("the movie is quite clever and moving throughout .", 1),
                              Example("dull .", 0)], 64)
    batch = collate(data, [0, 1])
    assert (batch["attention_mask"] == 0).any()
    return batch


def test_terms_present_finite_and_switchable(pair, tiny_tokenizer):
    student, teacher = pair
    batch = padded_batch(tiny_tokenizer)
    terms = distill_terms(student, teacher, batch, [1, 2])
    assert set(terms) == {"cls", "attention", "hidden"}
    assert all(torch.isfinite(v) and v > 0 for v in terms.values())
    terms["cls"].backward()
    assert student.classifier.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    off = distill_terms(student, teacher, batch, [1, 2], attentions=False, hidden=False)
    assert off["attention"] == 0 and off["hidden"] == 0 and torch.isclose(off["cls"], terms["cls"])
    same = distill_terms(teacher, teacher, batch, [1, 2], distance="kl")
    assert same["attention"].abs() < 1e-6 and same["hidden"].abs() < 1e-10


def test_padding_is_masked(pair, tiny_tokenizer):
    student, teacher = pair
    batch = padded_batch(tiny_tokenizer)
    noisy = {k: v.clone() for k, v in batch.items()}
    pad = noisy["attention_mask"] == 0
    noisy["input_ids"][pad] = torch.randint(5, 40, (int(pad.sum()),))
    for distance in ("mse", "kl"):
        a = distill_terms(student, teacher, batch, [1, 2], distance=distance)
        b = distill_terms(student, teacher, noisy, [1, 2], distance=distance)
        for key in a:
            assert torch.allclose(a[key], b[key], rtol=1e-5, atol=1e-7), key


def test_dropout_off_restores(tiny_model):
    model = tiny_model()
    before = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert before and max(before) > 0
    with dropout_off(model):
        assert all(m.p == 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == before


# --------------------------------------------------------------------------- the whole defense

@pytest.fixture
def ctx(make_defense_ctx):
    """A defense context over 60 clean demo samples, one epoch per stage (fast)."""
    made = make_defense_ctx()
    made.train_config = made.train_config.replace(epochs=1)
    return made


def run_purify(model, ctx, **params):
    """purify with a spy on ctx.finetune: the teacher's weights as stage 1 left them."""
    calls, real = [], ctx.finetune

    def spy(m, examples, **kwargs):
        if calls:  # stage 2 starts: snapshot the teacher trained in stage 1
            calls.append(copy.deepcopy(calls[0][0].state_dict()))
        calls.append((m, len(examples), kwargs))
        return real(m, examples, **kwargs)

    ctx.finetune = spy
    out = MBTSAD(MBTSAD.Params(**params)).purify(model, ctx)
    return out, calls


def test_purify_teacher_frozen_student_updated(tiny_model, ctx):
    model = tiny_model()
    original = copy.deepcopy(model.state_dict())
    out, calls = run_purify(model, ctx)
    assert isinstance(out, DefenseOutput) and out.model is model
    teacher = out.aux_models["teacher"]
    stage1, snapshot, stage2 = calls
    assert stage1[0] is teacher and stage1[1] == 60 * 4 and stage1[2]["lr"] == 2e-5
    assert stage2[0] is model and stage2[1] == 60 and stage2[2]["lr"] == 5e-4 and stage2[2]["loss_fn"]
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, snapshot[name]), name  # stage 2 left the teacher alone
    assert not teacher.training and all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert any(not torch.equal(v, original[k]) for k, v in model.state_dict().items())
    assert any(not torch.equal(v, original[k]) for k, v in teacher.state_dict().items())
    assert out.info["augmented_size"] == 180 and out.info["distill_size"] == 60
    first = out.info["loss_first"]
    assert first["attention"] > 0 and first["hidden"] > 0 and all(map(torch.isfinite, map(torch.tensor,
                                                                                          first.values())))


@pytest.mark.parametrize("params, expect", [
    ({"split_rate": 0.0}, {"augmented_size": 180, "distill_size": 60}),  # unsplit copies: same steps
    ({"copies": 0}, {"augmented_size": 0, "distill_size": 60}),
    ({"copies": 1, "distill_data": "augmented"}, {"augmented_size": 60, "distill_size": 120}),
    ({"data_share": 0.5}, {"clean_size": 30, "augmented_size": 90}),
    ({"alpha": 0.0, "beta": 0.0}, {}),
    ({"alpha": 0.0, "unit": "wordpiece", "layers": (2,)}, {}),
])
def test_ablation_switches(tiny_model, ctx, params, expect):
    out = MBTSAD(MBTSAD.Params(**params)).purify(tiny_model(), ctx)
    for key, value in expect.items():
        assert out.info[key] == value, key
    last = out.info["loss_last"]
    assert (last["attention"] == 0) == (params.get("alpha", 1) == 0)
    assert (last["hidden"] == 0) == (params.get("beta", 1) == 0)


def test_split_rate_zero_copies_the_texts_unchanged():
    data = [Example("a beautiful film", 1), Example("dull", 0)]
    assert token_split(data, random.Random(0), copies=3, rate=0.0) == [d for d in data for _ in range(3)]


def test_purify_is_deterministic(tiny_model, ctx):
    a = MBTSAD().purify(tiny_model(), ctx).model.state_dict()
    b = MBTSAD().purify(tiny_model(), ctx).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_params_raise(tiny_model, ctx):
    with pytest.raises(UsageError, match="split_rate"):
        MBTSAD(MBTSAD.Params(split_rate=1.5)).purify(tiny_model(), ctx)
