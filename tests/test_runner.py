import json

import pytest

from benchmark.base.errors import ThreatModelError, UsageError
from benchmark.base.records import append_record, finished_cells, read_records
from benchmark.testing import run

REQUIRED = ["dataset", "victim", "attack", "attack_params", "defense", "defense_params", "seed", "cacc", "asr",
            "cacc_before", "asr_before", "cacc_clean", "der", "wall_s", "cpu_s", "gpu_s", "peak_gpu_mb",
            "peak_rss_mb", "device", "requires", "status", "provenance"]


def test_records_follow_the_contract_and_attack_is_shared(tmp_path, tiny_victim_dir):
    records = run(tmp_path, tiny_victim_dir, defenses=("none", "finetune"))
    assert [r["status"] for r in records] == ["ok", "ok"]
    for record in records:
        assert set(REQUIRED) <= set(record)
        assert record["gpu_s"] is None and record["peak_gpu_mb"] is None  # no CUDA: empty, never zero
        assert record["provenance"]["bdbench_version"]
        assert "processor" in record["provenance"]  # CPU seconds are read per machine
        assert 0.0 <= record["der"] <= 1.0
    none, ft = records
    assert none["cacc"] == none["cacc_before"] and none["asr"] == none["asr_before"]
    assert none["scenario_id"] == ft["scenario_id"]  # one attacked model for both defenses
    assert ft["requires"] == ["clean_data"] and ft["clean_size"] == 40  # 20% of 200
    assert len(list((tmp_path / "store" / "attacks").glob("*/model/model.safetensors"))) == 1
    on_disk = list(read_records(tmp_path / "out"))
    assert [r["cell_id"] for r in on_disk] == [r["cell_id"] for r in records]


def test_same_seed_same_numbers(tmp_path, tiny_victim_dir):
    first = run(tmp_path / "a", tiny_victim_dir, defenses=("finetune",))[0]
    second = run(tmp_path / "b", tiny_victim_dir, defenses=("finetune",))[0]
    for key in ("cacc", "asr", "cacc_before", "asr_before", "cacc_clean"):
        assert first[key] == second[key]
    # two separate builds of the scenario: bit-identical weights, so the records name one digest
    assert first["scenario_weights"] == second["scenario_weights"]
    assert all(len(digest) == 64 for digest in first["scenario_weights"].values())
    assert first["scenario_weights"]["clean"] != first["scenario_weights"]["backdoored"]


def test_resume_skips_finished_cells(tmp_path, tiny_victim_dir):
    run(tmp_path, tiny_victim_dir, defenses=("none",))
    again = run(tmp_path, tiny_victim_dir, defenses=("none", "finetune"), resume=True)
    assert [r["defense"] for r in again] == ["finetune"]
    assert len(finished_cells(tmp_path / "out")) == 2


def test_bad_set_value_fails_before_any_compute(tmp_path, tiny_victim_dir):
    with pytest.raises(UsageError, match="badnets.poison_rate: expected a number"):
        run(tmp_path, tiny_victim_dir, overrides=(("badnets", (("poison_rate", "lots"),)),))
    assert not (tmp_path / "store").exists()


def test_defense_cannot_reach_what_it_did_not_declare(make_defense_ctx):
    ctx = make_defense_ctx(requires={"clean_data"}, name="greedy")
    assert len(ctx.clean_data) == 60
    with pytest.raises(ThreatModelError, match="'greedy' asked for 'pretrained_weights' but did not declare it"):
        ctx.pretrained_model()
    with pytest.raises(ThreatModelError, match="target_label"):
        _ = ctx.target_label
    for secret in ("poisoned_data", "trigger", "attack"):
        with pytest.raises(ThreatModelError, match="never available"):
            getattr(ctx, secret)
    assert ctx._pretrained is None  # the asset is not in the context at all
    granted = make_defense_ctx(requires={"clean_data", "pretrained_weights"})
    assert granted.pretrained_model() is not None


def test_append_is_atomic_lines(tmp_path):
    for i in range(3):
        append_record(tmp_path, {"cell_id": str(i), "status": "ok", "x": [i] * 100})
    with (tmp_path / "records.jsonl").open("a") as handle:
        handle.write('{"torn": ')  # a line torn by something else is skipped, not fatal
    assert [r["cell_id"] for r in read_records(tmp_path)] == ["0", "1", "2"]
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines[:3])


def test_portable_traceback_drops_machine_folders():
    from benchmark.base.records import _PROJECT_ROOT, portable_traceback

    text = (f'  File "{_PROJECT_ROOT}/benchmark/harness/runner.py", line 3, in run_cell\n'
            '  File "/opt/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 9, in _call\n'
            '  File "/usr/lib/python3.11/threading.py", line 1, in run\n'
            '  File "<string>", line 1, in <module>\n')
    assert portable_traceback(text) == (
        '  File "benchmark/harness/runner.py", line 3, in run_cell\n'
        '  File "site-packages/torch/nn/modules/module.py", line 9, in _call\n'
        '  File ".../python3.11/threading.py", line 1, in run\n'
        '  File "<string>", line 1, in <module>\n')


def test_a_dirty_checkout_is_named_with_its_diffs_hash_and_counted_on_the_page(tmp_path, monkeypatch):
    import subprocess

    from benchmark.base import provenance
    from benchmark.reporting.summary import run_summary

    repo = tmp_path / "checkout"
    repo.mkdir()
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=repo, check=True)
    monkeypatch.setattr(provenance, "PROJECT_ROOT", repo)
    for cached in (provenance.git_revision, provenance.git_diff_digest):
        cached.cache_clear()
    try:
        clean = provenance.provenance("id", "fp32", "cpu")
        assert not clean["git_revision"].endswith("+dirty") and "git_diff_sha256" not in clean
        for cached in (provenance.git_revision, provenance.git_diff_digest):
            cached.cache_clear()
        (repo / "pyproject.toml").write_text("[project]\nname = 'y'\n")
        dirty = provenance.provenance("id", "fp32", "cpu")
        assert dirty["git_revision"].endswith("+dirty") and len(dirty["git_diff_sha256"]) == 64
    finally:
        for cached in (provenance.git_revision, provenance.git_diff_digest):
            cached.cache_clear()
    records = [{"status": "ok", "dataset": "d", "seed": 0, "provenance": p, "isolation": "process",
                "attack_label": "a", "defense_label": "none"} for p in (clean, dirty, dirty)]
    items = dict(run_summary(records, []))
    assert "2 of 3 records" in items["uncommitted code"]
    assert items["isolation"].startswith("process (3 records)")


def test_records_name_the_processors_kernel_features_and_the_page_shows_them():
    """Two CPUs of one model name can choose different matmul kernels (AMX or AVX-512 BF16) and
    train different weights from one seed: records say which features the machine had."""
    from benchmark.base import provenance
    from benchmark.reporting.summary import run_summary

    xeon = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    epyc = "model name\t: AMD EPYC\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\nflags\t\t: amx_bf16\n"
    assert provenance.kernel_flags(xeon) == "amx_bf16 amx_tile avx512_bf16 avx512f avx2"
    assert provenance.kernel_flags(epyc) == "avx512_bf16 avx512f avx2"  # the first flags line only
    assert provenance.kernel_flags("model name\t: toy\nflags\t: fpu\n") == ""
    assert provenance.kernel_flags("model name\t: no flags line\n") is None
    here = provenance.provenance("id", "fp32", "cpu")
    assert here.get("processor_kernels") == provenance.processor_kernels()
    records = [{"status": "ok", "dataset": "d", "seed": 0, "attack_label": "a", "defense_label": "none",
                "provenance": {"processor": name, **({"processor_kernels": kernels} if kernels else {})}}
               for name, kernels in (("Xeon", "amx_bf16 avx2"), ("Xeon", None), ("EPYC", "avx2"))]
    assert dict(run_summary(records, []))["device"].endswith("EPYC (avx2), Xeon, Xeon (amx_bf16 avx2)")


def test_a_victim_head_of_other_classes_is_said_once_not_resized_silently(tmp_path, caplog):
    import logging

    from benchmark import testing
    from benchmark.harness.cells import HarnessConfig
    from benchmark.harness.runner import check_config

    victim = testing.tiny_victim(tmp_path / "three", num_labels=3)
    with caplog.at_level(logging.WARNING, logger="benchmark.harness.harness"):
        check_config(testing.cells(victim), HarnessConfig(store_dir=str(tmp_path / "store"), isolation="process"))
    assert [r.getMessage() for r in caplog.records if "head of 3 classes" in r.getMessage()] == [
        f"victim {victim} has a head of 3 classes and the data set 2: the head is drawn afresh at 2 classes (as "
        "every pre-trained victim's is; its own head is not used)"]
