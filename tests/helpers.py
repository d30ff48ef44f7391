"""The integration tests' budget (the fast budget and the one-call runner of harness-level tests
are in :mod:`benchmark.testing`), the loader of the project's ``scripts/``, a registry with extra
test defenses, and a model with its dropout off."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch

from benchmark.harness.config import Budget
from benchmark.model.training import TrainConfig
from benchmark.plugins.registry import Registry

# The integration tests' real-MiniLM scenarios (SST-2, seed 0): 1000 training and 400 test samples at 64
# word-pieces, the victim at 4 epochs of lr 1e-4 (on so few samples BadNets' four rare words need the
# passes before the flipped labels stop costing clean accuracy). Every integration file uses this
# budget (dev and clean-data sizes may differ: they are not part of a scenario's key), so that
# with the session's ``integration_store`` each scenario is trained once.
INTEGRATION_BUDGET = Budget(train_limit=1000, test_limit=400, max_length=64,
                            victim_training=TrainConfig(epochs=4, lr=1e-4, batch_size=32, warmup_ratio=0.1))


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>`` imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), SCRIPTS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def registry_with(*classes) -> Registry:
    """The built-in registry plus the defense ``classes`` (test plugins, registered by name)."""
    registry = Registry()
    registry.load_builtins()
    for cls in classes:
        registry.add("defense", cls.name, f"test:{cls.__name__}", lambda cls=cls: cls)
    return registry


def no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every dropout probability set to 0 (a deterministic training step)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model
