"""Executors: local, process and Ray give the same records; scenarios are built once; a dead
worker fails (after one retry) only its own cell."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

from benchmark.base.errors import UsageError
from benchmark.harness.cells import HarnessConfig, resolve_cells
from benchmark.harness.executors import LocalExecutor, PooledExecutor, ProcessExecutor, make_executor
from benchmark.harness.runner import run_cells
from benchmark.plugins.registry import default_registry
from benchmark.testing import cells

COMPARED = ("cell_id", "status", "cacc", "asr", "cacc_before", "asr_before", "cacc_clean", "der", "scenario_id")


def grid(victim):
    return cells(victim, defenses=("none", "finetune"), seeds=(0, 1))


def run_with(tmp_path, victim, executor, name, **config):
    config = HarnessConfig(store_dir=str(tmp_path / name / "store"), device="cpu", precision="fp32", **config)
    records = run_cells(grid(victim), config, tmp_path / name / "out", executor=executor)
    return [{k: r.get(k) for k in COMPARED} for r in records]


def test_local_process_and_ray_give_identical_records(tmp_path, tiny_victim_dir):
    local = run_with(tmp_path, tiny_victim_dir, LocalExecutor(threads=1), "local")
    assert [r["status"] for r in local] == ["ok"] * 4
    process = run_with(tmp_path, tiny_victim_dir, ProcessExecutor(workers=2, threads=1), "process")
    assert process == local
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install -e '.[ray]'); local and process agreed")
    ray_records = run_with(tmp_path, tiny_victim_dir, make_executor("ray", workers=2, threads=1), "ray")
    assert ray_records == local


def test_a_killed_worker_fails_only_its_cell(tmp_path, tiny_victim_dir):
    config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32", isolation="none",
                           plugins=(("defense", "trust_plugins:KillWorker"),))
    records = run_cells(cells(tiny_victim_dir, defenses=("none", "kill_worker", "finetune", "fine_pruning")),
                        config, tmp_path / "out", executor=ProcessExecutor(workers=2, threads=1))
    by_defense = {r["defense"]: r for r in records}
    assert by_defense["kill_worker"]["status"] == "failed"
    assert "WorkerDied" in by_defense["kill_worker"]["error"]
    assert [by_defense[d]["status"] for d in ("none", "finetune", "fine_pruning")] == ["ok"] * 3
    assert [r["defense"] for r in records] == ["none", "kill_worker", "finetune", "fine_pruning"]  # draw order
    again = run_cells(cells(tiny_victim_dir, defenses=("none", "kill_worker", "finetune", "fine_pruning")),
                      config, tmp_path / "out", resume=True, executor=ProcessExecutor(workers=2, threads=1))
    assert [r["defense"] for r in again] == ["kill_worker"]  # --resume retries only the failed cell


class _FakePool(PooledExecutor):
    """Runs tasks in this process, finishing them in reverse submission order, and logs submissions."""

    def __init__(self, workers, fail_build=False):
        super().__init__(workers, threads=1)
        self.log, self.fail_build, self.events = [], fail_build, []

    def _submit(self, task, config):
        self.log.append((task.kind, task.cell.seed, task.cell.defense.name))
        return len(self.log) - 1, task

    def _wait(self, handles):
        return [max(handles, key=lambda h: h[0])]

    def _result(self, handle):
        task = handle[1]
        if task.kind == "build":
            return "RuntimeError: attack failed" if self.fail_build else None
        self.events.append(("finished", f"{task.cell.seed}-{task.cell.defense.name}"))
        return {"cell_id": f"{task.cell.seed}-{task.cell.defense.name}", "status": "ok"}


def test_each_scenario_is_built_once_before_its_cells(tiny_victim_dir):
    pool = _FakePool(workers=2)
    config = HarnessConfig(store_dir="unused")
    todo = resolve_cells(cells(tiny_victim_dir, defenses=("none", "finetune", "nad"), seeds=(0, 1)),
                         default_registry(), config)
    records = list(pool.run(iter(todo), config, None))
    builds = [entry for entry in pool.log if entry[0] == "build"]
    assert sorted(b[1] for b in builds) == [0, 1]  # once per scenario
    for seed in (0, 1):
        first_cell = min(i for i, e in enumerate(pool.log) if e[0] == "cell" and e[1] == seed)
        build = next(i for i, e in enumerate(pool.log) if e[0] == "build" and e[1] == seed)
        assert build < first_cell
    assert sorted(r["cell_id"] for r in records) == sorted(f"{c.seed}-{c.defense.name}" for c in todo)


def test_each_record_is_handed_back_as_its_cell_finishes(tiny_victim_dir):
    """A record is yielded (and so written) before any other task finishes, even when cells drawn
    before it are still computing: stopping the run then loses no finished cell."""
    pool = _FakePool(workers=2)  # finishes the newest task first: later cells overtake earlier ones
    config = HarnessConfig(store_dir="unused")
    todo = resolve_cells(cells(tiny_victim_dir, defenses=("none", "finetune", "nad"), seeds=(0, 1)),
                         default_registry(), config)
    for record in pool.run(iter(todo), config, None):
        pool.events.append(("handed back", record["cell_id"]))
    finished = [cell for event, cell in pool.events if event == "finished"]
    assert finished != [f"{c.seed}-{c.defense.name}" for c in todo]  # they did finish out of draw order
    for k, (event, cell) in enumerate(pool.events):
        if event == "finished":
            assert pool.events[k + 1] == ("handed back", cell)


def test_a_failed_build_fails_its_cells_without_rebuilding(tiny_victim_dir):
    pool = _FakePool(workers=2, fail_build=True)
    config = HarnessConfig(store_dir="unused", device="cpu")
    todo = resolve_cells(cells(tiny_victim_dir, defenses=("none", "finetune")), default_registry(), config)
    records = list(pool.run(iter(todo), config, None))
    assert [e[0] for e in pool.log] == ["build"]
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert all(r["error"] == "RuntimeError: attack failed" for r in records)


def test_ray_without_ray_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match=r"pip install -e \"\.\[ray\]\""):
        make_executor("ray", workers=2)


def test_unknown_executor_and_bad_workers_are_usage_errors():
    with pytest.raises(UsageError, match="--executor must be one of local, process, ray"):
        make_executor("slurm")
    with pytest.raises(UsageError, match="--workers must be at least 1"):
        make_executor("process", workers=0)


def test_the_attack_trains_with_no_other_model_resident(tmp_path, tiny_victim_dir):
    """Memory: the harness holds neither the pre-trained weights nor the clean reference model
    while the attack trains (both are read from disk when asked for), so the attack's phase
    holds only the model it trains. Counted in a fresh worker process."""
    config = HarnessConfig(store_dir=str(tmp_path / "store"), device="cpu", precision="fp32", isolation="none",
                           plugins=(("attack", "trust_plugins:CountingBadNets"),))
    [record] = run_cells(cells(tiny_victim_dir, attacks=("counting_badnets",)), config, tmp_path / "out",
                         executor=ProcessExecutor(workers=1, threads=1))
    assert record["status"] == "ok", record.get("error")
    info = record["attack_info"]
    assert (len(info["models_at_start"]), len(info["models_at_end"])) == (0, 1), info


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting for a parent that never reaps it."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_ends_when_its_driver_is_killed():
    import signal
    import subprocess
    import time

    worker = ("import sys, time; from benchmark.harness.executors import exit_when_orphaned; "
              "exit_when_orphaned(int(sys.argv[1]), interval_s=0.05); time.sleep(300)")
    driver = (f"import os, subprocess, sys, time; "
              f"child = subprocess.Popen([sys.executable, '-c', {worker!r}, str(os.getpid())]); "
              "print(child.pid, flush=True); time.sleep(300)")
    proc = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    try:
        assert _alive(child)
        proc.send_signal(signal.SIGKILL)  # no clean-up runs in the driver
        proc.wait()
        deadline = time.monotonic() + 60  # a bound on waiting, not a timing the test measures
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_executors_take_explicit_arguments():
    """A misspelt argument is an error, never silently dropped."""
    with pytest.raises(TypeError):
        LocalExecutor(threads=1, workrs=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ProcessExecutor(workers=2, thread=1)  # type: ignore[call-arg]
