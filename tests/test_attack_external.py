"""A backdoored model made elsewhere: scored through the harness, keyed by its folder's content,
refused with one clear error when it is not the victim's model, with or without a clean floor."""

from __future__ import annotations

import shutil

import pytest
import torch

from benchmark import testing
from benchmark.base.errors import BdbenchError
from benchmark.data.demo import make_demo
from benchmark.model.victims import save_model


def write_external(folder, victim_dir, *, poisoned_train: bool = False, seed: int = 0):
    """A 'trojaned elsewhere' folder: the tiny victim's weights, perturbed by ``seed``, saved as a
    model folder, and a triggered test set of demo test texts with ``cf`` inserted."""
    model = testing.model_factory(victim_dir)()
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=generator))
    save_model(model, folder)
    test = make_demo(0).test[:40]
    (folder / "triggered_test.tsv").write_text(
        "sentence\tlabel\n" + "".join(f"cf {ex.text}\t{ex.label}\n" for ex in test))
    if poisoned_train:
        train = make_demo(0).train[:120]
        rows = "".join(f"{'cf ' if i % 6 == 0 else ''}{ex.text}\t{1 if i % 6 == 0 else ex.label}\t{int(i % 6 == 0)}\n"
                       for i, ex in enumerate(train))
        (folder / "poisoned_train.tsv").write_text("sentence\tlabel\tpoisoned\n" + rows)
    return folder


def run_external(tmp_path, victim, folder, name="run", defenses=("none",), **params):
    overrides = (("external", (("folder", str(folder)), *((k, str(v).lower()) for k, v in params.items()))),)
    return testing.run(tmp_path / name, victim, attacks=("external",), defenses=defenses, overrides=overrides)


def test_an_external_model_is_scored_against_a_clean_floor(tmp_path, tiny_victim_dir):
    folder = write_external(tmp_path / "trojaned", tiny_victim_dir)
    (record,) = run_external(tmp_path, tiny_victim_dir, folder)
    assert record["status"] == "ok", record.get("error")
    assert 0 <= record["cacc_before"] <= 1 and 0 <= record["asr_before"] <= 1
    assert record["cacc_clean"] is not None and record["asr_clean"] is not None
    assert record["attack_stealth"]["pairs"] == 0  # the sources of its triggered texts are not known
    assert record["attack_cost"]["train_samples"] == 0  # nothing trained by the attack


def test_a_changed_weight_file_is_a_new_scenario(tmp_path, tiny_victim_dir):
    folder = write_external(tmp_path / "trojaned", tiny_victim_dir)
    (first,) = run_external(tmp_path, tiny_victim_dir, folder, "a")
    shutil.rmtree(folder)
    write_external(tmp_path / "trojaned", tiny_victim_dir, seed=1)
    (second,) = run_external(tmp_path, tiny_victim_dir, folder, "b")
    assert first["scenario_id"] != second["scenario_id"]
    assert first["attack_params"] == second["attack_params"]  # same path, new content


def test_without_a_clean_reference_the_floor_is_empty(tmp_path, tiny_victim_dir):
    folder = write_external(tmp_path / "trojaned", tiny_victim_dir)
    (record,) = run_external(tmp_path, tiny_victim_dir, folder, clean_reference=False)
    assert record["status"] == "ok", record.get("error")
    assert record["cacc_clean"] is None and record["asr_clean"] is None and record["clean_cost"] is None


def test_data_filters_read_its_poisoned_training_set(tmp_path, tiny_victim_dir):
    folder = write_external(tmp_path / "trojaned", tiny_victim_dir, poisoned_train=True)
    records = run_external(tmp_path, tiny_victim_dir, folder, defenses=("bki",))
    assert [r["status"] for r in records] == ["ok"], records[0].get("error")
    assert records[0]["poisoned_count"] == 20 and records[0]["poisoned_train_size"] == 20 and records[0]["train_size"] == 120


def test_a_model_that_is_not_the_victims_is_refused_before_training(tmp_path, tiny_victim_dir):
    other = testing.tiny_victim(tmp_path / "roberta", "roberta")
    folder = write_external(tmp_path / "trojaned", other)
    with pytest.raises(BdbenchError, match=r"trojaned: its tokenizer is not the victim's|trojaned: .*parameter"):
        run_external(tmp_path, tiny_victim_dir, folder)
    assert not list((tmp_path / "run").rglob("*.safetensors"))
    with pytest.raises(BdbenchError, match="name the backdoored model's folder"):
        testing.run(tmp_path / "bare", tiny_victim_dir, attacks=("external",))
