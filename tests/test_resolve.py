"""Plugins resolved once per run and carried on the cell; cell and scenario ids that never change."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from benchmark.base.errors import PluginError, UsageError
from benchmark.harness.cells import CellSpec, HarnessConfig, cell_identity, expand, resolve_cells
from benchmark.harness.config import Budget, suite_from_toml
from benchmark.harness.runner import validate_cells
from benchmark.harness.scenario import scenario_keys
from benchmark.model.runtime import Runtime
from benchmark.model.victims import resolve_victim
from benchmark.plugins.registry import Registry, default_registry, read_registry_toml
from benchmark.plugins.resolve import PluginSpec, ResolvedPlugin

REPO = Path(__file__).resolve().parent.parent
CPU_FP32 = Runtime(torch.device("cpu"), "fp32")
SET_EPOCHS = (("finetune", (("epochs", "1"),)),)  # --set finetune.epochs=1


def pinned_cell() -> CellSpec:
    return CellSpec("demo", "all-minilm-l6-v2", PluginSpec("badnets", "badnets", (("poison_rate", 0.2),)),
                    PluginSpec("finetune", "finetune-short", (("lr", 5e-4),)), 0, Budget(train_limit=100))


def test_set_values_reach_the_plugin_as_typed_params_once():
    calls = []
    registry = default_registry()
    original = registry.get

    def counting(kind, name):
        calls.append((kind, name))
        return original(kind, name)

    registry.get = counting
    config = HarnessConfig(store_dir="unused", overrides=SET_EPOCHS)
    cells = [pinned_cell(), dataclasses.replace(pinned_cell(), seed=1)]
    resolved = resolve_cells(cells, registry, config)
    assert sorted(calls) == [("attack", "badnets"), ("defense", "finetune")]  # once per configured plugin
    defense = resolved[0].defense
    assert isinstance(defense, ResolvedPlugin) and defense is resolved[1].defense
    assert defense.params.epochs == 1 and defense.params.lr == 5e-4  # the --set string, coerced once
    assert dict(defense.overrides) == {"lr": 5e-4, "epochs": "1"}  # as given: what the cell id hashes
    assert defense.create().params is defense.params
    assert resolve_cells(cells, registry, config) == resolved  # resolving again gives the same plugins


def test_a_bad_set_value_is_a_usage_error_naming_plugin_and_key():
    config = HarnessConfig(store_dir="unused", overrides=(("finetune", (("epochs", "many"),)),))
    with pytest.raises(UsageError, match="finetune.epochs: cannot read .many."):
        validate_cells([pinned_cell()], default_registry(), config)


def test_a_plugin_that_fails_to_import_fails_only_its_cells():
    registry = Registry()
    registry.load_builtins()

    def broken():
        raise ImportError("no module named ghost_dependency")

    registry.add("defense", "ghost", "test:ghost", broken)
    cell = CellSpec("demo", "v", PluginSpec("badnets", "badnets"), PluginSpec("ghost", "ghost"), 0, Budget())
    [resolved] = validate_cells([cell], registry, HarnessConfig(store_dir="unused"))
    assert resolved.attack.cls is not None and resolved.defense.cls is None
    with pytest.raises(PluginError, match="ghost_dependency"):
        resolved.defense.create()


def test_cell_and_scenario_ids_are_pinned():
    """These ids were computed before plugins were resolved on the cell: resuming published runs
    depends on them never changing."""
    config = HarnessConfig(store_dir="unused", overrides=SET_EPOCHS)
    [resolved] = resolve_cells([pinned_cell()], default_registry(), config)
    assert cell_identity(resolved, config, CPU_FP32)["cell_id"] == "c8129431d8a738bc"
    plain = HarnessConfig(store_dir="unused")
    [unset] = resolve_cells([pinned_cell()], default_registry(), plain)
    assert cell_identity(unset, plain, CPU_FP32)["cell_id"] == "592c2f8c80c50b4e"
    keys = scenario_keys("data-fp", resolve_victim("all-minilm-l6-v2"), "victim-fp", resolved.attack.create(), 0,
                         Budget(train_limit=100), CPU_FP32)
    assert keys == ("02147d171e9f6e5c", "a850e48fe071387e")


def test_the_published_records_ids_follow_from_the_suites():
    """``bdbench run --suite NAME ... --resume`` recognises every published cell (the paper suite's,
    the MBTSAD diagnosis's, the input-data suite's)."""
    published = [json.loads(line) for path in sorted((REPO / "results").glob("**/records.jsonl"))
                 for line in path.read_text().splitlines() if line]
    assert len({r["cell_id"] for r in published}) > 150
    table = read_registry_toml()
    config = HarnessConfig(store_dir="unused")
    cells = resolve_cells([c for name in table["suites"] for c in expand(suite_from_toml(name, table))],
                          default_registry(), config)
    runtimes = {(r["provenance"]["device_type"], r["provenance"]["precision"]) for r in published}
    ids = {cell_identity(c, config, Runtime(torch.device(device), precision))["cell_id"]
           for device, precision in runtimes for c in cells}
    assert [r["cell_id"] for r in published if r["cell_id"] not in ids] == []


def test_resume_reruns_a_cell_whose_victim_changed_and_keeps_one_current_record(tmp_path, tiny_victim_dir):
    import shutil

    from safetensors.torch import load_file, save_file

    from benchmark.base.records import read_records
    from benchmark.reporting.tables import latest_ok
    from benchmark.testing import run

    victim = tmp_path / "victim"
    shutil.copytree(tiny_victim_dir, victim)
    (first,) = run(tmp_path, victim, resume=True)
    assert run(tmp_path, victim, resume=True) == []  # unchanged: finished
    weights = load_file(victim / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + 0.01
    save_file(weights, victim / "model.safetensors", metadata={"format": "pt"})
    (second,) = run(tmp_path, victim, resume=True)  # new weights at the same path: it runs again
    assert second["cell_id"] == first["cell_id"]  # the id is unchanged (published ids stay valid)
    assert second["scenario_id"] != first["scenario_id"]
    assert second["provenance"]["victim_fingerprint"] != first["provenance"]["victim_fingerprint"]
    records = list(read_records(tmp_path / "out"))
    assert len(records) == 2 and latest_ok(records)[0] == [second]  # the old record is superseded
    assert run(tmp_path, victim, resume=True) == []
