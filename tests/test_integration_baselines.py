"""Integration: Fine-mixing removes most of a BadNets backdoor from the real MiniLM on real SST-2,
through the harness (scenario preparation, the defense context, evaluation, records).

Small on purpose (about a minute on 2 CPU cores, most of it training the clean and the
backdoored victims): 400 training samples, 200 test and dev samples, max_length 48. At this
size a 10% BadNets backdoor reaches an ASR of about 0.6 (clean model: about 0.2, from the
sentiment of the inserted position alone); Fine-mixing at a fixed ρ = 0.2 brings it to about 0.3
while CACC moves by under 5 points (measured with bf16 and fp32 alike). The assertions leave
room for other machines: ASR down by at least 0.15, CACC within 0.10 of the backdoored model's.
"""

from __future__ import annotations

import pytest

from benchmark.config import Budget, PluginSpec
from benchmark.runner import CellSpec, HarnessConfig, run_cells
from benchmark.training import TrainConfig

pytestmark = pytest.mark.integration

CACC_TOLERANCE = 0.10  # the purified model's CACC may fall at most this far below the backdoored one's
MIN_ASR_REDUCTION = 0.15

BUDGET = Budget(
    train_limit=400, test_limit=200, dev_limit=200, max_length=48, clean_fraction=0.25,
    # a higher lr than the suites' so that 400 samples implant the backdoor and learn the task
    victim_training=TrainConfig(epochs=3, lr=1e-4, batch_size=16, warmup_ratio=0.1),
    # 100 clean samples: the same higher lr so that fine-tuning recovers the mixed model
    defense_training=TrainConfig(epochs=3, lr=1e-4, batch_size=16, warmup_ratio=0.1, weight_decay=0.01),
)


def test_fine_mixing_reduces_badnets_asr_on_sst2(real_data, tmp_path):
    cell = CellSpec("sst2-openbackdoor", "all-minilm-l6-v2", PluginSpec("badnets", "badnets"),
                    PluginSpec("fine_mixing", "fine_mixing", (("rho", 0.2),)), 0, BUDGET)
    config = HarnessConfig(store_dir=str(tmp_path / "store"), data_dir=str(real_data), device="cpu")
    (record,) = run_cells([cell], config, tmp_path / "out")

    assert record["status"] == "ok", record.get("error")
    assert record["requires"] == ["clean_data", "clean_dev", "pretrained_weights"]
    assert record["asr_before"] >= 0.5, f"the backdoor did not take: {record['asr_before']}"
    info = record["defense_info"]
    assert info["rho"] == 0.2 and abs(info["tried"][0]["kept_share"] - 0.2) < 0.01
    assert record["asr"] <= record["asr_before"] - MIN_ASR_REDUCTION, (record["asr_before"], record["asr"])
    assert record["cacc"] >= record["cacc_before"] - CACC_TOLERANCE, (record["cacc_before"], record["cacc"])
