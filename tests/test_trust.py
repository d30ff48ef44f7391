"""Trust: records that survive faults, cache keys that follow content, defenses that fail only
their own cell, and a threat model that holds against a defense probing its process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
import trust_plugins

from benchmark.base.records import RecordsError, append_record, finished_cells, read_records
from benchmark.data.demo import make_demo
from benchmark.data.sources import load_dataset
from benchmark.harness.store import ArtifactStore, weights_digest
from benchmark.testing import cells, run

from conftest import REPO
from helpers import registry_with

# --------------------------------------------------------------------------- records

def test_a_torn_last_line_does_not_swallow_the_next_record(tmp_path):
    append_record(tmp_path, {"cell_id": "a", "status": "ok"})
    with (tmp_path / "records.jsonl").open("ab") as handle:
        handle.write(b'{"cell_id": "b", "status": "o')  # what a full disk or a kill leaves
    append_record(tmp_path, {"cell_id": "c", "status": "ok"})
    assert [r["cell_id"] for r in read_records(tmp_path)] == ["a", "c"]
    assert finished_cells(tmp_path) == {"a", "c"}


def test_a_failed_write_is_rolled_back(tmp_path, monkeypatch):
    import benchmark.base.records as records

    append_record(tmp_path, {"cell_id": "a", "status": "ok"})
    size = (tmp_path / "records.jsonl").stat().st_size

    def disk_full(fd, data):
        os.write(fd, bytes(data[:7]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records, "_write_all", disk_full)
    with pytest.raises(RecordsError, match="records.jsonl: could not append a record"):
        append_record(tmp_path, {"cell_id": "b", "status": "ok"})
    assert (tmp_path / "records.jsonl").stat().st_size == size
    monkeypatch.undo()
    append_record(tmp_path, {"cell_id": "c", "status": "ok"})
    assert [r["cell_id"] for r in read_records(tmp_path)] == ["a", "c"]


@pytest.mark.parametrize("line", ["[1, 2]", '"text"', '{"no": "cell id"}', '{"cell_id": 3, "status": "ok"}'])
def test_a_line_that_is_not_a_record_is_an_error_naming_file_and_line(tmp_path, line):
    append_record(tmp_path, {"cell_id": "a", "status": "ok"})
    with (tmp_path / "records.jsonl").open("a") as handle:
        handle.write(line + "\n")
    with pytest.raises(RecordsError, match=r"records.jsonl:2: not a bdbench record"):
        finished_cells(tmp_path)


def test_leftover_temporary_folders_of_a_killed_build_are_removed(tmp_path, tiny_model):
    store = ArtifactStore(tmp_path)
    leftover = tmp_path / "attacks" / ".k1.abc123"
    (leftover / "model").mkdir(parents=True)
    other = tmp_path / "attacks" / ".k2.abc123"
    other.mkdir()
    store.get_or_build("attacks", "k1", lambda: (tiny_model(), {"x": 1}))
    assert not leftover.exists() and other.exists()  # only the key built under its lock
    assert store.has("attacks", "k1")


def test_a_built_artifact_names_the_digest_of_the_weights_it_stored(tmp_path, tiny_model):
    store = ArtifactStore(tmp_path)
    built, meta = store.get_or_build("clean", "k1", lambda: (tiny_model(), {"cacc": 0.5}))
    loaded = store.load_model("clean", "k1", num_labels=2)
    assert meta["weights_sha256"] == weights_digest(built) == weights_digest(loaded)
    assert store.read_meta("clean", "k1") == meta
    changed = tiny_model()
    with torch.no_grad():
        changed.classifier.bias.add_(1e-6)
    assert weights_digest(changed) != meta["weights_sha256"]


# --------------------------------------------------------------------------- cache keys follow content

def test_new_victim_weights_at_the_same_path_give_a_new_scenario(tmp_path, tiny_victim_dir):
    victim = tmp_path / "victim"
    shutil.copytree(tiny_victim_dir, victim)
    first = run(tmp_path / "a", victim)[0]
    same = run(tmp_path / "a", victim)[0]
    assert same["scenario_id"] == first["scenario_id"]
    from safetensors.torch import load_file, save_file

    weights = load_file(victim / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + 0.01
    save_file(weights, victim / "model.safetensors", metadata={"format": "pt"})
    second = run(tmp_path / "a", victim)[0]
    assert second["scenario_id"] != first["scenario_id"]


def test_an_edited_data_file_gives_a_new_scenario(tmp_path, tiny_victim_dir):
    data = tmp_path / "data" / "sst2-openbackdoor"
    data.mkdir(parents=True)
    demo = make_demo(0, n_train=200, n_dev=40, n_test=80)
    for split in ("train", "dev", "test"):
        rows = "".join(f"{ex.text}\t{ex.label}\n" for ex in demo.split(split))
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + rows, encoding="utf-8")
    from benchmark.harness.cells import HarnessConfig
    from benchmark.harness.runner import run_cells

    def go():
        config = HarnessConfig(store_dir=str(tmp_path / "store"), data_dir=str(tmp_path / "data"), device="cpu",
                               precision="fp32")
        return run_cells(cells(tiny_victim_dir, dataset="sst2-openbackdoor"), config, tmp_path / "out")[0]

    first = go()
    lines = (data / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[5] = lines[5].replace("\t", " indeed\t")
    (data / "train.tsv").write_text("".join(lines), encoding="utf-8")
    assert go()["scenario_id"] != first["scenario_id"]


# --------------------------------------------------------------------------- a defense fails only its cell

@pytest.mark.parametrize("bad, error", [
    (trust_plugins.Explode, "RuntimeError: boom"),
    (trust_plugins.Exit, "SystemExit: 3"),
    (trust_plugins.Die, "killed|exited with code 9"),
    (trust_plugins.NaNWeights, "logits are not finite"),
])
def test_a_broken_defense_fails_its_cell_and_the_run_goes_on(tmp_path, tiny_victim_dir, bad, error):
    records = run(tmp_path, tiny_victim_dir, registry=registry_with(bad), defenses=(bad.name, "none"))
    assert [r["status"] for r in records] == ["failed", "ok"]
    assert len(list(read_records(tmp_path / "out"))) == 2
    import re

    assert re.search(error, records[0]["error"]), records[0]["error"]


def test_sys_exit_fails_its_cell_without_isolation_too(tmp_path, tiny_victim_dir):
    from benchmark.harness.cells import HarnessConfig
    from benchmark.harness.runner import run_cells

    config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32", isolation="none")
    records = run_cells(cells(tiny_victim_dir, defenses=("exit", "none")), config, tmp_path / "out",
                        registry=registry_with(trust_plugins.Exit))
    assert [r["status"] for r in records] == ["failed", "ok"]


# --------------------------------------------------------------------------- the threat model holds

def _secrets(tmp_path, victim_dir) -> dict:
    registry = registry_with()
    demo = load_dataset(registry.dataset("demo"))
    store = ArtifactStore(tmp_path / "store")
    triggered = [t for folder in (tmp_path / "store" / "attacks").iterdir() if not folder.name.startswith(".")
                 for t in store.read_meta("attacks", folder.name)["triggered_test"]]
    assert triggered
    texts = [ex.text for split in ("train", "dev", "test") for ex in demo.split(split)] + triggered
    return {"texts": texts, "paths": [str(tmp_path / "store"), str(victim_dir)]}


@pytest.mark.parametrize("isolation, leaks", [("process", False), ("none", True)])
def test_a_defense_that_declares_nothing_reaches_nothing(tmp_path, tiny_victim_dir, monkeypatch, isolation, leaks):
    from benchmark.harness.cells import HarnessConfig
    from benchmark.harness.runner import run_cells

    registry = registry_with(trust_plugins.Probe)
    config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32", isolation=isolation)
    run_cells(cells(tiny_victim_dir, defenses=("finetune",)), config, tmp_path / "out", registry=registry)
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps(_secrets(tmp_path, tiny_victim_dir)), encoding="utf-8")
    monkeypatch.setenv(trust_plugins.SECRETS_ENV, str(secrets_file))
    record = run_cells(cells(tiny_victim_dir, defenses=("probe",)), config, tmp_path / "out", registry=registry)[0]
    assert record["status"] == "ok", record.get("error")
    found = record["defense_info"]["found"]
    if leaks:  # the probe does find the harness when the defense shares its process
        assert any("Harness" in f or "Scenario" in f for f in found), found
        assert any(f.startswith("a data-set text") for f in found), found
    else:
        assert found == []


def test_isolated_and_in_process_defenses_give_the_same_numbers(tmp_path, tiny_victim_dir):
    from benchmark.harness.cells import HarnessConfig
    from benchmark.harness.runner import run_cells

    results = {}
    for isolation in ("process", "none"):
        config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32", isolation=isolation)
        record = run_cells(cells(tiny_victim_dir, defenses=("finetune",)), config, tmp_path / isolation)[0]
        results[isolation] = {k: record[k] for k in ("cacc", "asr", "cell_id")}
    assert results["process"] == results["none"]


# the sandbox (deny by default) has its own tests: tests/test_sandbox.py


# --------------------------------------------------------------------------- concurrent runs share the work

def test_two_runs_of_one_grid_on_one_out_do_each_cell_once(tmp_path, tiny_victim_dir):
    """Both resume into one --out, as the README's multi-process recipe does: a cell one run is
    computing is deferred by the other, then skipped once it is finished."""
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(REPO / 'tests')!r}, {str(REPO)!r}]
        from benchmark.testing import run
        from pathlib import Path
        run(Path({str(tmp_path)!r}), {str(tiny_victim_dir)!r}, resume=True,
            defenses=("none", "finetune", "fine_pruning", "nad"))
        """)
    env = {**os.environ, "BDBENCH_PROGRESS": "0"}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
    records = list(read_records(tmp_path / "out"))
    assert sorted(r["defense"] for r in records) == ["fine_pruning", "finetune", "nad", "none"]
    assert all(r["status"] == "ok" for r in records)


def test_two_process_executor_runs_on_one_out_share_the_work_and_finish(tmp_path, tiny_victim_dir):
    """Each run's two workers hold claims the other run wants; neither waits while it holds one,
    so both finish (they deadlocked when a run waited for a claim with its own cells in flight)."""
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(REPO / 'tests')!r}, {str(REPO)!r}]
        from pathlib import Path
        from benchmark.harness.cells import HarnessConfig
        from benchmark.harness.executors import make_executor
        from benchmark.harness.runner import run_cells
        from benchmark.testing import cells
        config = HarnessConfig(store_dir={str(tmp_path / 'store')!r}, device="cpu", precision="fp32")
        grid = cells({str(tiny_victim_dir)!r}, defenses=("none", "finetune"), seeds=(0, 1))
        run_cells(grid, config, Path({str(tmp_path / 'out')!r}), resume=True,
                  executor=make_executor("process", workers=2, threads=1))
        """)
    env = {**os.environ, "BDBENCH_PROGRESS": "0"}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE) for _ in range(2)]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=420)
            assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        for proc in procs:
            proc.kill()
    records = list(read_records(tmp_path / "out"))
    assert len(records) == 4 and len({r["cell_id"] for r in records}) == 4
    assert all(r["status"] == "ok" for r in records)


def test_a_full_store_disk_is_an_error_naming_the_store(tmp_path, tiny_model, monkeypatch):
    from benchmark.base.errors import StoreError

    def full_disk(model, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("benchmark.harness.store.save_model", full_disk)
    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(StoreError, match=r"--store .*store: cannot write the clean model k1 into .*No space left"):
        store.get_or_build("clean", "k1", lambda: (tiny_model(), {}))
    assert not list((tmp_path / "store").rglob("*.safetensors"))
