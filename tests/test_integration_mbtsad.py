"""MBTSAD end to end through the runner: real MiniLM, real SST-2 subset, BadNets (slow; integration).

Small budget: 1000 training samples (200 clean for the defender), 400 test samples, 64
word-pieces, the default victim and defense recipes; about 150 CPU-seconds (80-90 s on 2 free
cores). Seen at seed 0: backdoored CACC 0.830 / ASR 0.815 -> MBTSAD 0.805 / 0.265 (teacher 0.843 / 0.540).
"""

from __future__ import annotations

import pytest

from benchmark.config import Budget, PluginSpec
from benchmark.runner import CellSpec, HarnessConfig, run_cells
from benchmark.victims import DEFAULT_VICTIM

pytestmark = pytest.mark.integration

CACC_TOLERANCE = 0.05  # purified CACC may fall at most 5 points below the backdoored model's
ASR_REDUCTION = 0.30  # ASR must fall by at least 30 points


def test_mbtsad_removes_badnets_on_sst2(real_data, tmp_path):
    budget = Budget(train_limit=1000, test_limit=400, max_length=64, clean_fraction=0.2)
    cells = [CellSpec("sst2-openbackdoor", DEFAULT_VICTIM, PluginSpec("badnets", "badnets"),
                      PluginSpec(name, name), 0, budget) for name in ("none", "mbtsad")]
    config = HarnessConfig(store_dir=str(tmp_path / "store"), data_dir=str(real_data))
    none, mbtsad = run_cells(cells, config, tmp_path / "out")
    assert none["status"] == "ok" and mbtsad["status"] == "ok", mbtsad.get("error")
    print({k: (none[k], mbtsad[k]) for k in ("cacc", "asr")}, mbtsad["aux"], mbtsad["defense_info"])

    assert none["asr"] > 0.7 and none["cacc"] > 0.75  # the attack worked on a working classifier
    assert mbtsad["asr"] <= none["asr"] - ASR_REDUCTION, (none["asr"], mbtsad["asr"])
    assert mbtsad["cacc"] >= none["cacc"] - CACC_TOLERANCE, (none["cacc"], mbtsad["cacc"])
    assert set(mbtsad["aux"]["teacher"]) >= {"cacc", "asr"}  # the teacher is scored beside the student
    assert mbtsad["defense_info"]["augmented_size"] == 3 * mbtsad["clean_size"]
