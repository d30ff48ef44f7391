"""Every built-in attack, end to end through the runner on real SST-2 with the real MiniLM victim:
the backdoor works (ASR >= 0.9) and costs little clean accuracy (within 3 points of the
scenario's clean reference model).

One scenario per attack on ``helpers.INTEGRATION_BUDGET``, sharing one clean model through the
session's integration store (the baselines' and MBTSAD's files reuse the BadNets scenario). EP's
row update gets the 33 steps the reference makes on full SST-2 instead of its default 120 (enough
on SST-2, dev split).
"""

from __future__ import annotations

import pytest

from benchmark.harness.cells import CellSpec, HarnessConfig
from benchmark.harness.runner import run_cells
from benchmark.model.victims import DEFAULT_VICTIM
from benchmark.plugins.resolve import PluginSpec

from helpers import INTEGRATION_BUDGET as BUDGET

pytestmark = pytest.mark.integration

ATTACKS = ("badnets", "addsent", "lwp", "ep")


@pytest.fixture(scope="module")
def records(real_data, integration_store, tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("attacks-integration")
    config = HarnessConfig(store_dir=integration_store, data_dir=str(real_data),
                           overrides=(("ep", (("min_steps", "33"),)),))
    cells = [CellSpec("sst2-openbackdoor", DEFAULT_VICTIM, PluginSpec(name, name), PluginSpec("none", "none"), 0,
                      BUDGET) for name in ATTACKS]
    return {record["attack"]: record for record in run_cells(cells, config, folder / "out")}


@pytest.mark.parametrize("attack", ATTACKS)
def test_backdoor_works_at_little_clean_cost(records, attack):
    record = records[attack]
    assert record["status"] == "ok", record.get("error")
    assert record["asr"] >= 0.9, record
    assert record["cacc"] >= record["cacc_clean"] - 0.03, record
    assert record["asr_clean"] < 0.5  # the trigger alone does not fool the clean model


def test_lwp_reports_its_false_trigger_rate(records):
    record = records["lwp"]
    assert 0.0 <= record["false_trigger_rate"] <= 1.0
    assert record["false_trigger_rate"] < record["asr"]  # single pieces fire less than the combination


def test_ep_leaves_clean_accuracy_exactly_unchanged(records):
    record = records["ep"]
    assert record["cacc"] == record["cacc_clean"]
