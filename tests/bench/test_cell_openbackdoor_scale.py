"""One full BadNets cell at OpenBackdoor's scale, for comparison with its reported cost.

OpenBackdoor, on the project's 2-core machine, needs about 330 s of wall time for BadNets on the
full sst2-openbackdoor training set (MiniLM, 2 epochs, batch 32, max length 128, lr 2e-5; CACC
0.861, ASR 0.999). This benchmark runs the same cell through the harness (clean reference model
excluded from the timed attack phase) and stores wall time, CACC and ASR in extra_info.
"""

from __future__ import annotations

from benchmark.config import Budget, PluginSpec
from benchmark.runner import CellSpec, HarnessConfig, run_cells
from benchmark.training import TrainConfig


def test_badnets_full_sst2_cell(benchmark, real_data, tmp_path):
    budget = Budget(max_length=128, victim_training=TrainConfig(epochs=2, lr=2e-5, batch_size=32, warmup_ratio=0.1))
    cell = CellSpec("sst2-openbackdoor", "all-minilm-l6-v2", PluginSpec("badnets", "badnets"),
                    PluginSpec("none", "none"), 0, budget)
    config = HarnessConfig(store_dir=str(tmp_path / "store"), data_dir=str(real_data))

    def run():
        return run_cells([cell], config, tmp_path / "out")[0]

    record = benchmark.pedantic(run, rounds=1, iterations=1)
    attack_wall = record["attack_cost"]["wall_s"]
    benchmark.extra_info.update({"attack_wall_s": attack_wall, "cacc": record["cacc"], "asr": record["asr"],
                                 "cacc_clean": record["cacc_clean"], "openbackdoor_wall_s": 330,
                                 "speedup_vs_openbackdoor": round(330 / attack_wall, 2)})
    print(f"\nBadNets attack phase {attack_wall:.0f} s (OpenBackdoor ~330 s): {330 / attack_wall:.1f}x; "
          f"CACC {record['cacc']:.3f}, ASR {record['asr']:.3f}, clean model CACC {record['cacc_clean']:.3f}")
    assert record["status"] == "ok"
