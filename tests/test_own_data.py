"""Your own data without a plugin: a folder named on the command line runs end to end (three
classes with string labels, on the tiny victim), its records name the folder but hold no path,
and editing a data file gives a new scenario and a new cell."""

from __future__ import annotations

import json
import random

from benchmark.base.records import read_records
from benchmark.data.demo import NEGATIVE, POSITIVE, SUBJECTS
from benchmark.data.sources import load_dataset, resolve_spec
from benchmark.data.subsets import dataset_fingerprint
from benchmark.harness.cells import HarnessConfig, resolve_cells
from benchmark.harness.harness import Harness
from benchmark.harness.runner import run_cells
from benchmark.testing import cells

NEUTRAL = ["long", "slow", "quiet", "busy", "new", "old", "short", "loud"]
CLASSES = {"negative": NEGATIVE, "neutral": NEUTRAL, "positive": POSITIVE}


def write_three_classes(folder, n_train=90, n_test=30):
    """``folder/train.tsv`` and ``test.tsv`` (no dev) with string labels of three classes."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        lines = ["sentence\tlabel"]
        for i in range(n * len(CLASSES)):
            label = list(CLASSES)[i % len(CLASSES)]
            lines.append(f"{rng.choice(SUBJECTS)} is {rng.choice(CLASSES[label])}\t{label}")
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def run_folder(tmp_path, victim, folder, resume=False):
    config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32")
    return run_cells(cells(victim, dataset=str(folder)), config, tmp_path / "out", resume=resume)


def test_a_three_class_folder_runs_end_to_end(tmp_path, tiny_victim_dir):
    folder = write_three_classes(tmp_path / "data" / "reviews3")
    [record] = run_folder(tmp_path, tiny_victim_dir, folder)
    assert record["status"] == "ok", record.get("error")
    assert record["dataset"] == "reviews3"
    provenance = record["provenance"]
    assert provenance["dataset_source"] == "dir:reviews3"
    assert provenance["dataset_labels"] == {"negative": 0, "neutral": 1, "positive": 2}
    assert provenance["dataset_dev_carved"] is True
    dataset = load_dataset(resolve_spec(str(folder), {}))
    assert provenance["dataset_fingerprint"] == dataset_fingerprint(dataset) and dataset.num_labels == 3
    assert str(tmp_path) not in json.dumps(record)  # the folder's name, never its path
    for key in ("cacc", "asr", "cacc_before", "asr_before", "cacc_clean"):
        assert 0.0 <= record[key] <= 1.0

    # ASR's inputs: every non-target test sample (both other classes), each with the trigger
    config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32")
    harness = Harness(config)
    [cell] = resolve_cells(cells(tiny_victim_dir, dataset=str(folder)), harness.registry, config)
    scenario = harness.scenario(cell)  # the cached scenario of the run
    nontarget = [ex for ex in scenario.splits.test if ex.label != scenario.target_label]
    assert scenario.target_label == 1 and {ex.label for ex in nontarget} == {0, 2}
    assert len(scenario.triggered_test) == len(nontarget)
    assert scenario.backdoored.config.num_labels == 3


def test_editing_a_data_file_gives_a_new_scenario_and_cell(tmp_path, tiny_victim_dir):
    folder = write_three_classes(tmp_path / "mine", n_train=40, n_test=20)
    [first] = run_folder(tmp_path, tiny_victim_dir, folder)
    assert run_folder(tmp_path, tiny_victim_dir, folder, resume=True) == []  # unchanged: nothing to redo
    train = folder / "train.tsv"
    train.write_text(train.read_text(encoding="utf-8").replace("\tneutral\n", "\tpositive\n", 1), encoding="utf-8")
    [second] = run_folder(tmp_path, tiny_victim_dir, folder, resume=True)
    assert first["status"] == second["status"] == "ok"
    assert second["dataset"] == first["dataset"] == "mine"
    assert second["scenario_id"] != first["scenario_id"]
    assert second["cell_id"] != first["cell_id"]
    assert second["provenance"]["dataset_fingerprint"] != first["provenance"]["dataset_fingerprint"]
    assert len(list(read_records(tmp_path / "out"))) == 2


def test_column_options_come_from_the_command_line_then_the_suite(tmp_path):
    from benchmark.cli.commands import _harness_config, build_parser
    from benchmark.harness.config import suite_from_toml

    suite = suite_from_toml("mine", {"suites": {"mine": {"datasets": ["./data"], "text_field": "review",
                                                          "label_field": "stars"}}})
    args = build_parser().parse_args(["run", "--label-field", "sentiment"])
    config = _harness_config(args, tmp_path / "out", suite)
    assert (config.text_field, config.label_field) == ("review", "sentiment")
