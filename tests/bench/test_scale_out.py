"""Scale-out on one machine: a grid of four fine-tuning cells over one cached scenario (real MiniLM,
SST-2 subset), through ``local`` at one thread, ``local`` at torch's default threads, and
``process``/``ray`` with two one-thread workers. Prints wall seconds and the speed-up over
``local --threads 1``; the figures in results/README.md come from this benchmark.

Each cell is the suites' shared defense recipe (3 epochs, lr varied) on the defender's 400 clean
samples, about half a minute at one thread: fixed costs (worker start, scenario load, the defense
server) weigh as they do in a real grid rather than dominating it.

Run: ``pytest tests/bench/test_scale_out.py -s`` (needs ../shared/data or BDBENCH_DATA).
"""

from __future__ import annotations

import importlib.util
import time

import pytest

from benchmark.harness.cells import CellSpec, HarnessConfig
from benchmark.harness.config import Budget
from benchmark.harness.executors import LocalExecutor, make_executor
from benchmark.harness.runner import run_cells
from benchmark.model.training import TrainConfig
from benchmark.plugins.resolve import PluginSpec

# four cells of equal cost (fine-tuning at four learning rates), so that the grid divides evenly
DEFENSES = tuple(PluginSpec("finetune", f"finetune-lr{lr}", (("lr", lr),)) for lr in (1e-5, 2e-5, 5e-5, 1e-4))
BUDGET = Budget(train_limit=2000, test_limit=400, dev_limit=200, max_length=64,
                victim_training=TrainConfig(epochs=1, lr=1e-4, batch_size=32),
                defense_training=TrainConfig(epochs=3, lr=2e-5, batch_size=32, weight_decay=0.01))


def grid() -> list[CellSpec]:
    return [CellSpec("sst2-openbackdoor", "all-minilm-l6-v2", PluginSpec("badnets", "badnets"), d, 0, BUDGET)
            for d in DEFENSES]


def test_two_one_thread_workers_against_local(tmp_path, real_data, capsys):
    config = HarnessConfig(store_dir=str(tmp_path / "store"), data_dir=str(real_data))
    run_cells(grid()[:1], config, tmp_path / "warm")  # the cached scenario every variant reuses
    variants = [("local --threads 1", lambda: LocalExecutor(threads=1)),
                ("local (default threads)", lambda: LocalExecutor()),
                ("process 2 × 1 thread", lambda: make_executor("process", workers=2, threads=1))]
    if importlib.util.find_spec("ray") is not None:
        variants.append(("ray 2 × 1 thread", lambda: make_executor("ray", workers=2, threads=1)))
    walls, metrics = {}, {}
    for name, make in variants:
        start = time.perf_counter()
        records = run_cells(grid(), config, tmp_path / name.replace(" ", "_"), executor=make())
        walls[name] = time.perf_counter() - start
        assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
        metrics[name] = [(r["cacc"], r["asr"]) for r in records]
    base = walls["local --threads 1"]
    with capsys.disabled():
        print()
        for name, wall in walls.items():
            print(f"{name:28s} {wall:7.1f} s   speed-up over local --threads 1: {base / wall:4.2f}×")
    assert metrics["process 2 × 1 thread"] == metrics["local --threads 1"]
    if "ray 2 × 1 thread" in metrics:
        assert metrics["ray 2 × 1 thread"] == metrics["local --threads 1"]
    if base / walls["process 2 × 1 thread"] < 1.6:
        pytest.fail(f"process 2 × 1 is only {base / walls['process 2 × 1 thread']:.2f}× local --threads 1")
