"""MBTSAD end to end through the runner: real MiniLM, real SST-2 subset, BadNets (slow; integration).

Its own scenario: 1000 training samples, 400 test samples, 64 word-pieces, the victim at the
default recipe (3 epochs at lr 1e-4). The defender gets 20% (200 clean samples) and MBTSAD's
defaults (teacher lr 2e-5, student lr 5e-4). Not ``helpers.INTEGRATION_BUDGET``'s scenario: its
victim's fourth epoch at lr 1e-4 writes a backdoor that a teacher at lr 2e-5 on 200 samples does
not undo (seen: ASR 0.985 -> 0.945), the lr mismatch results/README.md discusses. The student's
lr 5e-4 on 200 samples costs some clean accuracy (seen: 2.5 to 6 points). The assertions: ASR
down by at least 30 points, CACC within 8 points of the backdoored model's.
"""

from __future__ import annotations

import pytest

from benchmark.harness.cells import CellSpec, HarnessConfig
from benchmark.harness.config import Budget
from benchmark.harness.runner import run_cells
from benchmark.model.victims import DEFAULT_VICTIM
from benchmark.plugins.resolve import PluginSpec

pytestmark = pytest.mark.integration

CACC_TOLERANCE = 0.08  # purified CACC may fall at most 8 points below the backdoored model's
ASR_REDUCTION = 0.30  # ASR must fall by at least 30 points


def test_mbtsad_removes_badnets_on_sst2(real_data, integration_store, tmp_path):
    budget = Budget(train_limit=1000, test_limit=400, max_length=64, clean_fraction=0.2)
    cells = [CellSpec("sst2-openbackdoor", DEFAULT_VICTIM, PluginSpec("badnets", "badnets"),
                      PluginSpec(name, name), 0, budget) for name in ("none", "mbtsad")]
    config = HarnessConfig(store_dir=integration_store, data_dir=str(real_data))
    none, mbtsad = run_cells(cells, config, tmp_path / "out")
    assert none["status"] == "ok" and mbtsad["status"] == "ok", mbtsad.get("error")
    print({k: (none[k], mbtsad[k]) for k in ("cacc", "asr")}, mbtsad["aux"], mbtsad["defense_info"])

    assert none["asr"] > 0.7 and none["cacc"] > 0.75  # the attack worked on a working classifier
    assert mbtsad["asr"] <= none["asr"] - ASR_REDUCTION, (none["asr"], mbtsad["asr"])
    assert mbtsad["cacc"] >= none["cacc"] - CACC_TOLERANCE, (none["cacc"], mbtsad["cacc"])
    assert set(mbtsad["aux"]["teacher"]) >= {"cacc", "asr"}  # the teacher is scored beside the student
    assert mbtsad["defense_info"]["augmented_size"] == 3 * mbtsad["clean_size"]
