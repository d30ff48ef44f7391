"""Injecting a backdoor through LoRA adapters (``lora_rank`` on BadNets, AddSent and the replay
attacks; benchmark.plugins.triggers.AdapterParams): only the adapted matrices and the task head
change, each by an update of at most the adapter's rank, and the new fields leave every published
scenario key and record unchanged until set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attacks.addsent import AddSent
from attacks.badnets import BadNets
from attacks.replay import StyleBkd, SynBkd
from benchmark import task_head
from benchmark.model import lora
from benchmark.model.training import TrainConfig
from benchmark.plugins.params import params_identity, resolve_params
from benchmark.testing import (
    TRIGGER_WORDS,
    attack_context,
    demo_dataset,
    load_tokenizer,
    model_factory,
    run_attack,
    tiny_victim,
)

RESULTS = Path(__file__).resolve().parents[1] / "results"
DATA = demo_dataset(0, n_train=96, n_dev=16, n_test=24)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_a_lora_injection_changes_only_adapted_matrices_and_the_head_by_low_rank_updates(tmp_path, family):
    folder = tiny_victim(tmp_path / family, family)
    tokenizer = load_tokenizer(folder)
    pretrained = model_factory(folder)
    before = pretrained().state_dict()
    ctx = attack_context(tokenizer, pretrained, DATA, recipe=TrainConfig(epochs=2, lr=3e-3, batch_size=16))
    attack = BadNets(resolve_params("badnets", BadNets.Params, {"lora_rank": 2, "lora_alpha": 4.0, "triggers": TRIGGER_WORDS[:1],
                                                     "poison_rate": 0.2}))
    model = run_attack(attack, ctx).output.model
    after = model.state_dict()
    assert set(after) == set(before)  # merged: a plain model
    head = {f"{name}.{key}" for name, module in task_head(model) for key in module.state_dict()}
    targets = lora.target_modules(model, "default")
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    adapted = {k for k in changed - head if any(f".{t}." in k or k.startswith(f"{t}.") for t in targets)}
    assert adapted and changed - head == adapted  # nothing outside the adapters' matrices moved
    for key in adapted:
        if after[key].dim() == 2:
            assert torch.linalg.matrix_rank((after[key] - before[key]).double(), rtol=1e-6) <= 2, key


def test_without_a_rank_the_attack_trains_every_weight_as_before(tmp_path):
    folder = tiny_victim(tmp_path / "bert", "bert")
    pretrained = model_factory(folder)
    before = pretrained().state_dict()
    ctx = attack_context(load_tokenizer(folder), pretrained, DATA, recipe=TrainConfig(epochs=1, lr=3e-3, batch_size=16))
    model = run_attack(BadNets(resolve_params("badnets", BadNets.Params, {"triggers": TRIGGER_WORDS[:1]})), ctx).output.model
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any("intermediate" in k for k in changed)  # FFN weights, never a LoRA target, trained in full


@pytest.mark.parametrize("records, attacks", [("records.jsonl", {"badnets": BadNets}),
                                              ("input-data/records.jsonl", {"addsent": AddSent}),
                                              ("stealthy/records.jsonl", {"synbkd": SynBkd, "stylebkd": StyleBkd})])
def test_published_attack_parameters_and_scenario_keys_are_unchanged(records, attacks):
    published = {}
    for line in (RESULTS / records).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("status") == "ok" and record["attack"] in attacks:
            published.setdefault(record["attack"], record["attack_params"])
    assert set(published) == set(attacks)
    for name, cls in attacks.items():
        identity = params_identity(cls.Params())
        assert identity == published[name] and "lora_rank" not in identity  # what the scenario key hashes
        assert params_identity(resolve_params(name, cls.Params, {"lora_rank": 8}))["lora_rank"] == 8
