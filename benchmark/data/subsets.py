"""Seeded subsets of a data set: a carved dev split, label-balanced limits, the defender's clean
data; and the data set's fingerprint (every text and label), which enters every cache key."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from ..base.errors import UsageError
from .examples import Dataset, Example


def dataset_fingerprint(dataset: Dataset) -> str:
    """A digest of every text and label of the three splits, in order."""
    digest = hashlib.blake2b(digest_size=12)
    for split in ("train", "dev", "test"):
        for ex in dataset.split(split):
            digest.update(ex.text.encode("utf-8"))
            digest.update(b"\x00%d\x01" % ex.label)
        digest.update(b"\x02")
    return digest.hexdigest()


def carve_dev(train: Sequence[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Split ``fraction`` of train off as dev, seeded, label-balanced."""
    by_label: dict[int, list[int]] = {}
    for i, ex in enumerate(train):
        by_label.setdefault(ex.label, []).append(i)
    rng = random.Random(seed)
    dev_idx: set[int] = set()
    for indices in by_label.values():
        indices = indices[:]
        rng.shuffle(indices)
        dev_idx.update(indices[: round(len(indices) * fraction)])
    return ([ex for i, ex in enumerate(train) if i not in dev_idx],
            [ex for i, ex in enumerate(train) if i in dev_idx])


def balanced_subset(examples: Sequence[Example], limit: int | None, seed: int) -> tuple[Example, ...]:
    """At most ``limit`` examples, label-balanced where the labels allow, seeded, in original order."""
    if limit is None or limit >= len(examples):
        return tuple(examples)
    if limit <= 0:
        raise UsageError(f"a subset limit must be positive, got {limit}")
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        by_label.setdefault(ex.label, []).append(i)
    for indices in by_label.values():
        rng.shuffle(indices)
    chosen: list[int] = []
    pools = sorted(by_label.items())
    share, remainder = divmod(limit, len(pools))
    leftovers: list[int] = []
    for k, (_, indices) in enumerate(pools):
        want = share + (1 if k < remainder else 0)
        chosen.extend(indices[:want])
        leftovers.extend(indices[want:])
    if len(chosen) < limit:  # a small class: fill from the others
        rng.shuffle(leftovers)
        chosen.extend(leftovers[: limit - len(chosen)])
    return tuple(examples[i] for i in sorted(chosen))


def clean_subset(train: Sequence[Example], fraction: float, seed: int) -> tuple[Example, ...]:
    """The defender's clean data: ``fraction`` of the clean training set, seeded by ``seed``.

    The same for every defense of a seed (the draw depends on nothing else).
    """
    if not 0 < fraction <= 1:
        raise UsageError(f"clean_fraction must be in (0, 1], got {fraction}")
    return balanced_subset(train, max(1, round(len(train) * fraction)), seed + 7919)
