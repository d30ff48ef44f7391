"""Helpers for harness-level tests: a fast budget and a one-call runner over the tiny victim."""

from __future__ import annotations

from benchmark.config import Budget, PluginSpec
from benchmark.runner import CellSpec, HarnessConfig, run_cells
from benchmark.training import TrainConfig

TINY_RECIPE = TrainConfig(epochs=4, lr=3e-3, batch_size=16, warmup_ratio=0.1)
TINY_BUDGET = Budget(train_limit=200, test_limit=80, dev_limit=40, max_length=48,
                     victim_training=TINY_RECIPE, defense_training=TrainConfig(epochs=1, lr=1e-3, batch_size=16))


# The integration tests' real-MiniLM scenarios (SST-2, seed 0): 1000 training and 400 test samples at 64
# word-pieces, the victim at 4 epochs of lr 1e-4 (on so few samples BadNets' four rare words need the
# passes before the flipped labels stop costing clean accuracy). Every integration file uses this
# budget (dev and clean-data sizes may differ: they are not part of a scenario's key), so that
# with the session's ``integration_store`` each scenario is trained once.
INTEGRATION_BUDGET = Budget(train_limit=1000, test_limit=400, max_length=64,
                            victim_training=TrainConfig(epochs=4, lr=1e-4, batch_size=32, warmup_ratio=0.1))


def cells(victim, attacks=("badnets",), defenses=("none",), seeds=(0,), dataset="demo", budget=TINY_BUDGET):
    return [CellSpec(dataset, str(victim), PluginSpec(a, a), PluginSpec(d, d), s, budget)
            for a in attacks for s in seeds for d in defenses]


def run(tmp_path, victim, registry=None, resume=False, overrides=(), **kwargs):
    config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32", overrides=overrides)
    return run_cells(cells(victim, **kwargs), config, tmp_path / "out", resume=resume, registry=registry)
