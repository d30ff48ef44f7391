"""The input-detection and data-filtering kinds: API, threat model, child protocol and scoring."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from benchmark import DataFilter, Defense, InputDetector, ThreatModelError
from benchmark.base.metrics import auroc, detection_metrics, filter_metrics
from benchmark.plugins.defense import threshold_for_frr
from benchmark.testing import run

from helpers import registry_with


class LengthDetector(InputDetector):
    """Scores an input by its number of words; records what its context holds."""

    name = "length_probe"
    requires = frozenset({"clean_dev"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        frr: float = 0.1

    def fit(self, model, ctx):
        self.info = {"dev_size": len(ctx.clean_dev)}

    def score(self, model, texts, ctx):
        return [float(len(t.split())) for t in texts]


class ProbeFilter(DataFilter):
    """Keeps everything; reports what it saw, so the test can check it saw no test data."""

    name = "filter_probe"
    requires = frozenset({"poisoned_train"})

    def keep(self, model, ctx):
        train = ctx.poisoned_train
        granted = {name: getattr(ctx, f"_{name}") is not None
                   for name in ("clean_data", "clean_dev", "target_label", "pretrained")}
        self.info = {"texts": [ex.text for ex in train], "flags": sorted({ex.poisoned for ex in train}),
                     "granted": granted}
        return range(len(train))


def test_threshold_for_frr_flags_at_most_the_target_share():
    scores = list(range(100))
    t = threshold_for_frr(scores, 0.05)
    assert sum(s > t for s in scores) == 5
    assert sum(s > threshold_for_frr(scores, 0.0) for s in scores) == 0


def test_auroc_and_metrics():
    assert auroc([3, 4], [1, 2]) == 1.0
    assert auroc([1, 2], [3, 4]) == 0.0
    assert auroc([1], [1]) == 0.5
    m = detection_metrics(clean_labels=[0, 1, 1, 0], clean_pred=[0, 1, 0, 0], clean_flags=[False, False, False, True],
                          poisoned_pred=[1, 1, 0, 1], poisoned_flags=[True, False, False, True], target=1)
    assert m["frr"] == 0.25 and m["far"] == 0.5
    assert m["rejected_clean"] == 1 and m["rejected_poisoned"] == 2
    assert m["cacc"] == pytest.approx(2 / 3)  # over the accepted clean inputs
    assert m["cacc_all"] == 0.5  # rejections count as errors
    assert m["asr"] == 0.25 and m["asr_accepted"] == 0.5
    f = filter_metrics([True, True, False, False, False], kept=[1, 2, 3])
    assert f["filter_recall"] == 0.5 and f["filter_fpr"] == pytest.approx(1 / 3) and f["kept"] == 3


def test_only_a_data_filter_may_declare_poisoned_train():
    with pytest.raises(ThreatModelError, match="only a DataFilter"):
        type("Sneaky", (Defense,), {"name": "sneaky", "requires": frozenset({"poisoned_train"})})
    with pytest.raises(ThreatModelError, match="only a DataFilter"):
        type("SneakyDetector", (InputDetector,), {"name": "sneaky", "requires": frozenset({"poisoned_train"})})


def test_purification_context_never_has_poisoned_train(make_defense_ctx):
    ctx = make_defense_ctx({"clean_data"})
    with pytest.raises(ThreatModelError):
        _ = ctx.poisoned_train


@pytest.mark.parametrize("isolation", ["process", "none"])
def test_detector_and_filter_records(tmp_path, tiny_victim_dir, isolation):
    from benchmark.harness.cells import HarnessConfig
    from benchmark.harness.runner import run_cells
    from benchmark.testing import cells

    registry = registry_with(LengthDetector, ProbeFilter)
    config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32", isolation=isolation)
    records = run_cells(cells(tiny_victim_dir, defenses=("none", "length_probe", "filter_probe")), config,
                        tmp_path / "out", registry=registry)
    by = {r["defense"]: r for r in records}
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert by["none"]["defense_kind"] == "purification"
    det = by["length_probe"]
    assert det["defense_kind"] == "input_detection"
    for key in ("frr", "far", "auroc", "threshold", "dev_frr", "rejected_clean", "rejected_poisoned", "cacc",
                "cacc_all", "asr", "asr_accepted", "der", "wall_s", "cpu_s", "peak_rss_mb"):
        assert det[key] is not None, key
    n_clean, n_poisoned = det["clean_test_size"], det["poisoned_test_size"]
    assert det["rejected_clean"] == round(det["frr"] * n_clean)
    assert det["rejected_poisoned"] == round((1 - det["far"]) * n_poisoned)
    assert det["dev_frr"] <= 0.1
    assert det["auroc"] > 0.5  # a trigger word makes a triggered text one word longer
    assert set(det["defense_phases"]) == {"defense", "detection"}
    filt = by["filter_probe"]
    assert filt["defense_kind"] == "data_filtering"
    assert filt["filter_recall"] == 0.0 and filt["filter_fpr"] == 0.0 and filt["kept"] == filt["train_size"]
    assert filt["poisoned_train_size"] == filt["poisoned_count"] > 0
    # keeping every sample retrains the victim exactly as the attack did
    assert filt["cacc"] == pytest.approx(filt["cacc_before"]) and filt["asr"] == pytest.approx(filt["asr_before"])
    info = filt["defense_info"]
    assert info["flags"] == [False]  # poison flags never cross
    assert not any(info["granted"].values())  # nothing but the poisoned training set
    from benchmark.data.sources import load_dataset

    demo = load_dataset(registry.dataset("demo"))
    seen = set(info["texts"])
    assert not seen & {ex.text for ex in demo.test}  # a data filter never sees test data
    assert any(t.split() != ex.text.split() for t, ex in zip(info["texts"], demo.train))  # and does see triggers


def test_detector_child_gets_bare_shuffled_texts(tmp_path, tiny_victim_dir, monkeypatch):
    """What is written for the detector's process: texts only, clean and triggered interleaved."""
    from benchmark.harness import isolation

    seen = {}
    original = isolation.write_inputs

    def spy(folder, job, model, tokenizer, grant, texts=None):
        original(folder, job, model, tokenizer, grant, texts)
        seen["inputs"] = json.loads((folder / "inputs.json").read_text())
        seen["assets"] = json.loads((folder / "assets.json").read_text())
        seen["kind"] = job.kind

    monkeypatch.setattr(isolation, "write_inputs", spy)
    records = run(tmp_path, tiny_victim_dir, registry=registry_with(LengthDetector), defenses=("length_probe",))
    assert records[0]["status"] == "ok", records[0].get("error")
    assert seen["kind"] == "input_detection"
    assert set(seen["inputs"]) == {"texts"} and all(isinstance(t, str) for t in seen["inputs"]["texts"])
    assert set(seen["assets"]) == {"clean_dev"}
    n = records[0]["clean_test_size"]
    texts = seen["inputs"]["texts"]
    assert len(texts) == n + records[0]["poisoned_test_size"]
    from benchmark.data.sources import load_dataset

    clean = {ex.text for ex in load_dataset(registry_with().dataset("demo")).test}
    positions = [i for i, t in enumerate(texts) if t not in clean]
    assert positions and min(positions) < n  # triggered inputs are not simply appended after the clean ones
    assert not math.isnan(records[0]["auroc"])


def test_leaderboard_sections_and_rankings_per_kind():
    from benchmark.reporting.tables import build_rankings, build_tables, ranking_table

    def record(defense, kind, **fields):
        return {"dataset": "demo", "victim": "v", "attack_label": "badnets", "attack": "badnets", "seed": 0,
                "defense": defense, "defense_label": defense, "defense_kind": kind, "cell_id": defense,
                "scenario_id": "s", "status": "ok", "cacc": 0.8, "asr": 0.5, "der": 0.6, "cacc_before": 0.85,
                "asr_before": 1.0, "cacc_clean": 0.86, "asr_clean": 0.1, **fields}

    records = [record("none", "purification", der=0.5), record("strip", "input_detection", frr=0.01, far=0.9,
                                                                   auroc=0.6, dev_frr=0.01, cacc_all=0.79),
               record("rap", "input_detection", frr=0.02, far=0.5, auroc=0.8, dev_frr=0.01, cacc_all=0.78, der=0.1),
               record("bki", "data_filtering", filter_recall=0.25, filter_fpr=0.01, kept=1900)]
    tables = {t["heading"].rsplit(" · ", 1)[1]: t for t in build_tables(records)}
    assert set(tables) == {"model purification", "input detection", "training-data filtering"}
    assert {"frr", "far", "auroc"} <= {c.key for c in tables["input detection"]["columns"]}
    assert "frr" not in {c.key for c in tables["model purification"]["columns"]}
    assert {"filter_recall", "filter_fpr"} <= {c.key for c in tables["training-data filtering"]["columns"]}
    rankings = dict(build_rankings(records))
    assert [r.label for r in rankings["input detection"]] == ["rap", "strip"]  # by AUROC, not DER
    headers, _ = ranking_table(rankings["input detection"], "input detection")
    assert headers[3:6] == ["mean AUROC ↑", "mean FRR ↓", "mean FAR ↓"]


@pytest.mark.parametrize("attack", ["ep", "lwp"])
def test_data_filter_against_an_attack_without_a_recipe_poisoned_set_fails_clearly(tmp_path, tiny_victim_dir,
                                                                                   attack):
    """EP poisons weights; LWP trains with its own layerwise loss: retraining the kept samples with the
    scenario's recipe would not reproduce either, so the cell fails with one clear error."""
    from benchmark.harness.cells import HarnessConfig
    from benchmark.harness.runner import run_cells
    from benchmark.testing import cells

    config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32", isolation="none")
    [record] = run_cells(cells(tiny_victim_dir, attacks=(attack,), defenses=("filter_probe",)), config,
                         tmp_path / "out", registry=registry_with(ProbeFilter))
    assert record["status"] == "failed"
    assert record["error"].startswith("UsageError: data filters and robust trainers need an attack that trains the victim")
    assert repr(attack) in record["error"]
    assert 'File "benchmark/harness/filtering.py"' in record["traceback"]  # named from the project's root
    assert 'File "/' not in record["traceback"]  # no machine paths in a publishable record
