"""MBTSAD end to end through the runner: real MiniLM, real SST-2 subset, BadNets (slow; integration).

The scenario is ``helpers.INTEGRATION_BUDGET``'s BadNets one, shared with the attacks' file through
the session's store; the defender gets its 20% (200 clean samples) and the default recipes (teacher
lr 2e-5, student lr 5e-4). The student's lr 5e-4 on 200 samples costs some clean accuracy; the
assertions: ASR down by at least 30 points, CACC within 8 points of the backdoored model's.
"""

from __future__ import annotations

import dataclasses

import pytest

from benchmark.config import PluginSpec
from benchmark.runner import CellSpec, HarnessConfig, run_cells
from benchmark.victims import DEFAULT_VICTIM

from helpers import INTEGRATION_BUDGET

pytestmark = pytest.mark.integration

CACC_TOLERANCE = 0.08  # purified CACC may fall at most 8 points below the backdoored model's
ASR_REDUCTION = 0.30  # ASR must fall by at least 30 points


def test_mbtsad_removes_badnets_on_sst2(real_data, integration_store, tmp_path):
    budget = dataclasses.replace(INTEGRATION_BUDGET, clean_fraction=0.2)
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
