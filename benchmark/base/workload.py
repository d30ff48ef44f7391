"""How much model work a phase does, in real tokens: the quantities of the cost model.

A plugin says what its phase costs with ``workload(sizes)`` (:class:`benchmark.plugins.plugin.Plugin`
and the kinds' defaults): how many tokens pass through the victim with a backward pass
(``train_tokens``) and without (``eval_tokens``), counted from the scenario's :class:`Sizes` and
the plugin's own parameters. :mod:`benchmark.harness.estimate` turns them into seconds with a
measured throughput (:mod:`benchmark.model.calibration`). The counts follow each algorithm's loops;
where a loop's length depends on the data (a stopping rule), the workload counts its bound and
says so in ``note``.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Sizes:
    """One scenario's split sizes in samples and real tokens (special tokens included, truncated
    at the budget's length), the epochs of its two shared recipes and the defense recipe's batch
    size."""

    train: int
    train_tokens: int
    clean: int  # the defender's clean subset (clean_fraction of train)
    clean_tokens: int
    dev: int
    dev_tokens: int
    test: int
    test_tokens: int
    triggered: int  # the non-target test rows (ASR's inputs), their tokens counted as clean text
    triggered_tokens: int
    victim_epochs: int
    defense_epochs: int
    defense_batch_size: int = 32  # the defense recipe's (TrainConfig's default where not given)

    def tokens_per(self, split: str) -> float:
        """Mean real tokens per sample of ``split`` (train, clean, dev, test, triggered)."""
        count = getattr(self, split)
        return getattr(self, f"{split}_tokens") / count if count else 0.0


@dataclasses.dataclass(frozen=True)
class Workload:
    """Tokens through the victim with a backward pass and without; ``note`` says how they were
    counted where that is not the plugin's own loop (a default, a bound, another model)."""

    train_tokens: float = 0.0
    eval_tokens: float = 0.0
    note: str = ""

    def __add__(self, other: Workload) -> Workload:
        note = "; ".join(n for n in (self.note, other.note) if n)
        return Workload(self.train_tokens + other.train_tokens, self.eval_tokens + other.eval_tokens, note)

    def scaled(self, factor: float) -> Workload:
        return Workload(self.train_tokens * factor, self.eval_tokens * factor, self.note)


def train_work(sizes: Sizes, split: str, epochs: float, copies: float = 1.0) -> Workload:
    """``epochs`` passes of the training loop over ``split`` (``copies`` times its size)."""
    return Workload(train_tokens=epochs * copies * getattr(sizes, f"{split}_tokens"))


def eval_work(sizes: Sizes, split: str, passes: float = 1.0) -> Workload:
    """``passes`` forward passes over ``split``."""
    return Workload(eval_tokens=passes * getattr(sizes, f"{split}_tokens"))
