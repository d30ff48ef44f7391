"""NAD on the tiny BERT: the teacher is the FT baseline, frozen and untouched by the student's
training; β is calibrated on the step-0 losses; the student moves."""

from __future__ import annotations

import pytest
import torch

from benchmark import DefenseOutput, ThreatModelError, clone_model
from defenses.nad import NAD


@pytest.fixture
def backdoored(tiny_model, make_defense_ctx):
    """A tiny classifier trained for one epoch (a stand-in for θ_B, far from its FT teacher)."""
    model = tiny_model()
    ctx = make_defense_ctx()
    ctx.finetune(model, ctx.clean_data, epochs=1)
    return model


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("variant", ["activation", "attention_map"])
def test_teacher_is_frozen_and_unchanged_by_student_training(backdoored, make_defense_ctx, variant):
    ctx = make_defense_ctx()
    expected_teacher = clone_model(backdoored)
    ctx.finetune(expected_teacher, ctx.clean_data)  # the FT baseline, same recipe and seed
    before = state(backdoored)
    out = NAD(NAD.Params(variant=variant, epochs=2)).purify(backdoored, ctx)
    assert isinstance(out, DefenseOutput)
    teacher = out.aux_models["teacher"]
    assert not teacher.training
    assert not any(q.requires_grad for q in teacher.parameters())
    for key, value in state(expected_teacher).items():  # bit-identical to FT: the student's steps left it alone
        assert torch.equal(teacher.state_dict()[key], value), key
    moved = [k for k, v in before.items() if v.is_floating_point() and not torch.equal(out.model.state_dict()[k], v)]
    assert moved, "the student was not trained"
    assert out.model is not teacher


def test_beta_is_calibrated_on_step0_losses(backdoored, make_defense_ctx):
    info = NAD(NAD.Params(epochs=1)).purify(backdoored, make_defense_ctx()).info
    assert info["beta_calibrated"] and info["at_step0"] > 0
    assert info["weighted_at_step0"] == pytest.approx(info["ce_step0"], rel=1e-6)
    assert info["layers"] == [1, 2]


def test_fixed_beta_and_layers(backdoored, make_defense_ctx):
    info = NAD(NAD.Params(beta=100.0, layers=(2,), epochs=1)).purify(backdoored, make_defense_ctx()).info
    assert info["beta"] == 100.0 and not info["beta_calibrated"] and info["layers"] == [2]


def test_nad_cannot_reach_pretrained_weights(make_defense_ctx):
    ctx = make_defense_ctx(NAD.requires)
    assert NAD.requires == frozenset({"clean_data"})
    with pytest.raises(ThreatModelError, match="pretrained_weights"):
        ctx.pretrained_model()
