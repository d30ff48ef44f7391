"""CUBE (defenses/cube.py): the per-label cluster selection, a real cell with UMAP and HDBSCAN (both in
bdbench's default install), and a clear error without them."""

from __future__ import annotations

import sys

import pytest
import torch

from benchmark import UsageError
from benchmark.testing import run
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
    with pytest.raises(UsageError, match=r"umap-learn and hdbscan"):
        CUBE().cluster(torch.zeros(4, 3))


def test_a_cube_cell_runs_with_the_default_install(tmp_path, tiny_victim_dir):
    """UMAP and HDBSCAN come with ``pip install bdbench``: a whole filtering cell runs through the
    harness (isolated child, retraining, scoring) on a tiny victim."""
    [record] = run(tmp_path, tiny_victim_dir, defenses=("cube",))
    assert record["status"] == "ok", record.get("error")
    assert record["defense_kind"] == "data_filtering"
    assert 0 < record["kept"] <= record["train_size"]
    assert 0.0 <= record["filter_recall"] <= 1.0 and 0.0 <= record["filter_fpr"] <= 1.0
