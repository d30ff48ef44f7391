"""Typed data: :class:`Example` (one labelled text), :class:`Dataset` (three splits and where they
came from) and :class:`DatasetSpec` (how to find a data set)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

SPLITS = ("train", "dev", "test")


@dataclasses.dataclass(frozen=True)
class Example:
    """One labelled text.

    text: the raw text, as stored (no normalisation).
    label: the class index, ``0 <= label < num_classes``.
    poisoned: True for samples an attack altered (never given to a defense).
    """

    text: str
    label: int
    poisoned: bool = False


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The three splits of a data set plus where they came from."""

    name: str
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...]
    num_labels: int
    # where it came from, without paths: "dir:<folder name>", "openbackdoor:<folder>", "hub:<id>[/<config>]",
    # "generated:<name>"
    source: str
    dev_carved: bool = False  # True when dev was split off train (seeded by dev_seed)
    label_names: tuple[str, ...] = ()  # the label written for each class index when labels were mapped, else ()

    def split(self, name: str) -> tuple[Example, ...]:
        return getattr(self, name)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How to find one data set: registered by plugins through ``bdbench_datasets``, or made by
    :func:`resolve_spec` for a folder or ``hf:ID[:CONFIG]``.

    num_labels: the number of classes; None: read from the training labels (:class:`LabelMap`).
    hub_id / hub_config: the ``datasets.load_dataset`` arguments; hub_splits maps our split
    names to the hub's (a missing dev is carved from train).
    text_field / label_field: the hub's columns, and for a folder given by ``location`` the TSV
    header's (None: the defaults of :func:`pick_columns`). A registered data set's TSV files
    follow GLUE instead: text, then the label last.
    openbackdoor_dir: the folder below an OpenBackdoor ``datasets/`` root.
    generator: ``(seed) -> Dataset`` for data the project makes itself.
    location: for a data set named by where it is rather than by registration, that name as
    given (a folder path, or ``hf:ID[:CONFIG]`` with hub_id set); errors name it.
    """

    name: str
    num_labels: int | None = 2
    hub_id: str | None = None
    hub_config: str | None = None
    hub_splits: tuple[tuple[str, str], ...] = ()
    text_field: str | None = "sentence"
    label_field: str | None = "label"
    openbackdoor_dir: str | None = None
    openbackdoor_format: str = "tsv"  # "tsv" (SST-2 style) or "txt" (imdb: {split}.txt + {split}_labels.txt)
    dev_fraction: float = 0.1  # share of train carved off as dev when there is no dev split
    dev_seed: int = 0
    generator: Callable[[int], Dataset] | None = None
    location: str | None = None
