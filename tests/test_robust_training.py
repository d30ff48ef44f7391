"""The robust-training kind (benchmark.harness.robust, RobustTrainer) and ABL (defenses/abl.py):
the defender trains from the pre-trained weights on the poisoned set and sees neither poison
flags, nor the attacked model, nor clean data it did not declare; the cell is scored against the
same scenario; attacks without a poisoned training set get one clear error; ABL isolates mostly
poisoned samples on a tiny BadNets run."""

from __future__ import annotations

import random

import pytest
import torch
from trust_plugins import SpyTrainer

from benchmark import RobustTrainer, ThreatModelError
from benchmark.plugins.defense import Defense
from benchmark.plugins.triggers import insert_words, poison_by_mode
from benchmark.reporting.tables import build_rankings
from benchmark.testing import (
    FAST_RECIPE,
    defense_context,
    demo_dataset,
    load_tokenizer,
    model_factory,
    run,
    tiny_victim,
)
from defenses.abl import ABL

from helpers import registry_with


@pytest.fixture(scope="module")
def victim(tmp_path_factory):
    return tiny_victim(tmp_path_factory.mktemp("victim"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for the file: its tests share each scenario."""
    return tmp_path_factory.mktemp("store")


@pytest.mark.parametrize("isolation", ["process", "none"])
def test_a_robust_trainer_sees_the_bare_training_set_and_no_attacked_model(tmp_path, victim, store, isolation,
                                                                          monkeypatch):
    from benchmark.harness import defense_call

    given = []
    real = defense_call.apply_defense
    monkeypatch.setattr(defense_call, "apply_defense", lambda d, m, *a, **k: given.append(m) or real(d, m, *a, **k))
    records = run(tmp_path, victim, registry=registry_with(SpyTrainer), defenses=("spy_trainer", "none"),
                  isolation=isolation, store=store)
    spy = records[0]
    assert spy["status"] == "ok" and spy["defense_kind"] == "robust_training", spy.get("error")
    assert spy["defense_info"] == {"flags": [False], "size": 200, "clean_data": "refused"}
    assert spy["train_size"] == 200 and spy["poisoned_train_size"] == 20
    assert spy["asr_before"] == records[1]["asr"]  # scored beside the same scenario's attacked model
    if isolation == "none":
        assert given[0] is None  # never handed the attacked model (in a child, its folder holds none)


def test_the_isolated_child_gets_no_attacked_model(tmp_path, victim, store, monkeypatch):
    from benchmark.harness import isolation

    folders = []
    real = isolation.write_inputs

    def spy_inputs(folder, job, *args, **kwargs):
        real(folder, job, *args, **kwargs)
        folders.append(sorted(p.name for p in folder.iterdir()))

    monkeypatch.setattr(isolation, "write_inputs", spy_inputs)
    run(tmp_path, victim, registry=registry_with(SpyTrainer), defenses=("spy_trainer",), isolation="process",
        store=store)
    assert "model" not in folders[0] and "pretrained" in folders[0] and "tokenizer" in folders[0]


def test_a_robust_trainer_must_declare_the_training_set_and_the_weights():
    with pytest.raises(ThreatModelError, match=r"must declare \['pretrained_weights'\]"):
        class NoWeights(RobustTrainer):
            name = "no_weights"
            requires = frozenset({"poisoned_train"})
    with pytest.raises(ThreatModelError, match="only a DataFilter or RobustTrainer may declare"):
        class Peeks(Defense):
            name = "peeks"
            requires = frozenset({"poisoned_train"})


@pytest.mark.parametrize("attack", ["ep", "lwp"])
def test_weight_poisoning_attacks_are_one_clear_error(tmp_path, victim, store, attack):
    record = run(tmp_path, victim, defenses=("abl",), attacks=(attack,), isolation="none", store=store)[0]
    assert record["status"] == "failed"
    assert "robust trainers need an attack that trains the victim on a poisoned training set" in record["error"]


def test_abl_isolates_poisoned_samples_far_above_their_share_on_a_tiny_badnets_set(victim):
    """BadNets' ``cf`` on 10% of the demo training set (dirty label): after ABL's isolation
    training the 5% of lowest loss hold poisoned samples at several times their 10% share (5 of
    10 here; the tiny random model learns the task slowly, so not all of them), and unlearning
    raises their loss."""
    rng = random.Random(0)
    data = demo_dataset(0, n_train=200)
    poisoned, count = poison_by_mode(data.train, "dirty", 0.1, 1, rng, lambda text: insert_words(text, ["cf"], rng))
    ctx = defense_context(load_tokenizer(victim), data, ABL.requires, pretrained=model_factory(victim),
                          poisoned_train=poisoned, recipe=FAST_RECIPE.replace(lr=1e-2))
    output = ABL(ABL.Params(isolation_ratio=0.05, isolation_epochs=2, finetune_epochs=0, unlearn_epochs=1,
                          unlearn_lr=1e-3)).train(ctx)
    isolated = output.info["isolated"]
    assert count == 20 and len(isolated) == 10
    assert sum(poisoned[i].poisoned for i in isolated) >= 3, isolated  # a random 10 would hold 1
    assert output.info["isolated_loss_mean"] < output.info["rest_loss_mean"]
    assert output.info["isolated_loss_after"] > output.info["isolated_loss_mean"]  # unlearning raised their loss


def test_robust_training_records_rank_in_their_own_section(tmp_path, victim, store):
    records = run(tmp_path, victim, registry=registry_with(SpyTrainer), defenses=("none", "spy_trainer"),
                  isolation="none", store=store)
    assert [label for label, _ in build_rankings(records)] == ["model purification", "robust training"]


def test_abl_loss_ascends_below_gamma():
    abl = ABL(ABL.Params(gamma=0.5))

    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = torch.nn.Parameter(logits)

        def forward(self, input_ids, attention_mask):
            return type("Out", (), {"logits": self.logits})()

    batch = {"input_ids": None, "attention_mask": None, "labels": torch.tensor([0, 0])}
    confident = Fixed(torch.tensor([[4.0, 0.0], [-4.0, 0.0]]))  # losses ≈ 0.018 (below γ) and 4.02 (above)
    loss = abl.lga_loss(confident, batch)
    loss.backward()
    grad = confident.logits.grad
    assert grad[0, 0] > 0 and grad[1, 0] < 0  # the learnt sample is pushed back up, the other one down
