"""CUBE (defenses/cube.py): the per-label cluster selection, and a clear error without its packages."""

from __future__ import annotations

import sys

import pytest
import torch

from benchmark import UsageError
from defenses.cube import CUBE


def test_select_drops_minority_clusters_within_each_label():
    labels = [1] * 10 + [0] * 6
    clusters = [0] * 7 + [1] * 3 + [2] * 3 + [3] * 3  # label 1: 7 + 3 (3 < 5: dropped); label 0: 3 + 3 (kept)
    kept = CUBE().select(labels, clusters)
    assert kept == list(range(7)) + list(range(10, 16))


def test_noise_counts_as_a_cluster():
    labels = [0] * 10
    clusters = [5] * 8 + [-1] * 2
    assert CUBE().select(labels, clusters) == list(range(8))


def test_missing_packages_give_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(UsageError, match=r"bdbench\[cube\]"):
        CUBE().cluster(torch.zeros(4, 3))
