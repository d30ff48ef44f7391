"""The sandbox, deny by default: a defense that declares nothing and looks everywhere finds no
process, store, record, data file or model outside its own folder, and its cheats fail; the
allow-list holds where the environment lives under /tmp; a defense past its time limit is
killed; a killed run's private folders are removed by the next."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trust_plugins

from benchmark.harness.cells import HarnessConfig
from benchmark.harness.isolation import PRIVATE_PREFIX, remove_orphans
from benchmark.harness.runner import run_cells
from benchmark.harness.sandbox import sandbox_command, sandbox_problem
from benchmark.testing import cells, run

from helpers import registry_with

PROBLEM = sandbox_problem()
needs_sandbox = pytest.mark.skipif(PROBLEM is not None, reason=f"the sandbox cannot start here: {PROBLEM}")


def inside(folder: Path, code: str, **kwargs) -> dict:
    """What ``code`` (which prints one JSON line) reports from inside the sandbox in ``folder``."""
    command = sandbox_command(folder, [sys.executable, "-c", code], modules=["benchmark"], **kwargs)
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_sandbox
def test_the_sandbox_shows_the_allow_list_only(tmp_path, monkeypatch):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "records.jsonl").write_text("{}\n")
    package = tmp_path / "env" / "site-packages" / "victim_pkg"  # an installed victim, inside what is shown
    package.mkdir(parents=True)
    (package / "model.safetensors").write_text("weights")
    folder = tmp_path / "private"
    folder.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(package.parent)])
    monkeypatch.setenv("BDBENCH_DATA", str(secret))
    code = ("import json, os; print(json.dumps({'root': sorted(os.listdir('/')), 'pids': [p for p in os.listdir('/proc') "
            f"if p.isdigit()], 'secret': os.path.exists({str(secret)!r}), 'victim': os.listdir({str(package)!r}), "
            "'shown': os.path.isdir(" + repr(str(package.parent)) + "), 'env': sorted(os.environ), "
            "'home': os.path.isdir('/home') and os.listdir('/home'), 'cwd': os.getcwd()}))")
    seen = inside(folder, code, hidden=[str(package)])
    assert seen["secret"] is False  # /tmp is empty but for the private folder and what is shown
    assert seen["shown"] and seen["victim"] == []  # a site folder under /tmp is shown (the environment), the victim covered
    assert not {"home", "opt", "srv", "mnt", "var"} & set(seen["root"]) and not seen["home"]
    assert len(seen["pids"]) <= 2  # bubblewrap's init and itself: no process outside the sandbox
    assert "BDBENCH_DATA" not in seen["env"] and seen["cwd"] == str(folder)


@needs_sandbox
def test_a_snooping_defense_finds_nothing_and_its_cheat_fails(tmp_path, tiny_victim_dir):
    other = tmp_path / "other-run"  # another run's store on the same disk, with a clean model in it
    run(other, tiny_victim_dir)
    (tmp_path / "data" / "sst2").mkdir(parents=True)
    (tmp_path / "data" / "sst2" / "test.tsv").write_text("sentence\tlabel\na test sentence\t1\n")
    assert list(other.rglob("clean/*/model.safetensors")) or list(other.rglob("model.safetensors"))
    registry = registry_with(trust_plugins.Snoop)
    records = {}
    for isolation in ("process", "auto"):
        config = HarnessConfig(store_dir=str(tmp_path / isolation / "store"), device="cpu", precision="fp32",
                               isolation=isolation)
        (record,) = run_cells(cells(tiny_victim_dir, defenses=("snoop",)), config, tmp_path / isolation / "out",
                              registry=registry)
        assert record["status"] == "ok", record.get("error")
        records[isolation] = record
    assert records["auto"]["isolation"] == "sandbox"
    found = records["auto"]["defense_info"]["found"]
    assert found["files"] == [] and not any(str(tmp_path) in text for text in found["processes"]), found
    assert records["auto"]["defense_info"]["cheated"] is False
    assert records["auto"]["asr"] == records["auto"]["asr_before"]  # its answer is the backdoored model
    # the same plugin under process isolation reaches the other run's store and the data (docs/threat-model.md)
    assert records["process"]["defense_info"]["cheated"] is True
    seen = records["process"]["defense_info"]["found"]["files"]
    assert str(tmp_path / "data" / "sst2" / "test.tsv") in seen and any(s.endswith("records.jsonl") for s in seen)


@pytest.mark.parametrize("isolation, limit", [("process", 5), pytest.param("sandbox", 15, marks=needs_sandbox)])
def test_a_defense_past_its_time_limit_is_killed_and_fails_its_cell(tmp_path, tiny_victim_dir, isolation, limit):
    """(The sandbox's limit covers its start: an interpreter importing torch, seconds on a loaded machine.)"""
    config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32", isolation=isolation,
                           defense_timeout_s=float(limit))
    records = run_cells(cells(tiny_victim_dir, defenses=("sleep", "none")), config, tmp_path / "out",
                        registry=registry_with(trust_plugins.Sleep))
    assert [r["status"] for r in records] == ["failed", "ok"]  # the next cell runs on a fresh defense process
    assert f"time limit of {limit} s" in records[0]["error"]


def test_private_folders_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / f"{PRIVATE_PREFIX}999999999-abc"
    alive = tmp_path / f"{PRIVATE_PREFIX}{os.getpid()}-def"
    for folder in (dead, alive):
        (folder / "model").mkdir(parents=True)
    assert remove_orphans(tmp_path) == [dead]
    assert not dead.exists() and alive.exists()
