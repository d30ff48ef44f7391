"""The cost model (benchmark.base.workload, benchmark.model.calibration, benchmark.harness.estimate):
every built-in plugin declares its workload, the workloads follow the algorithms' loops, the grid
is counted by phase as the run builds it (one clean model per seed, one attacked model per
scenario, one defense and one evaluation per cell), and validate prints it."""

from __future__ import annotations

import dataclasses

import pytest

from benchmark import Sizes, Workload
from benchmark.cli import main
from benchmark.harness.cells import HarnessConfig
from benchmark.harness.estimate import estimate_cells
from benchmark.harness.runner import check_config
from benchmark.model.calibration import measure_throughput
from benchmark.model.encoding import encode
from benchmark.model.runtime import resolve_runtime
from benchmark.plugins.registry import default_registry
from benchmark.testing import cells, demo_dataset, load_tokenizer, model_factory

SIZES = Sizes(train=1000, train_tokens=25_000, clean=200, clean_tokens=5_000, dev=100, dev_tokens=2_500,
              test=300, test_tokens=7_500, triggered=150, triggered_tokens=3_750, victim_epochs=3, defense_epochs=2)


@pytest.mark.parametrize("kind", ["attack", "defense"])
def test_every_builtin_plugin_declares_its_workload(kind):
    registry = default_registry()
    for name in registry.names(kind):
        cls = registry.get(kind, name)
        work = cls(cls.Params()).workload(SIZES)
        assert isinstance(work, Workload) and work.train_tokens >= 0 and work.eval_tokens >= 0, name
        assert "not declared" not in work.note, name


def test_workloads_follow_the_algorithms_loops():
    registry = default_registry()

    def work(kind, name, **params):
        cls = registry.get(kind, name)
        return cls(cls.Params(**params)).workload(SIZES)

    assert work("defense", "none") == Workload()
    assert work("defense", "finetune").train_tokens == 2 * 5_000  # the recipe's epochs over the clean data
    assert work("defense", "finetune", epochs=5).train_tokens == 5 * 5_000
    nad = work("defense", "nad")
    assert nad.train_tokens == 2 * 2 * 5_000 and nad.eval_tokens == 2 * 5_000  # teacher + student, teacher's forward
    mbtsad = work("defense", "mbtsad")
    assert mbtsad.train_tokens == 2 * 4 * 5_000 + 2 * 5_000  # stage 1 on the clean data and 3 copies
    assert work("defense", "fine_mixing", rho=0.3).train_tokens == 2 * 5_000
    assert work("defense", "fine_mixing").train_tokens == 5 * 2 * 5_000  # at most the whole grid
    assert work("defense", "strip", repeat=4).eval_tokens == 4 * (0.5 * 2_500 + 7_500 + 3_750)
    assert work("defense", "moderate_fitting").train_tokens == 10 * 25_000
    assert work("attack", "badnets").train_tokens == 3 * 25_000
    assert work("attack", "external").train_tokens == 0


def test_a_defense_that_declares_nothing_is_counted_as_fine_tuning_and_says_so():
    from benchmark import Defense

    class Quiet(Defense):
        name = "quiet"
        requires = frozenset({"clean_data"})

        @dataclasses.dataclass(frozen=True)
        class Params:
            pass

    work = Quiet(Quiet.Params()).workload(SIZES)
    assert work.train_tokens == 2 * 5_000 and "not declared" in work.note


def test_calibration_measures_seconds_per_token(tiny_victim_dir):
    data = encode(load_tokenizer(tiny_victim_dir), demo_dataset(0, n_train=64).train, 32)
    rate = measure_throughput(model_factory(tiny_victim_dir)(), data, resolve_runtime("cpu", "fp32"), batch_size=8,
                              batches=2)
    assert rate.train_s_per_token > 0 and rate.eval_s_per_token > 0 and rate.peak_gflops > 0
    assert rate.threads >= 1


def test_the_grid_is_counted_as_the_run_builds_it(tmp_path, tiny_victim_dir):
    grid = cells(tiny_victim_dir, attacks=("badnets", "addsent"), defenses=("none", "finetune", "bki"), seeds=(0,))
    config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32", isolation="process")
    resolved, harness = check_config(grid, config)
    estimate = estimate_cells(resolved, harness, workers=2, threads=1)
    counts = {name: phase.count for name, phase in estimate.phases.items()}
    assert counts == {"clean-train": 1, "attack": 2, "defense": 6, "retrain": 2, "evaluation": 6}
    assert estimate.wall_seconds == pytest.approx(estimate.worker_seconds / 2)
    assert all(phase.seconds >= 0 for phase in estimate.phases.values())
    assert estimate.phases["defense"].seconds > 0
    assert "calibration" in estimate.text() and "retrain" in estimate.text()
    assert not (tmp_path / "store").exists()  # nothing trained, nothing stored


def test_validate_prints_the_estimate_and_run_dry_run_is_validate(tmp_path, tiny_victim_dir, capsys):
    args = ["--victim", str(tiny_victim_dir), "--out", str(tmp_path / "o"), "--store", str(tmp_path / "s")]
    assert main(["validate", *args]) == 0
    text = capsys.readouterr().out
    assert "expected cost of" in text and "clean-train" in text and "us per training token" in text
    assert main(["run", "--dry-run", *args]) == 0
    assert "expected cost of" in capsys.readouterr().out
    assert not (tmp_path / "o" / "records.jsonl").exists()
    assert main(["validate", "--no-estimate", *args]) == 0
    assert "expected cost" not in capsys.readouterr().out


def test_a_run_with_the_estimate_records_each_cells_expected_phases(tmp_path, tiny_victim_dir):
    from benchmark.harness.runner import run_cells

    grid = cells(tiny_victim_dir, attacks=("badnets",), defenses=("none", "finetune"), seeds=(0,))
    config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32", isolation="none")
    records = run_cells(grid, config, tmp_path / "out", estimate=True)
    assert [r["status"] for r in records] == ["ok", "ok"]
    for record in records:
        assert set(record["expected_s"]) == {"clean-train", "attack", "defense", "evaluation"}
    none, finetune = records
    assert none["expected_s"]["defense"] == 0 and finetune["expected_s"]["defense"] > 0
    assert none["expected_s"]["attack"] == finetune["expected_s"]["attack"] > 0  # the scenario's one build
    plain = run_cells(grid, dataclasses.replace(config, store_dir=str(tmp_path / "store2")), tmp_path / "out2")
    assert all("expected_s" not in r for r in plain)
