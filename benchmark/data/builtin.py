"""The built-in named data sets (a plugin of the ``bdbench_datasets`` hook)."""

from __future__ import annotations

import pluggy

from .demo import make_demo
from .examples import DatasetSpec
from .reviews import make_reviews

hookimpl = pluggy.HookimplMarker("bdbench")

BUILTIN_DATASETS = (
    DatasetSpec("demo", generator=lambda seed: make_demo(seed)),
    DatasetSpec("demo-reviews", generator=lambda seed: make_reviews(seed)),
    # SST-2 as OpenBackdoor ships it: the original sentence-level binary split, labelled test.
    DatasetSpec("sst2-openbackdoor", openbackdoor_dir="SentimentAnalysis/SST-2",
                hub_id="gpt3mix/sst2", hub_splits=(("train", "train"), ("dev", "validation"), ("test", "test")),
                text_field="text", label_field="label"),
    # SST-2 as GLUE ships it (phrases in train). GLUE's test labels are hidden on the hub.
    DatasetSpec("sst2", hub_id="nyu-mll/glue", hub_config="sst2",
                hub_splits=(("train", "train"), ("dev", "validation"))),
    # IMDb: no official dev split; 10% of train is carved off, seeded by dev_seed=0.
    DatasetSpec("imdb", openbackdoor_dir="SentimentAnalysis/imdb", openbackdoor_format="txt",
                hub_id="stanfordnlp/imdb", hub_splits=(("train", "train"), ("test", "test")),
                text_field="text", dev_fraction=0.1, dev_seed=0),
)


@hookimpl
def bdbench_datasets() -> list[DatasetSpec]:
    return list(BUILTIN_DATASETS)
