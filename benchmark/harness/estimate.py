"""The expected cost of a grid before it runs (``bdbench validate``, ``bdbench run --dry-run``).

Expected seconds of a phase = its real tokens through the victim with a backward pass × the
measured seconds per training token + its tokens without one × the measured seconds per
evaluation token. The tokens come from the scenario's own splits, tokenized as the run will
(:class:`~benchmark.base.workload.Sizes`), and each plugin's ``workload(sizes)``; the seconds per
token from :func:`benchmark.model.calibration.measure_throughput`: a few real training and
prediction batches of the victim on the first data set, at the threads one worker of the run gets
(seconds: the calibration, not a constant). Phases, as the records name them: ``clean-train`` once
per clean reference model (data set, victim, seed, budget), ``attack`` once per scenario,
``defense``, ``retrain`` (data filters: the harness's retraining, counted over the whole training
set) and ``evaluation`` per cell.

What it leaves out, and says: model loading and saving, tokenizing, the store's reads, process
start-up, work outside the victim (ONION's language model, CUBE's clustering), and the savings of
a store that already holds a scenario (the estimate is from scratch) or of ``--resume``. Where a
plugin's loop length depends on the data, its workload counts the bound (its note says so). The
wall time assumes the workers stay busy (``worker-seconds / workers``); a run with fewer scenarios
than workers leaves workers idle during its builds.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence

import torch

from ..base.workload import Sizes, Workload, eval_work, train_work
from ..data.subsets import clean_subset
from ..model.calibration import Throughput, measure_throughput
from ..model.encoding import encode
from .cells import Cell
from .scenario import Splits


@dataclasses.dataclass
class PhaseTotal:
    """One phase kind over the grid: how many times it runs, its tokens, its expected seconds."""

    count: int = 0
    train_tokens: float = 0.0
    eval_tokens: float = 0.0
    seconds: float = 0.0
    notes: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class Estimate:
    phases: dict[str, PhaseTotal]
    throughput: dict[str, Throughput]  # per victim
    workers: int
    threads: int
    cells: int
    per_cell: list[dict[str, float]] = dataclasses.field(default_factory=list)  # each cell's phases, in order

    @property
    def worker_seconds(self) -> float:
        return sum(p.seconds for p in self.phases.values())

    @property
    def wall_seconds(self) -> float:
        return self.worker_seconds / max(1, self.workers)

    def text(self) -> str:
        """The estimate as the command prints it."""
        lines = [f"expected cost of {self.cells} cells from scratch ({self.workers} workers x {self.threads} "
                 "threads; benchmark/harness/estimate.py says what is left out):"]
        for victim, t in self.throughput.items():
            lines.append(f"  calibration, {victim}: {t.train_s_per_token * 1e6:.1f} us per training token "
                         f"({t.train_share:.0%} of the {t.peak_gflops:.0f} GFLOP/s matmul peak), "
                         f"{t.eval_s_per_token * 1e6:.1f} us per evaluation token ({t.eval_share:.0%})")
        lines.append(f"  {'phase':<12} {'runs':>5} {'train Mtok':>11} {'eval Mtok':>10} {'worker time':>12}")
        for name, p in self.phases.items():
            lines.append(f"  {name:<12} {p.count:>5} {p.train_tokens / 1e6:>11.2f} {p.eval_tokens / 1e6:>10.2f} "
                         f"{_duration(p.seconds):>12}")
        lines.append(f"  total: {_duration(self.worker_seconds)} of worker time, about {_duration(self.wall_seconds)} "
                     f"wall with {self.workers} busy workers")
        notes = sorted({f"{name}: {n}" for name, p in self.phases.items() for n in p.notes})
        lines += [f"  note: {n}" for n in notes]
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{seconds / 60:.1f}m"


def executor_shape(executor) -> tuple[int, int]:
    """``(workers, torch threads per worker)`` an executor will run with."""
    from .executors import default_threads

    workers = getattr(executor, "workers", 1)
    return workers, getattr(executor, "threads", 0) or default_threads(workers)


def scenario_sizes(cell: Cell, splits: Splits, tokenizer) -> Sizes:
    """The token counts of ``cell``'s splits (``Splits.limited`` of its data set), tokenized at
    its budget's length."""
    budget = cell.budget
    clean = clean_subset(splits.train, budget.clean_fraction, cell.seed)
    nontarget = [ex for ex in splits.test if ex.label != budget.target_label]

    def count(examples) -> tuple[int, int]:
        return len(examples), encode(tokenizer, list(examples), budget.max_length).num_tokens if examples else 0

    return Sizes(*count(splits.train), *count(clean), *count(splits.dev), *count(splits.test), *count(nontarget),
                 budget.victim_training.epochs, budget.defense_training.epochs, budget.defense_training.batch_size)


def estimate_cells(cells: Sequence[Cell], harness, *, workers: int, threads: int) -> Estimate:
    """The :class:`Estimate` of ``cells`` (resolved), reading data and victims through ``harness``
    and calibrating each victim at ``threads`` torch threads (0: torch's current count)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _estimate(cells, harness, workers, threads or before)
    finally:
        torch.set_num_threads(before)


def _estimate(cells: Sequence[Cell], harness, workers: int, threads: int) -> Estimate:
    phases: dict[str, PhaseTotal] = defaultdict(PhaseTotal)
    throughput: dict[str, Throughput] = {}
    sizes_of: dict[tuple, Sizes] = {}
    clean_built, attacks_built = set(), set()

    per_cell: list[dict[str, float]] = []
    builds: dict[tuple, float] = {}  # a build's expected seconds, shown in every cell of it

    def add(phase: str, work: Workload, rate: Throughput) -> float:
        total = phases[phase]
        total.count += 1
        total.train_tokens += work.train_tokens
        total.eval_tokens += work.eval_tokens
        seconds = work.train_tokens * rate.train_s_per_token + work.eval_tokens * rate.eval_s_per_token
        total.seconds += seconds
        if work.note:
            total.notes.add(work.note)
        return seconds

    for cell in cells:
        dataset, _ = harness.dataset(cell.dataset)
        tokenizer = harness.tokenizer(cell.victim)
        key = (cell.dataset, cell.victim, cell.seed, cell.budget)
        splits = None
        if key not in sizes_of:
            splits = Splits.limited(dataset, cell.budget, cell.seed)
            sizes_of[key] = scenario_sizes(cell, splits, tokenizer)
        sizes = sizes_of[key]
        if cell.victim not in throughput:  # the victim's first cell: its splits were just made
            model = harness.pretrained_loader(cell.victim, dataset.num_labels, 0)()
            train = encode(tokenizer, list(splits.train), cell.budget.max_length)
            throughput[cell.victim] = measure_throughput(model, train, harness.runtime,
                                                         batch_size=cell.budget.victim_training.batch_size)
        rate = throughput[cell.victim]
        attack = cell.attack.cls(cell.attack.params) if cell.attack.cls is not None else None
        defense = cell.defense.cls(cell.defense.params) if cell.defense.cls is not None else None
        if attack is None or defense is None:
            per_cell.append({})  # a plugin that failed to import fails its own cells
            continue
        if key not in clean_built and attack.has_clean_reference():
            clean_built.add(key)
            builds[("clean", key)] = add("clean-train", train_work(sizes, "train", sizes.victim_epochs)
                                         + eval_work(sizes, "test"), rate)
        if cell.scenario_key() not in attacks_built:
            attacks_built.add(cell.scenario_key())
            builds[("attack", cell.scenario_key())] = add("attack", attack.workload(sizes), rate)
        expected = {"clean-train": builds.get(("clean", key), 0.0),
                    "attack": builds[("attack", cell.scenario_key())],
                    "defense": add("defense", defense.workload(sizes), rate)}
        if defense.kind == "data_filtering":
            expected["retrain"] = add("retrain", train_work(sizes, "train", sizes.victim_epochs), rate)
        expected["evaluation"] = add("evaluation", eval_work(sizes, "test") + eval_work(sizes, "triggered"), rate)
        per_cell.append({k: float(f"{v:.4g}") for k, v in expected.items()})  # 4 significant digits
    order = ("clean-train", "attack", "defense", "retrain", "evaluation")
    return Estimate({k: phases[k] for k in order if k in phases}, throughput, workers, threads, len(cells),
                    per_cell)
