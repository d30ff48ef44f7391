"""OpenBackdoor's own BadNets cell (the ``openbackdoor-cell`` suite), against its cost.

The suite is OpenBackdoor's BadNets configuration on the full sst2-openbackdoor training set:
all-MiniLM-L6-v2, lr 2e-5 × 2 epochs, batch 32, no warm-up, max length 128, dirty-label poison
rate 0.1. This benchmark runs it through the harness and prints, in one line, the wall time of
each phase, the cell less its clean-reference phase, peak RSS, CACC and ASR, the attack's real
tokens per second and their share of this machine's measured matrix-multiply peak
(``benchmark.model.calibration``). results/README.md ("Speed and memory") has the figures and OpenBackdoor's
on the same machine (docs: ../shared/docs/openbackdoor-baseline.md).

Run: ``pytest tests/bench/test_cell_openbackdoor_scale.py -s`` (needs ../shared/data or BDBENCH_DATA).
"""

from __future__ import annotations

import time

import torch

from benchmark.harness.cells import HarnessConfig, expand
from benchmark.harness.config import suite_from_toml
from benchmark.harness.runner import run_cells
from benchmark.model import calibration as peak  # the matmul peak and FLOP counts
from benchmark.model.runtime import resolve_runtime
from benchmark.model.victims import load_classifier, resolve_victim
from benchmark.plugins.registry import read_registry_toml


def test_openbackdoor_cell(benchmark, real_data, tmp_path, capsys):
    suite = suite_from_toml("openbackdoor-cell", read_registry_toml())
    cells = expand(suite)
    assert len(cells) == 1
    config = HarnessConfig(store_dir=str(tmp_path / "store"), data_dir=str(real_data))
    runtime = resolve_runtime("auto", "auto")
    dtype = torch.bfloat16 if runtime.precision == "bf16" else torch.float32
    peak_gflops = peak.matmul_peak_gflops(dtype, device=runtime.device)  # before the cell, on an idle process

    def run():
        start = time.perf_counter()
        record = run_cells(cells, config, tmp_path / "out")[0]
        record["total_s"] = time.perf_counter() - start
        return record

    record = benchmark.pedantic(run, rounds=1, iterations=1)
    assert record["status"] == "ok", record.get("error")
    clean, attack = record["clean_cost"], record["attack_cost"]
    rest = record["total_s"] - clean["wall_s"]
    victim = load_classifier(resolve_victim(cells[0].victim).location, 2)
    tokens_s = attack["train_tokens"] / attack["wall_s"]
    share = peak.share_of_peak(peak.training_flops(victim, attack["train_tokens"]), attack["wall_s"], peak_gflops)
    peak_rss = max(clean["peak_rss_mb"], attack["peak_rss_mb"], record["peak_rss_mb"])
    benchmark.extra_info.update({"clean_wall_s": clean["wall_s"], "attack_wall_s": attack["wall_s"],
                                 "cell_less_clean_s": round(rest, 1), "peak_rss_mb": peak_rss,
                                 "cacc": record["cacc"], "asr": record["asr"], "tokens_per_s": round(tokens_s),
                                 "matmul_peak_gflops": round(peak_gflops), "share_of_peak": round(share, 3),
                                 "threads": torch.get_num_threads(), "precision": runtime.precision})
    with capsys.disabled():
        print(f"\nopenbackdoor-cell: clean {clean['wall_s']:.0f} s, attack {attack['wall_s']:.0f} s, cell less clean "
              f"{rest:.0f} s; peak RSS {peak_rss:.0f} MB (attack {attack['peak_rss_mb']:.0f}); CACC {record['cacc']:.4f}"
              f", ASR {record['asr']:.4f}; {tokens_s:.0f} real tokens/s = {share:.0%} of the measured "
              f"{runtime.precision} matmul peak ({peak_gflops:.0f} GFLOP/s, {torch.get_num_threads()} threads)")
