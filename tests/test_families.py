"""Every built-in attack and defense on a tiny random victim of every supported family (the
encoders BERT, RoBERTa, DistilBERT, ELECTRA, DeBERTa-v2 and the decoders GPT-2, Llama, Qwen2), run through ``benchmark.testing.run_attack`` /
``run_defense`` (the contract of each plugin's kind), and one harness cell per family.

Not run per family, and why:

* ``onion`` never reads the victim: it rewrites inputs with its own causal language model
  (``tests/test_onion.py``), so the victim's family cannot matter to it;
* the ``external`` attack trains nothing: it loads the backdoored model it is given, checked
  against the victim by parameter names and shapes (``tests/test_attack_external.py``);
* ``cube`` reads the victim only through ``ctx.cls_embeddings`` (generic ``hidden_states[-1][:, 0]``),
  which ``bki`` exercises here on every family; its UMAP step costs seconds of JIT compilation
  (``tests/test_cube.py``).
"""

from __future__ import annotations

import math

import pytest

from benchmark.harness.config import Budget
from benchmark.model.training import TrainConfig
from benchmark.model.victims import load_tokenizer
from benchmark.plugins.registry import default_registry
from benchmark.testing import (
    FAMILIES,
    attack_context,
    defense_context,
    demo_dataset,
    model_factory,
    run,
    run_attack,
    run_defense,
    tiny_victim,
)

DATA = demo_dataset(1, n_train=48, n_dev=24, n_test=16)
RECIPE = TrainConfig(epochs=1, lr=3e-3, batch_size=16)
BUDGET = Budget(train_limit=48, test_limit=16, dev_limit=16, max_length=48, victim_training=RECIPE,
                defense_training=RECIPE)
ATTACKS = [("badnets", {}), ("addsent", {}), ("ep", {"min_steps": 2}), ("lwp", {}),
           ("sos", {"triggers": ("cf", "mn", "bb"), "test_trigger": "cf mn bb", "epochs": 1}),
           ("synbkd", {}), ("stylebkd", {}), ("replay", {})]
REPLAYS = {"synbkd", "stylebkd", "replay"}  # given a rewrite folder of DATA (the rewrites fixture)
DEFENSES = [
    ("none", {}), ("finetune", {}), ("lora_finetune", {"rank": 2}), ("fine_pruning", {"step": 0.5}), ("nad", {}), ("nad", {"variant": "attention_map"}),
    ("mbtsad", {"copies": 1}), ("fine_mixing", {"rho": 0.5, "e_pur": True, "e_pur_top": 5}), ("reinit", {"k": 1}),
    ("reinit", {"mode": "head"}), ("reinit", {"k": 1, "to": "random"}), ("strip", {"repeat": 2}),
    ("rap", {"epochs": 1}), ("bki", {}), ("abl", {"unlearn_epochs": 1}),
    ("moderate_fitting", {"epochs": 1}), ("muscle_lora", {"epochs": 1, "reference_size": 8}),
]
NOT_PER_FAMILY = {"onion", "cube"}  # the module docstring says why
ATTACKS_NOT_PER_FAMILY = {"external"}  # likewise


@pytest.fixture(scope="session")
def victim(tmp_path_factory):
    built = {}

    def get(family):
        if family not in built:
            built[family] = tiny_victim(tmp_path_factory.mktemp(family), family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def rewrites(tmp_path_factory):
    """A rewrite folder of DATA (benchmark.data.rewrites): every row prefixed, labels kept."""
    folder = tmp_path_factory.mktemp("rewrites")
    for split in ("train", "test"):
        rows = "".join(f"when it was so , {ex.text}\t{ex.label}\n" for ex in DATA.split(split))
        (folder / f"{split}.tsv").write_text("sentence\tlabel\n" + rows)
    return folder


def case_id(case):
    name, params = case
    return name + "".join(f"-{k}={v}" for k, v in params.items())


def test_every_builtin_is_covered():
    registry = default_registry()
    assert {n for n, _ in ATTACKS} | ATTACKS_NOT_PER_FAMILY == set(registry.names("attack"))
    assert {n for n, _ in DEFENSES} | NOT_PER_FAMILY == set(registry.names("defense"))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", ATTACKS, ids=case_id)
def test_attack_on_family(victim, rewrites, family, case):
    name, params = case
    if name in REPLAYS:
        params = {**params, "poisoned_dir": str(rewrites)}
    folder = victim(family)
    cls = default_registry().get("attack", name)
    ctx = attack_context(load_tokenizer(folder), model_factory(folder), DATA, recipe=RECIPE, name=name)
    result = run_attack(cls(cls.Params(**params)), ctx)
    assert math.isfinite(ctx.accuracy(result.output.model, DATA.test))
    assert result.triggered != [ex.text for ex in DATA.test if ex.label != 1]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", DEFENSES, ids=case_id)
def test_defense_on_family(victim, family, case):
    name, params = case
    folder = victim(family)
    cls = default_registry().get("defense", name)
    pretrained = model_factory(folder)
    ctx = defense_context(load_tokenizer(folder), DATA, cls.requires, pretrained=pretrained, recipe=RECIPE, name=name)
    result = run_defense(cls(cls.Params(**params)), pretrained(), ctx)
    assert math.isfinite(ctx.accuracy(result.model, DATA.test))


@pytest.mark.parametrize("family", FAMILIES)
def test_harness_cell_on_family(victim, family, tmp_path):
    """The whole pipeline: fresh seeded head, BadNets, an isolated defense process, evaluation."""
    records = run(tmp_path, victim(family), defenses=("finetune",), budget=BUDGET)
    assert [r["status"] for r in records] == ["ok"], records[0].get("error")
    assert 0 <= records[0]["cacc"] <= 1 and 0 <= records[0]["asr"] <= 1
