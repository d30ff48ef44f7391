"""Integration: Fine-mixing removes most of a BadNets backdoor from the real MiniLM on real SST-2,
through the harness (scenario preparation, the defense context, evaluation, records).

The BadNets scenario is ``helpers.INTEGRATION_BUDGET``'s, shared with the attacks' file through the
session's store (its ASR is at least 0.9 there); the defender gets 20% of it (200 clean samples)
and 200 dev samples. Fine-mixing at a fixed ρ = 0.2 keeps a fifth of the backdoored weights and
fine-tunes the mix at lr 1e-4 (the higher lr lets 200 samples recover the mixed model). The
assertions: ASR down by at least 0.15, CACC within 0.10 of the backdoored model's.
"""

from __future__ import annotations

import dataclasses

import pytest

from benchmark.harness.cells import CellSpec, HarnessConfig
from benchmark.harness.runner import run_cells
from benchmark.model.training import TrainConfig
from benchmark.plugins.resolve import PluginSpec

from helpers import INTEGRATION_BUDGET

pytestmark = pytest.mark.integration

CACC_TOLERANCE = 0.10  # the purified model's CACC may fall at most this far below the backdoored one's
MIN_ASR_REDUCTION = 0.15

BUDGET = dataclasses.replace(
    INTEGRATION_BUDGET, dev_limit=200, clean_fraction=0.2,
    defense_training=TrainConfig(epochs=3, lr=1e-4, batch_size=16, warmup_ratio=0.1, weight_decay=0.01))


def test_fine_mixing_reduces_badnets_asr_on_sst2(real_data, integration_store, tmp_path):
    cell = CellSpec("sst2-openbackdoor", "all-minilm-l6-v2", PluginSpec("badnets", "badnets"),
                    PluginSpec("fine_mixing", "fine_mixing", (("rho", 0.2),)), 0, BUDGET)
    config = HarnessConfig(store_dir=integration_store, data_dir=str(real_data))
    (record,) = run_cells([cell], config, tmp_path / "out")

    assert record["status"] == "ok", record.get("error")
    assert record["requires"] == ["clean_data", "clean_dev", "pretrained_weights"]
    assert record["asr_before"] >= 0.5, f"the backdoor did not take: {record['asr_before']}"
    info = record["defense_info"]
    assert info["rho"] == 0.2 and abs(info["tried"][0]["kept_share"] - 0.2) < 0.01
    assert record["asr"] <= record["asr_before"] - MIN_ASR_REDUCTION, (record["asr_before"], record["asr"])
    assert record["cacc"] >= record["cacc_before"] - CACC_TOLERANCE, (record["cacc_before"], record["cacc"])
