"""The command line end to end on the tiny victim: a good run, then bad inputs that must each
give one clear error (exit 2) and leave the earlier records intact."""

import os
import subprocess
import sys

import pytest
import torch

from benchmark.cli.commands import main

from conftest import REPO

BASE = ["run", "--suite", "quick", "--defense", "none", "--train-limit", "120", "--test-limit", "40",
        "--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_victim_dir):
    out = tmp_path_factory.mktemp("cli") / "out"
    code = main([*BASE, "--victim", str(tiny_victim_dir), "--out", str(out)])
    assert code == 0
    assert (out / "leaderboard.md").is_file() and (out / "leaderboard.html").is_file()
    return out, (out / "records.jsonl").read_bytes()


def write_tsv(folder, name, content):
    (folder / name).mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        (folder / name / f"{split}.tsv").write_text("sentence\tlabel\ngood film\t1\nbad film\t0\n")
    for split, text in content.items():
        (folder / name / f"{split}.tsv").write_text(text)


def pickled_victim(tmp_path, tiny_victim_dir):
    from benchmark.model.victims import load_classifier

    folder = tmp_path / "pickled"
    model = load_classifier(tiny_victim_dir, 2)
    model.config.save_pretrained(str(folder))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("case, message", [
    ("unknown plugin", "unknown defense 'finetun'. Did you mean 'finetune'"),
    ("bad set value", "badnets.poison_rate: expected a number, got 'lots'"),
    ("bad set syntax", "expected plugin.param=value"),
    ("malformed tsv", "train.tsv:2: label 'positive' is not an integer"),
    ("empty split", "sst2-openbackdoor/test): the split is empty"),
    ("pickle checkpoint", "weights are stored as pickle (pytorch_model.bin)"),
    ("unknown suite", "unknown suite 'quik'. Did you mean 'quick'"),
])
def test_bad_inputs_give_one_clear_error(finished_run, tmp_path, tiny_victim_dir, capsys, case, message):
    out, before = finished_run
    victim = str(tiny_victim_dir)
    args = [*BASE, "--victim", victim, "--out", str(out)]
    data = tmp_path / "data"
    if case == "unknown plugin":
        args = [*args, "--defense", "finetun"]
    elif case == "bad set value":
        args = [*args, "--set", "badnets.poison_rate=lots"]
    elif case == "bad set syntax":
        args = [*args, "--set", "poison_rate=0.2"]
    elif case == "malformed tsv":
        write_tsv(data, "sst2-openbackdoor", {"train": "sentence\tlabel\ngood\tpositive\n"})
        args = [*args, "--dataset", "sst2-openbackdoor", "--data-dir", str(data)]
    elif case == "empty split":
        write_tsv(data, "sst2-openbackdoor", {"test": "sentence\tlabel\n"})
        args = [*args, "--dataset", "sst2-openbackdoor", "--data-dir", str(data)]
    elif case == "pickle checkpoint":
        args = [*BASE, "--victim", str(pickled_victim(tmp_path, tiny_victim_dir)), "--out", str(out)]
    elif case == "unknown suite":
        args = [*args, "--suite", "quik"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("bdbench: error:") == 1
    assert (out / "records.jsonl").read_bytes() == before  # earlier records intact


def test_list_shows_sources_parameters_requirements(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "finetune v1  [builtin:defenses.finetune:FineTune]  requires: clean_data" in text
    assert "poison_rate: float = 0.1" in text
    assert "quick:" in text


def test_validate_trains_nothing(tmp_path, tiny_victim_dir, capsys):
    args = ["validate", "--victim", str(tiny_victim_dir), "--out", str(tmp_path / "o")]
    assert main(args) == 0
    assert "ok: suite quick" in capsys.readouterr().out
    assert not (tmp_path / "store").exists()


def test_new_defense_scaffold_imports(tmp_path):
    import importlib.util

    assert main(["new-defense", "my_guard", "--dir", str(tmp_path)]) == 0
    path = tmp_path / "bdbench-my_guard" / "bdbench_my_guard" / "plugin.py"
    spec = importlib.util.spec_from_file_location("scaffolded", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    [cls] = module.bdbench_defenses()
    assert cls.name == "my_guard" and cls.requires == {"clean_data"}


def test_new_defense_matches_the_guide(tmp_path):
    guide = (REPO / "docs" / "adding-a-defense.md").read_text(encoding="utf-8")
    assert main(["new-defense", "my_guard", "--dir", str(tmp_path)]) == 0
    package = tmp_path / "bdbench-my_guard"
    entry = 'bdbench_my_guard = "bdbench_my_guard.plugin"'
    assert entry in guide and entry in (package / "pyproject.toml").read_text(encoding="utf-8")
    assert "@hookimpl\n   def bdbench_defenses():" in guide
    assert "@hookimpl\ndef bdbench_defenses():" in (package / "bdbench_my_guard" / "plugin.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["none", "mbtsad"])
def test_new_defense_refuses_a_taken_name(tmp_path, capsys, name):
    assert main(["new-defense", name, "--dir", str(tmp_path)]) == 2
    assert f"bdbench: error: defense name {name!r} is taken (builtin:" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_new_defense_refuses_an_installed_plugin_name(tmp_path, capsys, monkeypatch):
    from benchmark.plugins.registry import Registry

    registry = Registry()
    registry.load_builtins()
    registry.add("defense", "their_guard", "entry-point:bdbench-their-guard:their_guard.plugin", lambda: None)
    monkeypatch.setattr("benchmark.plugins.registry._DEFAULT", registry)
    assert main(["new-defense", "their_guard", "--dir", str(tmp_path)]) == 2
    assert "is taken (entry-point:bdbench-their-guard:their_guard.plugin)" in capsys.readouterr().err


def test_new_defense_refuses_a_missing_dir(tmp_path, capsys):
    assert main(["new-defense", "my_guard", "--dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("bdbench: error:") == 1 and "--dir" in err and "no such folder" in err
    assert not (tmp_path / "nope").exists()


def test_the_log_names_the_options_that_changed_the_suites_grid():
    import argparse

    from benchmark.cli.commands import _grid_name, build_parser

    parser = build_parser()
    suite = argparse.Namespace(name="quick")
    plain = parser.parse_args(["run"])
    narrowed = parser.parse_args(["run", "--dataset", "demo", "--defense", "none", "--train-limit", "100"])
    assert _grid_name(plain, suite) == "suite quick"
    assert _grid_name(narrowed, suite) == "suite quick changed by --dataset --defense --train-limit"


def test_a_piped_process_executor_run_shows_phases_cells_and_heartbeats(tmp_path, tiny_victim_dir):
    """Piped to a file, the workers' phase lines, a heartbeat inside long loops and one line per
    finished cell reach the driver's stderr; the gaps between lines stay far below a minute.
    ``--quiet`` leaves none of them."""
    import re

    args = [sys.executable, "-m", "benchmark.cli.commands", "run", "--suite", "quick", "--victim", str(tiny_victim_dir),
            "--dataset", "demo", "--defense", "none", "finetune", "--train-limit", "200", "--test-limit", "40",
            "--device", "cpu", "--precision", "fp32", "--executor", "process", "--workers", "2",
            "--isolation", "process", "--out", str(tmp_path / "out")]  # progress lines under test, not the sandbox
    env = {**os.environ, "BDBENCH_HEARTBEAT_S": "0.05", "PYTHONPATH": str(REPO)}
    env.pop("BDBENCH_PROGRESS", None)
    with open(tmp_path / "log.txt", "w") as log:
        subprocess.run(args, stderr=log, stdout=subprocess.DEVNULL, env=env, check=True, timeout=600, cwd=tmp_path)
    text = (tmp_path / "log.txt").read_text()
    assert re.search(r"\[worker \d+\] benchmark\.base\.costs: clean-train: started", text), text[-3000:]
    assert re.search(r"train epoch \d/\d: \d+/\d+ steps", text), text[-3000:]
    assert re.search(r"\[1/2, \d+m\d\ds elapsed, ~\d+m\d\ds left\]", text) and "[2/2," in text, text[-3000:]
    stamps = [int(h) * 3600 + int(m) * 60 + int(s) for h, m, s in re.findall(r"^(\d\d):(\d\d):(\d\d) ", text, re.M)]
    assert max(b - a for a, b in zip(stamps, stamps[1:])) < 60
    quiet_args = [*args[:4], "--quiet", *args[4:-1], str(tmp_path / "quiet")]
    quiet_args.remove("finetune")  # one cell of the cached scenario, in this process
    quiet_args[quiet_args.index("process")] = "local"
    del quiet_args[quiet_args.index("--workers"):quiet_args.index("--workers") + 2]
    quiet = subprocess.run(quiet_args, capture_output=True, text=True, env=env, check=True, timeout=600, cwd=tmp_path)
    assert "started" not in quiet.stderr and "[1/2," not in quiet.stderr and "steps" not in quiet.stderr
