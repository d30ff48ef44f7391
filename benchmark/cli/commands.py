"""The ``bdbench`` command: run, leaderboard, list, validate, new-defense."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
from pathlib import Path

from ..base.errors import BdbenchError, UsageError

log = logging.getLogger("benchmark")

# the command-line options that set budget fields, named in error messages
BUDGET_OPTIONS = {"train_limit": "--train-limit", "test_limit": "--test-limit", "max_length": "--max-length",
                  "clean_fraction": "--clean-fraction", "victim_training.epochs": "--epochs",
                  "victim_training.max_batch_tokens": "--max-batch-tokens",
                  "defense_training.max_batch_tokens": "--max-batch-tokens"}


class Parser(argparse.ArgumentParser):
    """Usage mistakes become a :class:`UsageError`, so that every error reads ``bdbench: error: ...``."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="quick", help="a suite of registry.toml (default: quick)")
    p.add_argument("--dataset", nargs="+",
                   help="override the suite's data sets: registered names, folders (train.tsv, test.tsv, "
                        "optional dev.tsv) or hf:ID[:CONFIG]")
    p.add_argument("--text-field", help="the text column of folder and hub data sets (default: the column "
                                        "beside the label, else sentence or text)")
    p.add_argument("--label-field", help="the label column of folder and hub data sets (default: label)")
    p.add_argument("--victim", nargs="+", help="victim names, folders or hub ids")
    p.add_argument("--attack", nargs="+", help="run only these attacks: a label the suite configures keeps its settings, any other name is the plugin's defaults")
    p.add_argument("--defense", nargs="+", help="run only these defenses (labels of the suite, or plugin names)")
    p.add_argument("--seeds", nargs="+", type=int, help="override the suite's seeds")
    p.add_argument("--data-dir", help="folder of data sets (default: $BDBENCH_DATA)")
    p.add_argument("--out", default="runs/latest", help="output folder for records and leaderboard")
    p.add_argument("--store", help="artifact store folder (default: OUT/../store)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="PLUGIN.PARAM=VALUE",
                   help="override a plugin parameter (repeatable)")
    p.add_argument("--train-limit", type=int, help="seeded, label-balanced training subset")
    p.add_argument("--test-limit", type=int, help="seeded, label-balanced test subset")
    p.add_argument("--max-length", type=int, help="truncation length in word-pieces")
    p.add_argument("--clean-fraction", type=float, help="defender's clean share of the training set")
    p.add_argument("--epochs", type=int, help="victim training epochs")
    p.add_argument("--max-batch-tokens", type=int,
                   help="memory: run training batches above this many padded tokens as micro-batches "
                        "accumulated into one optimiser step (victim and defense training)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--resume", action="store_true", help="skip cells that already have an ok record in OUT")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickle checkpoints (unsafe)")
    p.add_argument("--executor", choices=["local", "process", "ray"],
                   help="where cells run: this process (local, the default), N worker processes (process), "
                        "or Ray tasks (ray; pip install -e '.[ray]')")
    p.add_argument("--workers", type=int, help="worker processes or concurrent Ray tasks (default 2; local: 1)")
    p.add_argument("--threads", type=int,
                   help="torch threads per worker (default: cores / workers; local: torch's default)")
    p.add_argument("--ray-address", help="an existing Ray cluster to submit to (default: start a local one)")
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="KIND:MODULE:CLASS",
                   help="load an extra plugin class without installing it, e.g. defense:mypkg.guard:Guard "
                        "(repeatable; every worker imports it)")
    p.add_argument("--isolation", default="auto", choices=["auto", "process", "sandbox", "none"],
                   help="where each defense runs: the strongest isolation that works here (auto, the default: "
                        "the sandbox where bubblewrap runs, else process), a bubblewrap sandbox that shows only "
                        "the interpreter, the code and the defense's own folder (sandbox), its own process "
                        "with only its declared assets (process), or in-process (none: trusted plugins only)")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress lines (phases, cells, heartbeats): only warnings and errors")
    p.add_argument("--stealth-lm", metavar="LM",
                   help="a causal LM (smollm2-135m, a folder or a hub id) for every scenario's perplexity "
                        "stealthiness figure, OpenBackdoor's ΔPPL, in the records' attack_stealth (default: not "
                        "computed)")
    p.add_argument("--defense-timeout", type=float, default=6 * 3600.0, metavar="SECONDS",
                   help="a defense call's time limit (default 6 hours); past it the defense is killed and its "
                        "cell fails (not applied with --isolation none)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bdbench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress: no phase, cell or heartbeat lines, only warnings and errors")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run a suite (default: quick) and write records and the leaderboard")
    _add_run_args(run)
    run.add_argument("--dry-run", action="store_true",
                     help="validate and print the expected cost instead of running (as bdbench validate)")
    val = sub.add_parser("validate", help="check a run's names, parameters and data without training, and print "
                                          "the grid's expected cost (a calibration of seconds)")
    _add_run_args(val)
    for command in (run, val):
        command.add_argument("--no-estimate", action="store_true",
                            help="no calibration and no expected cost (printed by validate; logged by run, "
                                 "and in each record as expected_s)")
    board = sub.add_parser("leaderboard", help="render DIR/records.jsonl into tables and plots")
    board.add_argument("dir")
    board.add_argument("--latex", action="store_true", help="also write leaderboard.tex")
    board.add_argument("--open", action="store_true", help="open leaderboard.html in the web browser")
    sub.add_parser("list", help="list plugins, data sets and suites")
    new = sub.add_parser("new-defense", help="scaffold a third-party defense plugin package")
    new.add_argument("name")
    new.add_argument("--dir", default=".", help="where to create the package folder")
    return parser


def _suite_from_args(args):
    from ..harness.config import check_seeds, suite_from_toml
    from ..plugins.registry import read_registry_toml

    suite = suite_from_toml(args.suite, read_registry_toml())
    fields = {}
    if args.dataset:
        fields["datasets"] = tuple(args.dataset)
    if args.victim:
        fields["victims"] = tuple(args.victim)
    if args.seeds:
        fields["seeds"] = check_seeds(args.seeds, "--seeds")
    budget_changes = {k: v for k, v in (("train_limit", args.train_limit), ("test_limit", args.test_limit),
                                       ("max_length", args.max_length), ("clean_fraction", args.clean_fraction))
                      if v is not None}
    if args.epochs is not None:
        budget_changes["victim_training"] = {"epochs": args.epochs}
    if args.max_batch_tokens is not None:
        budget_changes.setdefault("victim_training", {})["max_batch_tokens"] = args.max_batch_tokens
        budget_changes["defense_training"] = {"max_batch_tokens": args.max_batch_tokens}
    return suite.with_changes(attacks=args.attack, defenses=args.defense, budget_changes=budget_changes,
                              budget_labels=BUDGET_OPTIONS, **fields)


GRID_OPTIONS = ("dataset", "victim", "attack", "defense", "seeds", "train_limit", "test_limit", "max_length",
                "clean_fraction", "epochs", "max_batch_tokens")


def _grid_name(args, suite) -> str:
    """What the log calls the run: the suite, and the command-line options that changed its grid."""
    changed = [f"--{name.replace('_', '-')}" for name in GRID_OPTIONS if getattr(args, name, None) is not None]
    return f"suite {suite.name}" + (f" changed by {' '.join(changed)}" if changed else "")


def _plugin_options(options: list[str]) -> tuple[tuple[str, str], ...]:
    plugins = []
    for option in options:
        kind, _, target = option.partition(":")
        if kind not in ("attack", "defense") or ":" not in target:
            raise BdbenchError(f"--plugin {option!r}: expected KIND:MODULE:CLASS with KIND attack or defense, "
                               "e.g. defense:mypkg.guard:Guard")
        plugins.append((kind, target))
    return tuple(plugins)


def _harness_config(args, out: Path, suite):
    """The harness configuration: command line first, then the suite's column names."""
    from ..harness.cells import HarnessConfig
    from ..harness.config import check_column, parse_set_options

    sets = parse_set_options(args.sets)
    store = Path(args.store) if args.store else out.parent / "store"
    columns = {key: check_column(value, option) if value is not None else getattr(suite, key)
               for key, value, option in (("text_field", args.text_field, "--text-field"),
                                          ("label_field", args.label_field, "--label-field"))}
    return HarnessConfig(store_dir=str(store), data_dir=args.data_dir, device=args.device,
                         precision=args.precision, allow_pickle=args.allow_pickle, isolation=args.isolation,
                         defense_timeout_s=_positive(args.defense_timeout, "--defense-timeout"),
                         stealth_lm=args.stealth_lm,
                         plugins=_plugin_options(args.plugins), **columns,
                         overrides=tuple(sorted((k, tuple(sorted(v.items()))) for k, v in sets.items())))


def _positive(value: float, option: str) -> float:
    import math

    from ..base.errors import UsageError

    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{option} must be a positive number of seconds, got {value:g}")
    return value


def _executor_from_args(args, suite):
    """The executor: command line first, then the suite's ``executor``/``workers``/``threads``."""
    from ..harness.executors import make_executor

    name = args.executor or suite.executor
    workers = args.workers if args.workers is not None else suite.workers or (1 if name == "local" else 2)
    threads = args.threads if args.threads is not None else suite.threads
    return make_executor(name, workers=workers, threads=threads, ray_address=args.ray_address)


def _check_store(store: Path, out: Path) -> None:
    """Refuse a ``--store`` that is not a folder, and an ``--out`` that is the store or inside it."""
    if store.exists() and not store.is_dir():
        raise UsageError(f"--store {store}: is a file, not a folder")
    out_abs, store_abs = out.absolute().resolve(), store.absolute().resolve()
    if out_abs == store_abs or store_abs in out_abs.parents:
        raise UsageError(f"--out {out} is inside --store {store}: the store holds the cached models; give the "
                         "records a folder of their own")


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot take records, before any work; creates nothing."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder")
    records = out / "records.jsonl"
    if records.exists() or records.is_symlink():
        if not records.is_file():
            raise UsageError(f"--out {out}: cannot append records to {records} (not a regular file)")
        if not os.access(records, os.W_OK):
            raise UsageError(f"--out {out}: cannot append records to {records} (read-only)")
        return
    existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot create files in {existing} (not writable)")


def _preflight(args, cells, config, out: Path) -> None:
    """What the runner's own checks do not cover, for ``run`` and ``validate`` alike, before any
    work: the output folder (and its records on ``--resume``), the data folder, and each victim
    (a path that is not a folder, unreadable or pickle weights, no tokenizer, ``max_length``
    beyond its positions)."""
    from ..base.records import finished_cells
    from ..data.sources import check_data_dir
    from ..model.victims import check_victim

    if not str(args.out).strip():
        raise UsageError("--out '': name a folder for the records (e.g. --out runs/mine)")
    _check_out(out)
    _check_store(Path(config.store_dir), out)
    if args.resume:
        finished_cells(out)  # a records file that is not bdbench's fails here, naming file and line
    check_data_dir(config.data_dir)
    for victim in sorted({c.victim for c in cells}):
        longest = max(c.budget.max_length for c in cells if c.victim == victim)
        check_victim(victim, allow_pickle=config.allow_pickle, max_length=longest, store_dir=config.store_dir)


def cmd_run(args) -> int:
    from ..harness.cells import expand
    from ..harness.runner import run_cells
    from ..reporting.writers import render_leaderboard

    if args.dry_run:
        return cmd_validate(args)
    out = Path(args.out)
    suite = _suite_from_args(args)
    config = _harness_config(args, out, suite)
    cells = expand(suite)
    _preflight(args, cells, config, out)
    executor = _executor_from_args(args, suite)
    log.info("%s: %d cells -> %s (store %s)", _grid_name(args, suite), len(cells), out, config.store_dir)
    records = run_cells(cells, config, out, resume=args.resume, executor=executor, estimate=not args.no_estimate)
    paths = render_leaderboard(out)
    failed = [r for r in records if r["status"] != "ok"]
    print(f"{len(records) - len(failed)} cells ok, {len(failed)} failed; records: {out / 'records.jsonl'}")
    print(f"leaderboard: {paths['md']}")
    print((out / "leaderboard.md").read_text(encoding="utf-8"))
    print(f"page: {paths['html']}  (open it in a browser: bdbench leaderboard {shlex.quote(str(out))} --open)")
    return 1 if failed else 0


def cmd_validate(args) -> int:
    from ..harness.cells import expand
    from ..harness.runner import check_config

    suite = _suite_from_args(args)
    cells = expand(suite)
    config = _harness_config(args, Path(args.out), suite)
    _preflight(args, cells, config, Path(args.out))
    executor = _executor_from_args(args, suite)
    resolved, harness = check_config(cells, config)
    print(f"ok: suite {suite.name}, {len(cells)} cells; every plugin, parameter and data set resolves")
    if not args.no_estimate:
        from ..harness.estimate import estimate_cells, executor_shape

        workers, threads = executor_shape(executor)
        print(estimate_cells(resolved, harness, workers=workers, threads=threads).text())
    return 0


def cmd_leaderboard(args) -> int:
    from ..reporting.writers import render_leaderboard

    folder = Path(args.dir)
    if not folder.is_dir():
        raise UsageError(f"leaderboard {folder}: {'is not a folder' if folder.exists() else 'no such folder'} "
                         "(expected the --out folder of a run, holding records.jsonl)")
    if not (folder / "records.jsonl").is_file():
        raise UsageError(f"leaderboard {folder}: no records.jsonl there (expected the --out folder of a run)")
    paths = render_leaderboard(folder, latex=args.latex)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if args.open:
        import webbrowser

        webbrowser.open(paths["html"].resolve().as_uri())
    return 0


def cmd_list(args) -> int:
    from .listing import list_text

    print(list_text())
    return 0


def cmd_new_defense(args) -> int:
    from ..plugins.registry import default_registry
    from .scaffold import scaffold_defense

    registry = default_registry()
    taken = {name: entry.source for (kind, name), entry in registry.entries.items() if kind == "defense"}
    folder = scaffold_defense(args.name, Path(args.dir), taken)
    print(f"created {folder}; install it with: pip install -e {folder}")
    return 0


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "leaderboard": cmd_leaderboard, "list": cmd_list,
            "new-defense": cmd_new_defense}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "-v", "--verbose", "-q", "--quiet"):
        argv = ["run", *argv]  # `bdbench` alone runs the quick suite
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args([*argv, "run"])
    except UsageError as exc:
        print(f"bdbench: error: {exc}", file=sys.stderr)
        return 2
    if args.quiet:
        os.environ["BDBENCH_PROGRESS"] = "0"  # workers and defense processes inherit it
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return COMMANDS[args.command](args)
    except BdbenchError as exc:
        print(f"bdbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bdbench: interrupted; finished cells are in the records (rerun with --resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `bdbench list | head -1`: the reader left; say nothing more
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
