"""RAP (defenses/rap.py): the protected model never changes; the clean-dev threshold holds on test."""

from __future__ import annotations

import pytest
import torch

from benchmark import UsageError
from benchmark.data.demo import make_demo
from benchmark.plugins.contexts import DefenseContext
from defenses.rap import RAP


@pytest.fixture(scope="module")
def trained(tiny_victim_dir, tiny_tokenizer, cpu_fp32):
    from benchmark.model.victims import load_classifier
    from benchmark.testing import FAST_RECIPE

    data = make_demo(1, n_train=200, n_dev=400, n_test=400)
    model = load_classifier(tiny_victim_dir, 2)
    ctx = DefenseContext(tokenizer=tiny_tokenizer, runtime=cpu_fp32, max_length=64, seed=0, train_config=FAST_RECIPE,
                         defense_name="rap", requires=frozenset({"clean_dev", "target_label"}),
                         _clean_dev=data.dev, _target_label=1)
    ctx.finetune(model, data.train)
    return model, ctx, data


def test_rap_never_changes_the_model_it_protects(trained):
    model, ctx, data = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rap = RAP(RAP.Params(epochs=2))
    rap.fit(model, ctx)
    rap.calibrate(model, ctx)
    rap.score(model, [ex.text for ex in data.test[:20]], ctx)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    word = ctx.tokenizer.convert_tokens_to_ids("cf")
    own = rap._rap_model.get_input_embeddings().weight[word]
    assert not torch.equal(own, model.get_input_embeddings().weight[word])  # it trained its own copy
    assert torch.allclose(own.norm(), model.get_input_embeddings().weight[word].norm(), atol=1e-4)  # norm kept


def test_dev_threshold_gives_test_frr_near_the_target(trained):
    model, ctx, data = trained
    rap = RAP(RAP.Params(frr=0.1))
    rap.fit(model, ctx)
    calibration = rap.calibrate(model, ctx)
    scores = rap.score(model, [ex.text for ex in data.test], ctx)
    test_frr = sum(s > calibration.threshold for s in scores) / len(scores)
    assert abs(test_frr - 0.1) <= 0.02, (test_frr, calibration)


def test_rap_word_must_be_one_piece(trained):
    model, ctx, _ = trained
    with pytest.raises(UsageError, match="word-pieces"):
        RAP(RAP.Params(rap_word="cfxq")).fit(model, ctx)
