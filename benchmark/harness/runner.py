"""The runner: validates a run's cells, hands them to an executor, writes records.

A cell (scenario × defense) is a pure function of its :class:`~benchmark.harness.cells.Cell`, the
:class:`~benchmark.harness.cells.HarnessConfig` and the artifact store, so every executor gives
the same records.
Executors (:mod:`benchmark.harness.executors`) run the cells: ``local`` in this process, in scenario
order so that a prepared scenario (its backdoored model in memory) is reused by all its
defenses; ``process`` and ``ray`` over N workers, building each scenario once.

Each defense runs where only its declared assets exist (:mod:`benchmark.harness.defense_call`): a
child process that receives the backdoored weights, the tokenizer and what ``requires`` grants,
and returns what the harness (:mod:`benchmark.harness.harness`) then scores.

Concurrent runs on one ``--out`` share the work: before computing a cell the driver claims it
(:func:`benchmark.base.records.claim_cell`); a cell another run holds is deferred, and once its lock
is free it is skipped if that run finished it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..base.errors import BdbenchError, UsageError
from ..base.provenance import git_revision
from ..base.record_schema import RecordSchemaWarning, record_problems
from ..base.records import (
    append_record,
    check_writable,
    claim_cell,
    finished_cells,
    finished_records,
    records_end,
)
from ..data.sources import resolve_spec
from ..plugins.registry import Registry
from .cells import Cell, CellSpec, HarnessConfig, cell_identity, resolve_cells
from .executors import LocalExecutor
from .harness import Harness, registry_for
from .isolation import remove_orphans, resolve_isolation

log = logging.getLogger(__name__)


def validate_cells(cells: Sequence[CellSpec], registry: Registry, config: HarnessConfig) -> list[Cell]:
    """Fail before any compute on unknown names, bad parameter values, ``--set`` for a plugin the
    run does not use and bad data set names; returns the cells with their plugins resolved, once
    (:func:`~benchmark.harness.cells.resolve_cells`). Plugins that fail to import are left to fail
    their own cells."""
    resolved = resolve_cells(cells, registry, config)
    for plugin in dict(config.overrides):
        known = {c.attack.name for c in cells} | {c.defense.name for c in cells}
        if plugin not in known:
            raise UsageError(f"--set names plugin {plugin!r}, which this run does not use (it uses {sorted(known)})")
    for name in {c.dataset for c in cells}:
        resolve_spec(name, registry.datasets, config.text_field, config.label_field)
    check_column_options(cells, registry, config)
    return resolved


def check_column_options(cells: Sequence[CellSpec], registry: Registry, config: HarnessConfig) -> None:
    """Refuse ``--text-field``/``--label-field`` in a run whose data sets are all registered
    (they keep their own columns, so the option would do nothing)."""
    given = [option for option, value in (("--text-field", config.text_field), ("--label-field", config.label_field))
             if value is not None]
    names = sorted({c.dataset for c in cells})
    if given and names and all(name in registry.datasets for name in names):
        raise UsageError(f"{' and '.join(given)} name the columns of a folder or hf:ID data set, but this run's "
                         f"data sets ({', '.join(names)}) are registered ones, which keep their own columns")


def warn_if_malformed(record: dict) -> None:
    """Warn (:class:`~benchmark.base.record_schema.RecordSchemaWarning`) about a record that breaks the schema.
    The record is still written, so no computed cell is lost to a schema bug; the test suite turns
    the warning into an error."""
    problems = record_problems(record)
    if problems:
        warnings.warn(RecordSchemaWarning(f"record of cell {record.get('cell_id')}: {'; '.join(problems)}"),
                      stacklevel=2)


class _Progress:
    """``[done/total, elapsed, ~remaining]`` for the line each finished cell logs (the remaining
    time extrapolates the mean time per cell so far)."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def step(self) -> str:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * max(0, self.total - self.done)
        return f"[{self.done}/{self.total}, {_duration(elapsed)} elapsed, ~{_duration(left)} left]"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class _Claims:
    """The driver's side of cell claims: hands out cells this run may compute, deferring those
    another run holds, and skipping those it finished meanwhile.

    Cells go out in rounds (:meth:`rounds`), each one executor pass. The first round takes every
    cell it can claim without waiting; a later one waits for the first deferred cell's claim
    only when this run holds no claim at all (the previous round's executor has finished its
    cells), then takes what else it can without waiting. A run never waits while it holds a
    claim, so two runs on one ``--out`` cannot each wait for the other (a deadlock)."""

    def __init__(self, out_dir: Path, todo: list[tuple[Cell, str]], done: set[str], start: int):
        self.out_dir, self.start = out_dir, start
        self.deferred = list(todo)
        self.done = set(done)
        self.held: dict[str, contextlib.ExitStack] = {}

    def _finished_elsewhere(self, cell_id: str) -> bool:
        return cell_id in finished_cells(self.out_dir, start=self.start) or cell_id in self.done

    def rounds(self) -> Iterator[Iterator[Cell]]:
        first = True
        while self.deferred:
            queue, self.deferred = self.deferred, []
            yield self._take(queue, wait_first=not first)
            first = False

    def _take(self, queue: list[tuple[Cell, str]], wait_first: bool) -> Iterator[Cell]:
        for position, (cell, cell_id) in enumerate(queue):
            wait = wait_first and position == 0 and not self.held
            stack = contextlib.ExitStack()
            claimed = stack.enter_context(claim_cell(self.out_dir, cell_id, wait=wait))
            if not claimed:
                stack.close()
                self.deferred.append((cell, cell_id))
                continue
            if self._finished_elsewhere(cell_id):
                stack.close()
                log.info("cell %s was finished by another run; skipped", cell_id)
                continue
            self.held[cell_id] = stack
            yield cell

    def release(self, cell_id: str) -> None:
        stack = self.held.pop(cell_id, None)
        if stack is not None:
            stack.close()

    def release_all(self) -> None:
        for cell_id in list(self.held):
            self.release(cell_id)


def run_cells(cells: Sequence[CellSpec], config: HarnessConfig, out_dir: str | os.PathLike, *,
              resume: bool = False, executor=None,
              registry: Registry | None = None, estimate: bool = False) -> list[dict]:
    """Run ``cells`` (skipping finished ones with ``resume``), appending each record as it ends;
    returns this run's records in the cells' order (the file holds them in the order they ended).
    ``executor`` defaults to :class:`~benchmark.harness.executors.LocalExecutor`; pooled executors'
    workers load their own registry (:func:`~benchmark.harness.harness.registry_for`), so extra
    plugins go in ``config.plugins``. ``estimate``: calibrate before the first cell and put each
    cell's expected phase seconds in its record (``expected_s``; :mod:`benchmark.harness.estimate`),
    and log the grid's expected cost."""
    registry = registry or registry_for(config)
    out_dir = Path(out_dir)
    config = dataclasses.replace(config, isolation=resolve_isolation(config.isolation),
                                 private_dirs=(*config.private_dirs, str(out_dir)))
    cells = validate_cells(cells, registry, config)
    check_writable(out_dir)
    revision = git_revision()
    if revision is not None and revision.endswith("+dirty"):
        log.warning("the checkout has uncommitted changes: records name %s and the diff's SHA-256; publish "
                    "records from a clean worktree of a committed revision", revision)
    for folder in remove_orphans():
        log.info("removed %s, a defense's private folder left by a killed run", folder)
    checker = Harness(config, registry)
    checker.check_inputs(cells)
    config = dataclasses.replace(config, data=tuple(checker.data_identity(name)
                                                    for name in sorted({c.dataset for c in cells})))
    runtime = checker.runtime
    start = records_end(out_dir)
    todo = [(c, cell_identity(c, config, runtime)["cell_id"]) for c in cells]
    done = unchanged_finished(out_dir, todo, checker) if resume else set()
    executor = executor or LocalExecutor()
    expected: dict[str, dict] = {}
    if estimate:
        from .estimate import estimate_cells, executor_shape

        pending = [(c, cid) for c, cid in todo if cid not in done]
        workers, threads = executor_shape(executor)
        grid = estimate_cells([c for c, _ in pending], checker, workers=workers, threads=threads)
        log.info("%s", grid.text())
        expected = {cid: e for (_, cid), e in zip(pending, grid.per_cell)}
    del checker  # workers build their own harness; the driver keeps none
    todo = [(c, cid) for c, cid in todo if cid not in done]
    if len(todo) < len(cells):
        log.info("resume: %d of %d cells already finished", len(cells) - len(todo), len(cells))
    claims = _Claims(out_dir, todo, done, start)
    records = []
    watch = _Progress(len(todo))
    try:
        for cells_now in claims.rounds():  # one pass of the executor per round (_Claims says why)
            for record in executor.run(cells_now, config, registry):
                if record["cell_id"] in expected:
                    record["expected_s"] = expected[record["cell_id"]]
                warn_if_malformed(record)
                append_record(out_dir, record)
                claims.release(record["cell_id"])
                registry.notify_record(record)
                records.append(record)
                summary = (f"cacc={record.get('cacc', float('nan')):.3f} asr={record.get('asr', float('nan')):.3f}"
                           if record["status"] == "ok" else f"FAILED: {record.get('error')}")
                log.info("%s %s | %s | %s | %s | seed %s: %s", watch.step(), record["dataset"], record["attack_label"],
                         record["defense_label"], record["victim"], record["seed"], summary)
            claims.release_all()  # the executor finished its round: nothing of it is still computing
    finally:
        claims.release_all()
    drawn = {cell_id: i for i, (_, cell_id) in enumerate(todo)}
    return sorted(records, key=lambda r: drawn.get(r["cell_id"], len(drawn)))  # executors yield as cells finish


def unchanged_finished(out_dir: Path, todo: Sequence[tuple[Cell, str]], harness: Harness) -> set[str]:
    """The cells of ``todo`` that ``--resume`` may skip: finished (a record with status ok) with the
    same victim content as now (``provenance.victim_fingerprint``; a record written before it was
    recorded is taken as it is). A cell whose victim changed runs again, and its new record
    supersedes the old one (the leaderboard reads the last record of each cell)."""
    victims = {cell_id: cell.victim for cell, cell_id in todo}
    done = set()
    for cell_id, record in finished_records(out_dir).items():
        recorded = (record.get("provenance") or {}).get("victim_fingerprint")
        if cell_id in victims and recorded is not None and recorded != harness.victim_fingerprint(victims[cell_id]):
            log.info("cell %s: its victim %s changed since its record; it runs again", cell_id, victims[cell_id])
            continue
        done.add(cell_id)
    return done


def check_config(cells: Sequence[CellSpec], config: HarnessConfig,
                 registry: Registry | None = None) -> tuple[list[Cell], Harness]:
    """What ``bdbench validate`` does: every name, parameter and data set, without training.
    Returns the resolved cells and the harness that read their inputs (for the estimate)."""
    registry = registry or registry_for(config)
    config = dataclasses.replace(config, isolation=resolve_isolation(config.isolation))  # starts a sandbox once
    cells = validate_cells(cells, registry, config)
    for cell in cells:
        for plugin in (cell.attack, cell.defense):
            plugin.plugin_class()  # a plugin that fails to import fails validation here
    harness = Harness(config, registry)
    harness.check_inputs(cells)
    if not cells:
        raise BdbenchError("the run has no cells")
    return cells, harness
