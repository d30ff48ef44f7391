"""CUBE: clustering-based training-data filtering (methods.md C5).

Cui, Yi, Zhang, Chen, Liu, Sun, "A Unified Evaluation of Textual Backdoor Learning: Frameworks
and Benchmarks", NeurIPS 2022 Datasets and Benchmarks, https://arxiv.org/abs/2206.08514
(OpenBackdoor's paper; CUBE is its defense).

Algorithm:

1. a model trained on the poisoned training set (here: the victim the scenario's recipe trained on
   exactly that set — see below);
2. embed every training sample with the last layer's [CLS] representation;
3. PCA to ``pca_dims`` (20), then UMAP to 2 dimensions (``n_neighbors`` 100, ``min_dist`` 0,
   ``umap_seed`` 42);
4. HDBSCAN (``min_samples`` 100, ``cluster_selection_epsilon`` 0; HDBSCAN's noise counts as one
   more cluster);
5. within each ground-truth label, keep the largest cluster and remove every other cluster that
   holds fewer than ``drop_share`` (50%) of that label's samples; the harness retrains the
   victim on the rest.

Departures: OpenBackdoor's ``cube_defender.py`` fine-tunes its own ``roberta-base`` encoder for
10 epochs; here the encoder is the victim trained on the poisoned set with the scenario's recipe
(the defender is the trainer in this threat model; training another encoder is a full training
run). ``n_neighbors`` and ``min_samples`` are capped below the data set size for tiny sets.
Needs ``umap-learn`` and ``hdbscan``, which ``pip install bdbench`` installs.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from benchmark import DataFilter, DefenseContext, Sizes, UsageError, Workload, eval_work, hparam


class CUBE(DataFilter):
    name = "cube"
    version = "1"
    requires = frozenset({"poisoned_train"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        pca_dims: int = hparam(20, range="[2, )")  # OpenBackdoor 20
        n_neighbors: int = hparam(100, range="[2, )")  # UMAP, OpenBackdoor 100
        min_dist: float = hparam(0.0, range="[0, )")  # UMAP, OpenBackdoor 0
        umap_seed: int = 42  # UMAP random_state, OpenBackdoor 42
        min_samples: int = hparam(100, range="[1, )")  # HDBSCAN, OpenBackdoor 100
        min_cluster_size: int = hparam(5, range="[2, )")  # HDBSCAN's default (OpenBackdoor leaves it)
        cluster_selection_epsilon: float = hparam(0.0, range="[0, )")  # HDBSCAN, OpenBackdoor 0
        drop_share: float = hparam(0.5, range="(0, 1]")  # a minority cluster below this share of its label is dropped

    def cluster(self, embeddings) -> list[int]:
        """Cluster labels (−1: HDBSCAN's noise) of the embedded samples."""
        try:
            import hdbscan
            import umap
        except ImportError as exc:
            raise UsageError(f"cube needs umap-learn and hdbscan ({exc}), which bdbench's install brings; "
                             "reinstall bdbench, or pip install umap-learn hdbscan") from None
        from sklearn.decomposition import PCA

        n = embeddings.shape[0]
        x = embeddings.numpy()
        reduced = PCA(n_components=min(self.params.pca_dims, n, x.shape[1]), random_state=0).fit_transform(x)
        mapped = umap.UMAP(n_components=2, n_neighbors=min(self.params.n_neighbors, n - 1),
                           min_dist=self.params.min_dist, random_state=self.params.umap_seed).fit_transform(reduced)
        clusterer = hdbscan.HDBSCAN(min_samples=min(self.params.min_samples, n - 1),
                                    min_cluster_size=self.params.min_cluster_size,
                                    cluster_selection_epsilon=self.params.cluster_selection_epsilon)
        return [int(c) for c in clusterer.fit_predict(mapped)]

    def select(self, labels: list[int], clusters: list[int]) -> list[int]:
        """Indices kept by step 5 of the module docstring."""
        dropped = set()
        for label in sorted(set(labels)):
            members = [i for i, y in enumerate(labels) if y == label]
            sizes = Counter(clusters[i] for i in members)
            largest = max(sorted(sizes), key=lambda c: sizes[c])
            small = {c for c, size in sizes.items() if c != largest and size < self.params.drop_share * len(members)}
            dropped.update(i for i in members if clusters[i] in small)
        return [i for i in range(len(labels)) if i not in dropped]

    def workload(self, sizes: Sizes) -> Workload:
        """One pass over the training set for its representations (UMAP and HDBSCAN run on the CPU
        beside the model: not counted)."""
        return Workload(note="UMAP and HDBSCAN not counted") + eval_work(sizes, "train")

    def keep(self, model, ctx: DefenseContext) -> list[int]:
        train = ctx.poisoned_train
        embeddings = ctx.cls_embeddings(model, [ex.text for ex in train])
        clusters = self.cluster(embeddings)
        kept = self.select([ex.label for ex in train], clusters)
        self.info = {"clusters": len(set(clusters) - {-1}), "noise": clusters.count(-1)}
        return kept
