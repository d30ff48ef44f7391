"""Bad input gets one clear error before any work: a table of bad command-line values, suite
entries, victim folders, data files, output folders and records files.

Each case runs the command in-process and expects exactly one line ``bdbench: error: ...`` on
stderr that names the option, file or field, exit code 2, no traceback, no cell started, and
the earlier records byte for byte. A ``run`` case is then repeated as ``bdbench validate`` with
the same arguments, which must print the very same error line. A few cases also run as a
subprocess, to check what a user's shell sees.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from benchmark.cli.commands import main
from benchmark.plugins.registry import default_registry, registry_path

from conftest import REPO

BASE = ["--suite", "quick", "--defense", "none", "--train-limit", "120", "--test-limit", "40",
        "--device", "cpu", "--precision", "fp32"]
EARLIER = {"cell_id": "earlier-cell", "status": "ok", "dataset": "demo", "attack": "badnets", "defense": "none"}


@dataclasses.dataclass
class Where:
    """The folders a case builds its arguments from."""

    tmp: Path
    victim: Path  # the tiny victim (a good one)
    out: Path  # an --out folder holding one earlier record

    def victim_copy(self, name: str = "victim") -> Path:
        folder = self.tmp / name
        shutil.copytree(self.victim, folder)
        return folder

    def data(self, **splits: str | bytes) -> Path:
        """A --data-dir with sst2-openbackdoor/{train,dev,test}.tsv; ``splits`` replace files."""
        root = self.tmp / "data"
        folder = root / "sst2-openbackdoor"
        folder.mkdir(parents=True, exist_ok=True)
        good = "sentence\tlabel\n" + "".join(f"a good film {i}\t1\na bad film {i}\t0\n" for i in range(4))
        for split in ("train", "dev", "test"):
            content = splits.get(split, good)
            path = folder / f"{split}.tsv"
            path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return root

    def folder(self, **files: str) -> Path:
        """A data folder ``mine`` holding ``files`` (``train_tsv="..."`` is ``train.tsv``)."""
        folder = self.tmp / "mine"
        folder.mkdir(exist_ok=True)
        for name, content in files.items():
            (folder / name.replace("_", ".")).write_text(content, encoding="utf-8")
        return folder

    def suite(self, table: str) -> None:
        """Make ``registry.toml`` the real one plus ``[suites.bad]`` = ``table``."""
        path = self.tmp / "registry.toml"
        path.write_text(REAL_REGISTRY + "\n[suites.bad]\n" + table + "\n", encoding="utf-8")
        self.registry = path

    registry: Path | None = None


REAL_REGISTRY = registry_path().read_text(encoding="utf-8")


@dataclasses.dataclass
class Case:
    id: str
    args: Callable[[Where], list[str]]  # the arguments after the command
    expect: tuple[str, ...]  # each must be in the error line
    command: str = "run"

    def __str__(self) -> str:
        return self.id


def run_args(*extra: str, victim: bool = True) -> Callable[[Where], list[str]]:
    def make(w: Where) -> list[str]:
        return [*BASE, *(["--victim", str(w.victim)] if victim else []), "--out", str(w.out), *extra]
    return make


def with_victim(change: Callable[[Where], Path | str], *extra: str) -> Callable[[Where], list[str]]:
    def make(w: Where) -> list[str]:
        return [*BASE, "--victim", str(change(w)), "--out", str(w.out), *extra]
    return make


def with_data(**splits: str | bytes) -> Callable[[Where], list[str]]:
    def make(w: Where) -> list[str]:
        return [*run_args()(w), "--dataset", "sst2-openbackdoor", "--data-dir", str(w.data(**splits))]
    return make


def with_folder(*extra: str, **files: str) -> Callable[[Where], list[str]]:
    """``--dataset`` names the folder ``mine`` made of ``files`` (see :meth:`Where.folder`)."""
    def make(w: Where) -> list[str]:
        return [*run_args()(w), "--dataset", str(w.folder(**files)), *extra]
    return make


def offline_hub(w: Where) -> list[str]:
    """``--dataset hf:...`` with the hub switched off (the variable for a subprocess; the
    libraries read it at import, so the in-process run sets their flags too)."""
    import datasets
    import huggingface_hub.constants

    w.setenv("HF_HUB_OFFLINE", "1")
    w.setenv("HF_DATASETS_CACHE", str(w.tmp / "hf-cache"))
    w.patch(datasets.config, "HF_HUB_OFFLINE", True)
    w.patch(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return [*run_args()(w), "--dataset", "hf:no-such-owner/no-such-set"]


def suite_with_folder(table: str) -> Callable[[Where], list[str]]:
    """A suite whose ``datasets`` is a good two-class folder, plus ``table``."""
    def make(w: Where) -> list[str]:
        folder = w.folder(train_tsv=GOOD_OWN, test_tsv=GOOD_OWN)
        return with_suite(f"datasets = [{json.dumps(str(folder))}]\n{table}")(w)
    return make


def with_suite(table: str) -> Callable[[Where], list[str]]:
    def make(w: Where) -> list[str]:
        w.suite(table)
        return [*BASE, "--suite", "bad", "--victim", str(w.victim), "--out", str(w.out)]
    return make


def corrupt_weights(w: Where) -> Path:
    folder = w.victim_copy()
    (folder / "model.safetensors").write_bytes(b"this is not a safetensors file" * 4)
    return folder


def truncated_weights(w: Where) -> Path:
    folder = w.victim_copy()
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    return folder


def without(*names: str) -> Callable[[Where], Path]:
    def change(w: Where) -> Path:
        folder = w.victim_copy()
        for name in names:
            (folder / name).unlink(missing_ok=True)
        return folder
    return change


def pickled(w: Where) -> Path:
    folder = w.victim_copy()
    from safetensors.torch import load_file

    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def a_file(w: Where) -> Path:
    path = w.tmp / "a-file.txt"
    path.write_text("not a folder\n", encoding="utf-8")
    return path


def out_is(make_out: Callable[[Where], Path]) -> Callable[[Where], list[str]]:
    def make(w: Where) -> list[str]:
        return [*BASE, "--victim", str(w.victim), "--out", str(make_out(w))]
    return make


def records_folder(w: Where) -> Path:
    out = w.tmp / "out-with-folder"
    (out / "records.jsonl").mkdir(parents=True)
    return out


def read_only_records(w: Where) -> Path:
    records = w.out / "records.jsonl"
    records.chmod(0o444)
    if os.geteuid() == 0:  # root writes anyway: make the access check see what a user would
        real = os.access
        w.patch(os, "access", lambda p, mode, *a, **k: False if Path(p) == records and mode & os.W_OK
                else real(p, mode, *a, **k))
    return w.out


def bad_line(line: str) -> Callable[[Where], list[str]]:
    def make(w: Where) -> list[str]:
        with (w.out / "records.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        return [*run_args()(w), "--resume"]
    return make


def board(folder: Callable[[Where], Path], line: str | None = None) -> Callable[[Where], list[str]]:
    def make(w: Where) -> list[str]:
        if line is not None:
            with (w.out / "records.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        return [str(folder(w))]
    return make


def empty_folder(w: Where) -> Path:
    folder = w.tmp / "empty"
    folder.mkdir()
    return folder


GOOD_TSV = "sentence\tlabel\na good film\t1\na bad film\t0\n"
def unknown_model_type(w: Where) -> Path:
    folder = w.victim_copy()
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "no-such-family"}), encoding="utf-8")
    return folder


def offline_hub_victim(w: Where) -> list[str]:
    import huggingface_hub.constants

    w.setenv("HF_HUB_OFFLINE", "1")
    w.patch(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return [*BASE, "--victim", "no-such-owner/no-such-model", "--out", str(w.out)]


def random_bytes_records(w: Where) -> list[str]:
    import random

    noise = random.Random(0).randbytes(2000)
    (w.out / "records.jsonl").write_bytes(noise)
    return [*run_args()(w), "--resume"]


GOOD_OWN = "sentence\tlabel\n" + "".join(f"a good film {i}\tpos\na bad film {i}\tneg\n" for i in range(20))

CASES = [
    # -- budget options
    Case("epochs-zero", run_args("--epochs", "0"), ("--epochs: expected a value in [1, 1000], got 0",)),
    Case("epochs-negative", run_args("--epochs", "-3"), ("--epochs", "expected a value in [1, 1000]")),
    Case("epochs-not-a-number", run_args("--epochs", "two"), ("--epochs", "invalid int value: 'two'")),
    Case("max-batch-tokens-zero", run_args("--max-batch-tokens", "0"),
         ("--max-batch-tokens: expected a value at least 1, got 0",)),
    Case("max-length-zero", run_args("--max-length", "0"), ("--max-length: expected a value at least 16, got 0",)),
    Case("max-length-negative", run_args("--max-length", "-5"), ("--max-length", "at least 16")),
    Case("max-length-beyond-positions", run_args("--max-length", "4096"),
         ("max_length 4096", "128 positions", "max_position_embeddings", "config.json", "--max-length")),
    Case("train-limit-zero", run_args("--train-limit", "0"), ("--train-limit: expected a value at least 1, got 0",)),
    Case("train-limit-negative", run_args("--train-limit", "-10"), ("--train-limit", "at least 1")),
    Case("test-limit-zero", run_args("--test-limit", "0"), ("--test-limit: expected a value at least 1, got 0",)),
    Case("clean-fraction-zero", run_args("--clean-fraction", "0"), ("--clean-fraction: expected a value in (0, 1], got 0.0",)),
    Case("clean-fraction-above-one", run_args("--clean-fraction", "1.5"), ("--clean-fraction", "in (0, 1]", "1.5")),
    Case("clean-fraction-nan", run_args("--clean-fraction", "nan"), ("--clean-fraction: expected a number, got nan",)),
    Case("seeds-negative", run_args("--seeds", "-1"), ("--seeds: expected a value in [0, 4294967295], got -1",)),
    Case("workers-zero", run_args("--executor", "process", "--workers", "0"), ("--workers must be at least 1",)),
    Case("device-unknown", run_args("--device", "tpu"), ("--device", "invalid choice: 'tpu'")),
    Case("plugin-option-syntax", run_args("--plugin", "defense:no_colon"), ("--plugin 'defense:no_colon'",)),
    # -- plugin parameters (--set)
    Case("poison-rate-negative", run_args("--set", "badnets.poison_rate=-0.1"),
         ("badnets.poison_rate: expected a value in [0, 1], got -0.1",)),
    Case("poison-rate-nan", run_args("--set", "badnets.poison_rate=nan"), ("badnets.poison_rate: expected a number",)),
    Case("poison-rate-above-one", run_args("--set", "badnets.poison_rate=1.5"),
         ("badnets.poison_rate: expected a value in [0, 1], got 1.5",)),
    Case("poison-rate-not-a-number", run_args("--set", "badnets.poison_rate=lots"),
         ("badnets.poison_rate: expected a number, got 'lots'",)),
    Case("triggers-empty", run_args("--set", "badnets.triggers="), ("badnets.triggers: must not be empty",)),
    Case("num-triggers-zero", run_args("--set", "badnets.num_triggers=0"), ("badnets.num_triggers", "at least 1")),
    Case("num-triggers-wrong-type", run_args("--set", "badnets.num_triggers=two"),
         ("badnets.num_triggers: expected an integer, got 'two'",)),
    Case("mode-not-a-choice", run_args("--set", "badnets.mode=half"), ("badnets.mode: 'half' is not one of",)),
    Case("set-unknown-key", run_args("--set", "badnets.poison_rat=0.2"),
         ("plugin 'badnets' has no parameter 'poison_rat'", "Did you mean 'poison_rate'")),
    Case("set-syntax", run_args("--set", "poison_rate=0.2"), ("--set 'poison_rate=0.2': expected plugin.param=value",)),
    Case("set-unused-plugin", run_args("--set", "nad.beta=1"), ("--set names plugin 'nad'",)),
    Case("defense-epochs-zero", run_args("--defense", "finetune", "--set", "finetune.epochs=0"),
         ("finetune.epochs: expected a value at least 1, got 0",)),
    Case("defense-lr-negative", run_args("--defense", "finetune", "--set", "finetune.lr=-1e-5"),
         ("finetune.lr: expected a value more than 0",)),
    Case("mbtsad-split-rate", run_args("--defense", "mbtsad", "--set", "mbtsad.split_rate=2"),
         ("mbtsad.split_rate: expected a value in [0, 1], got 2.0",)),
    Case("fine-mixing-grid-item", run_args("--defense", "fine_mixing", "--set", "fine_mixing.rho_grid=0.5,1.5"),
         ("fine_mixing.rho_grid: expected a value in [0, 1], got 1.5",)),
    Case("attack-epochs-zero", run_args("--attack", "ep", "--set", "ep.epochs=0"), ("ep.epochs", "at least 1")),
    # -- names
    Case("unknown-suite", run_args("--suite", "quik"), ("unknown suite 'quik'. Did you mean 'quick'",)),
    Case("unknown-defense", run_args("--defense", "finetun"), ("unknown defense 'finetun'. Did you mean 'finetune'",)),
    Case("unknown-attack", run_args("--attack", "badnet"), ("unknown attack 'badnet'. Did you mean 'badnets'",)),
    Case("unknown-dataset", run_args("--dataset", "sst3"), ("unknown data set 'sst3'",)),
    # -- victims
    Case("victim-relative-path", with_victim(lambda w: "./no-such-victim-folder"),
         ("victim './no-such-victim-folder': no such folder",)),
    Case("victim-absolute-path", with_victim(lambda w: "/no/such/victim"), ("victim '/no/such/victim': no such folder",)),
    Case("victim-is-a-file", with_victim(a_file), ("a-file.txt': is not a folder",)),
    Case("victim-corrupt-weights", with_victim(corrupt_weights), ("model.safetensors: not a readable safetensors file",)),
    Case("victim-truncated-weights", with_victim(truncated_weights), ("model.safetensors: not a readable safetensors file",)),
    Case("victim-without-tokenizer", with_victim(without("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")),
         ("victim: no tokenizer files",)),
    Case("victim-without-config", with_victim(without("config.json")), ("victim: no config.json",)),
    Case("victim-without-weights", with_victim(without("model.safetensors")), ("victim: no model weights found",)),
    Case("victim-pickle-weights", with_victim(pickled), ("weights are stored as pickle (pytorch_model.bin)",)),
    # -- data
    Case("data-dir-missing", run_args("--data-dir", "/no/such/data/folder"), ("--data-dir /no/such/data/folder: no such folder",)),
    Case("data-dir-is-a-file", lambda w: [*run_args()(w), "--data-dir", str(a_file(w))], ("--data-dir", "is not a folder")),
    Case("tsv-not-utf8", with_data(train=b"sentence\tlabel\ngood\t1\ncaf\xe9 noir\t0\n"),
         ("sst2-openbackdoor/train.tsv:3: not UTF-8 text",)),
    Case("tsv-label-not-an-integer", with_data(train="sentence\tlabel\ngood\tpositive\n"),
         ("sst2-openbackdoor/train.tsv:2: label 'positive' is not an integer",)),
    Case("tsv-label-out-of-range", with_data(dev="sentence\tlabel\ngood\t1\nodd\t5\n"),
         ("sst2-openbackdoor/dev.tsv:3: label 5 is out of range, expected 0..1",)),
    Case("tsv-missing-header", with_data(test="a good film\t1\na bad film\t0\n"),
         ("sst2-openbackdoor/test.tsv:1: expected the header 'sentence<TAB>label'",)),
    Case("tsv-no-tab", with_data(train="sentence\tlabel\nno tab here\n"), ("train.tsv:2: expected 'text<TAB>label'",)),
    Case("tsv-empty-split", with_data(test="sentence\tlabel\n"), ("sst2-openbackdoor/test): the split is empty",)),
    # -- your own data: --dataset PATH or hf:ID, --text-field, --label-field
    Case("own-folder-missing", run_args("--dataset", "./no-such-data-folder"),
         ("data set folder ./no-such-data-folder: no such folder",)),
    Case("own-folder-is-a-file", lambda w: [*run_args()(w), "--dataset", str(a_file(w))], ("a-file.txt: is not a folder",)),
    Case("own-no-train", with_folder(test_tsv=GOOD_OWN), ("mine: no train.tsv (expected train.tsv, test.tsv",)),
    Case("own-no-test", with_folder(train_tsv=GOOD_OWN), ("mine: no test.tsv",)),
    Case("own-unknown-text-column", with_folder("--text-field", "review", train_tsv=GOOD_OWN, test_tsv=GOOD_OWN),
         ("mine/train.tsv:1: no text column 'review' (--text-field)", "Known: label, sentence")),
    Case("own-unknown-label-column", with_folder("--label-field", "stars", train_tsv=GOOD_OWN, test_tsv=GOOD_OWN),
         ("mine/train.tsv:1: no label column 'stars' (--label-field)",)),
    Case("own-one-class", with_folder(train_tsv="sentence\tlabel\na\tpos\nb\tpos\n", test_tsv=GOOD_OWN),
         ("mine (train): every training label is 'pos'; a classifier needs at least two classes",)),
    Case("own-test-label-unseen", with_folder(train_tsv=GOOD_OWN, test_tsv=GOOD_OWN + "so-so\tmeh\n"),
         ("mine/test.tsv:42: label 'meh' does not occur in the training split (its classes: neg, pos)",)),
    Case("own-fields-wrong-count", with_folder("--text-field", "review",
                                               train_tsv="id\treview\tlabel\n1\tgood\n", test_tsv=GOOD_OWN),
         ("mine/train.tsv:2: expected 3 tab-separated fields as in the header, found 2",)),
    Case("own-field-on-registered-data", run_args("--text-field", "review"),
         ("--text-field name the columns of a folder or hf:ID data set", "(demo-reviews) are registered ones")),
    Case("own-field-empty", run_args("--label-field", " "), ("--label-field: expected a column name, got ' '",)),
    Case("own-hub-offline", offline_hub,
         ("hf:no-such-owner/no-such-set: cannot load 'no-such-owner/no-such-set' from the Hugging Face hub",
          "datasets.load_dataset('no-such-owner/no-such-set')", "only the local cache, since HF_HUB_OFFLINE is set")),
    Case("own-hub-malformed", run_args("--dataset", "hf:"), ("data set 'hf:': expected hf:ID or hf:ID:CONFIG",)),
    Case("own-target-not-a-class", suite_with_folder("target_label = 2"),
         ("target_label 2 is not a class of data set", "mine' (its classes are 0..1)")),
    Case("suite-text-field-not-a-string", with_suite("text_field = 3"),
         ("[suites.bad].text_field: expected a column name, got 3",)),
    # -- output folder
    Case("out-is-a-file", out_is(a_file), ("--out", "a-file.txt: is a file, not a folder")),
    Case("out-below-a-file", out_is(lambda w: a_file(w) / "sub"), ("--out", "a-file.txt is a file, not a folder")),
    Case("out-records-is-a-folder", out_is(records_folder), ("--out", "records.jsonl (not a regular file)")),
    Case("out-records-read-only", out_is(read_only_records), ("--out", "records.jsonl (read-only)")),
    # -- suites in registry.toml
    Case("suite-param-wrong-type", with_suite('set = { badnets = { poison_rate = "lots" } }'),
         ("badnets.poison_rate: expected a number, got 'lots'",)),
    Case("suite-param-out-of-range", with_suite('attacks = [{ name = "badnets", set = { poison_rate = 2.0 } }]'),
         ("badnets.poison_rate: expected a value in [0, 1], got 2.0",)),
    Case("suite-budget-out-of-range", with_suite("train_limit = 0"),
         ("registry.toml [suites.bad].train_limit: expected a value at least 1, got 0",)),
    Case("suite-training-out-of-range", with_suite("[suites.bad.victim_training]\nepochs = 0"),
         ("[suites.bad].victim_training.epochs: expected a value in [1, 1000], got 0",)),
    Case("suite-micro-batch-out-of-range", with_suite("[suites.bad.defense_training]\nmax_batch_tokens = 0"),
         ("[suites.bad].defense_training.max_batch_tokens: expected a value at least 1, got 0",)),
    Case("suite-seeds-negative", with_suite("seeds = [-2]"), ("[suites.bad].seeds: expected a value in [0",)),
    Case("suite-unknown-key", with_suite("epochs = 3"), ("[suites.bad]: unknown keys ['epochs']",)),
    # -- records files
    Case("resume-line-not-an-object", bad_line("[1, 2, 3]"), ("records.jsonl:2: not a bdbench record",)),
    Case("resume-line-other-schema", bad_line('{"name": "something else", "score": 3}'),
         ("records.jsonl:2: not a bdbench record",)),
    Case("leaderboard-missing-folder", board(lambda w: w.tmp / "no-such-run"), ("no-such-run: no such folder",),
         command="leaderboard"),
    Case("leaderboard-on-a-file", board(a_file), ("a-file.txt: is not a folder",), command="leaderboard"),
    Case("leaderboard-without-records", board(empty_folder), ("empty: no records.jsonl there",), command="leaderboard"),
    Case("leaderboard-line-not-an-object", board(lambda w: w.out, '"just a string"'),
         ("records.jsonl:2: not a bdbench record",), command="leaderboard"),
    # -- second round (hardening issue): silently wrong, accepted without a word, raw or late
    Case("tsv-third-column", with_data(train="sentence\tlabel\na good film\t1\na bad film\t0\ngood movie\t1\textra\n"),
         ("sst2-openbackdoor/train.tsv:4: expected 2 tab-separated fields as in the header, found 3",)),
    Case("own-third-column", with_folder(train_tsv=GOOD_OWN + "good movie\tpos\textra\n", test_tsv=GOOD_OWN),
         ("mine/train.tsv:42: expected 2 tab-separated fields as in the header, found 3",)),
    Case("tsv-one-class", with_data(train="sentence\tlabel\na good film\t1\nanother good one\t1\n"),
         ("(sst2-openbackdoor/train): every training label is 1; a classifier needs at least two classes",)),
    Case("out-empty", run_args("--out", ""), ("--out '': name a folder for the records",)),
    Case("out-is-the-store", lambda w: [*run_args()(w), "--store", str(w.out)],
         ("is inside --store", "the store holds the cached models")),
    Case("out-inside-the-store", lambda w: [*run_args()(w), "--store", str(w.tmp)], ("is inside --store",)),
    Case("store-is-a-file", lambda w: [*run_args()(w), "--store", str(a_file(w))], ("--store", "a-file.txt: is a file")),
    Case("resume-random-bytes", random_bytes_records, ("records.jsonl:1: not", "is this the right folder?")),
    Case("set-twice", run_args("--set", "badnets.poison_rate=0.1", "--set", "badnets.poison_rate=0.2"),
         ("--set badnets.poison_rate is given twice ('0.1' and '0.2')",)),
    Case("epochs-huge", run_args("--epochs", "100000000"), ("--epochs: expected a value in [1, 1000], got 100000000",)),
    Case("defense-timeout-zero", run_args("--defense-timeout", "0"),
         ("--defense-timeout must be a positive number of seconds, got 0",)),
    Case("victim-unknown-model-type", with_victim(unknown_model_type),
         ("config.json: model_type 'no-such-family' is not a model family this transformers knows",)),
    Case("victim-hub-offline", offline_hub_victim,
         ("victim 'no-such-owner/no-such-model': not a folder, not a known victim name, and not in the local hub cache",)),
    Case("leaderboard-asr-infinity", board(lambda w: w.out, '{"cell_id": "inf", "status": "ok", "asr": Infinity}'),
         ("records.jsonl: cell inf: asr is inf, expected a finite number or null",), command="leaderboard"),
    Case("leaderboard-cacc-string", board(lambda w: w.out, '{"cell_id": "str", "status": "ok", "cacc": "high"}'),
         ("records.jsonl: cell str: cacc is 'high', expected a finite number or null",), command="leaderboard"),
    # -- new-defense
    Case("new-defense-builtin-name", lambda w: ["none", "--dir", str(w.tmp)],
         ("defense name 'none' is taken (builtin:defenses.none:NoDefense)",), command="new-defense"),
    Case("new-defense-missing-dir", lambda w: ["my_guard", "--dir", str(w.tmp / "no-such-dir")],
         ("--dir", "no-such-dir: no such folder",), command="new-defense"),
]


@pytest.fixture
def where(tmp_path, tiny_victim_dir, monkeypatch) -> Where:
    default_registry()  # loaded from the real registry.toml before any case swaps the file
    out = tmp_path / "out"
    out.mkdir()
    (out / "records.jsonl").write_text(json.dumps(EARLIER, sort_keys=True) + "\n", encoding="utf-8")
    w = Where(tmp_path, tiny_victim_dir, out)
    w.patch = monkeypatch.setattr  # type: ignore[attr-defined]
    w.setenv = monkeypatch.setenv  # type: ignore[attr-defined]
    return w


@pytest.fixture
def no_cells(monkeypatch):
    """Fails the case if any cell starts."""
    started = []

    def refuse(self, cell):
        started.append(cell)
        raise AssertionError("a cell started")

    monkeypatch.setattr("benchmark.harness.harness.Harness.run_cell", refuse)
    return started


def error_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("bdbench: error:")]
    assert len(lines) == 1, err
    return lines[0]


def records_bytes(where: Where) -> bytes | None:
    path = where.out / "records.jsonl"
    return path.read_bytes() if path.is_file() else None


def test_list_into_a_closed_pipe_ends_quietly(where):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(f"{shlex.quote(sys.executable)} -m benchmark.cli.commands list | head -1", shell=True,
                          capture_output=True, text=True, cwd=where.tmp, env=env, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.stdout.count("\n") == 1


def test_the_table_is_long_enough():
    assert len(CASES) >= 55
    assert len({c.id for c in CASES}) == len(CASES)


def test_the_base_arguments_validate(where, capsys):
    assert main(["validate", *run_args()(where)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_gives_one_clear_error(case, where, capsys, monkeypatch, no_cells):
    args = case.args(where)
    if where.registry is not None:
        monkeypatch.setattr("benchmark.plugins.registry.registry_path", lambda: where.registry)
    before = records_bytes(where)
    capsys.readouterr()
    line = error_line(capsys, main([case.command, *args]))
    for expected in case.expect:
        assert expected in line, line
    assert not no_cells
    assert records_bytes(where) == before
    if case.command == "run":  # the same error, before any work, from validate
        line_validate = error_line(capsys, main(["validate", *args]))
        assert line_validate.replace("bdbench validate --help", "bdbench run --help") == line
        assert records_bytes(where) == before


SUBPROCESS_CASES = ["epochs-zero", "victim-corrupt-weights", "tsv-not-utf8", "out-is-a-file", "own-hub-offline"]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_a_shell_sees_one_line_and_exit_code_2(case_id, where):
    [case] = [c for c in CASES if c.id == case_id]
    args = case.args(where)
    before = records_bytes(where)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "benchmark.cli.commands", case.command, *args], capture_output=True,
                          text=True, cwd=where.tmp, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("bdbench: error:")]
    assert len(lines) == 1, done.stderr
    assert all(expected in lines[0] for expected in case.expect), lines[0]
    assert records_bytes(where) == before
