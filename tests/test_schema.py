"""The record schema: it builds records, validates them (the committed ones too) and gives the
leaderboard each metric's direction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.base.record_schema import (
    KEYS,
    RecordSchemaError,
    RecordSchemaWarning,
    better,
    lookup,
    record_fields,
    record_problems,
    validate_record,
)
from benchmark.reporting.tables import COSTS, KIND_COLUMNS, METRICS, ranking_columns

REPO = Path(__file__).resolve().parent.parent
COMMITTED = sorted(REPO.glob("results/**/records.jsonl")) + sorted(REPO.glob("runs/**/records.jsonl"))


def committed_lines():
    for path in COMMITTED:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                yield f"{path.relative_to(REPO)}:{number}", json.loads(line)


def test_committed_results_hold_records():
    assert REPO / "results" / "records.jsonl" in COMMITTED
    assert sum(1 for _ in committed_lines()) > 0


@pytest.mark.parametrize("where,record", list(committed_lines()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_committed_record_follows_the_schema(where, record):
    validate_record(record, where)


def ok_record() -> dict:
    """The first committed record: an ok purification record."""
    return dict(next(committed_lines())[1])


def test_validation_names_every_problem():
    record = ok_record()
    record["cacc"] = "high"  # wrong type
    record["frr"] = 0.1  # an input-detection key on a purification record
    record["acr"] = 0.2  # misspelt
    record["status"] = "done"  # not a status
    del record["der"]
    problems = record_problems(record)
    assert "'cacc' is string, expected number or null" in problems
    assert any(p.startswith("'frr' belongs to input_detection records") for p in problems)
    assert "'acr' is not a declared record key" in problems
    assert any(p.startswith("'status' is 'done'") for p in problems)
    with pytest.raises(RecordSchemaError, match="'der' is missing"):
        validate_record(_without(ok_record(), "der"))


def _without(record: dict, key: str) -> dict:
    return {k: v for k, v in record.items() if k != key}


def test_failed_records_carry_identity_and_error_only():
    record = {k: ok_record()[k] for k in ("cell_id", "dataset", "victim", "attack", "attack_label", "defense",
                                           "defense_label", "seed", "budget", "provenance", "finished_at")}
    validate_record(dict(record, status="failed", error="RuntimeError: boom"))  # traceback is optional
    assert record_problems(dict(record, status="failed")) == ["'error' is missing"]
    assert "'cacc' belongs to ok records only" in record_problems(dict(record, status="failed", error="x", cacc=0.5))


def test_kind_fields_are_required_by_kind():
    detector = dict(ok_record(), defense_kind="input_detection")
    problems = record_problems(detector)
    for key in ("frr", "far", "auroc", "threshold", "dev_frr", "defense_phases"):
        assert f"{key!r} is missing" in problems
    assert "'changed_clean' is missing" not in problems  # a detector's record, not a corrector's
    corrector = record_problems(dict(detector, changed_clean=1))
    assert "'changed_poisoned' is missing" in corrector and "'threshold' is missing" not in corrector


def test_attack_specific_rates_are_a_declared_family():
    assert lookup("false_trigger_rate").name == "<extra>_rate"
    assert lookup("false_trigger_rate_before").name == "<extra>_rate_before"
    assert lookup("false_trigger_ratio") is None
    validate_record(dict(ok_record(), false_trigger_rate=0.2, false_trigger_rate_before=0.9))


def test_building_refuses_undeclared_keys():
    assert record_fields({"cacc": 0.5}, asr=0.1) == {"cacc": 0.5, "asr": 0.1}
    with pytest.raises(RecordSchemaError, match=r"\['acc'\] are not declared"):
        record_fields(acc=0.5)


def test_every_key_is_documented_once():
    names = [k.name for k in KEYS]
    assert len(names) == len(set(names))
    assert all(k.doc and k.types and k.carried_by for k in KEYS)


def test_leaderboard_directions_come_from_the_schema():
    assert better("cacc") == "higher" and better("asr") == "lower" and better("der") == "higher"
    assert better("false_trigger_rate") == "lower" and better("kept") is None
    with pytest.raises(KeyError):
        better("nonsense")
    for column in METRICS + COSTS + [c for cs in KIND_COLUMNS.values() for c in cs]:
        key = "asr" if column.key == "asr_minus_clean" else column.key  # the floor column reads asr
        assert column.better == better(key), column.key
        if column.group != "cost" and column.better:
            assert column.heading == f"{column.label} {'↑' if column.better == 'higher' else '↓'}"
    for kind in ("", "input detection", "training-data filtering"):
        first = ranking_columns(kind)[0]
        assert first.better == "higher" and first.heading.endswith("↑")


def test_run_cells_warns_about_a_malformed_record(tmp_path, tiny_victim_dir):
    """Every record a run writes is validated; the test suite turns the warning into an error."""
    from benchmark.harness.cells import CellSpec, HarnessConfig, failed_record
    from benchmark.harness.config import Budget
    from benchmark.harness.runner import run_cells
    from benchmark.plugins.resolve import PluginSpec

    class Sloppy:
        """An executor whose records carry a misspelt key."""

        def run(self, todo, config, registry):
            for cell in todo:
                yield dict(failed_record(cell, config, "RuntimeError: boom"), acr=0.5)

    config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32")
    with pytest.warns(RecordSchemaWarning, match="'acr' is not a declared record key"):
        cell = CellSpec("demo", str(tiny_victim_dir), PluginSpec("badnets", "badnets"), PluginSpec("none", "none"), 0,
                        Budget(max_length=48))
        run_cells([cell], config, tmp_path / "out", executor=Sloppy())
