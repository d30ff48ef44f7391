"""Data sets: typed examples, named data sets and how they are found, seeded subsets.

A named data set is resolved, in order, from (1) a data folder (``--data-dir`` or
``BDBENCH_DATA``) holding ``NAME/{train,dev,test}.tsv`` (``sentence<TAB>label``, a header, no
CSV quoting) or OpenBackdoor's layout; (2) the Hugging Face hub through ``datasets``; (3) a
generator shipped with the project (``demo``). Failing all, one :class:`DataError` says what was
tried and how to supply the data. Splits without a dev set get one carved from train, seeded
by ``DatasetSpec.dev_seed`` (recorded in the provenance), the same for every run seed.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import DataError, UsageError, did_you_mean


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
    """The three splits of a named data set plus where they came from."""

    name: str
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...]
    num_labels: int
    source: str  # "dir:<path>", "openbackdoor:<path>", "hub:<id>", "generated:<name>"
    dev_carved: bool = False  # True when dev was split off train (seeded by dev_seed)

    def split(self, name: str) -> tuple[Example, ...]:
        return getattr(self, name)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How to find one named data set. Provided by plugins through ``bdbench_datasets``.

    hub_id / hub_config: the ``datasets.load_dataset`` arguments; hub_splits maps our split
    names to the hub's (a missing dev is carved from train).
    openbackdoor_dir: the folder below an OpenBackdoor ``datasets/`` root.
    generator: ``(seed) -> Dataset`` for data the project makes itself.
    """

    name: str
    num_labels: int = 2
    hub_id: str | None = None
    hub_config: str | None = None
    hub_splits: tuple[tuple[str, str], ...] = ()
    text_field: str = "sentence"
    label_field: str = "label"
    openbackdoor_dir: str | None = None
    openbackdoor_format: str = "tsv"  # "tsv" (SST-2 style) or "txt" (imdb: {split}.txt + {split}_labels.txt)
    dev_fraction: float = 0.1  # share of train carved off as dev when there is no dev split
    dev_seed: int = 0
    generator: Callable[[int], Dataset] | None = None


# --------------------------------------------------------------------------- reading files

def _read_text(path: Path) -> str:
    """A file's text as UTF-8; a :class:`DataError` naming the file (and line) otherwise."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); "
                        "save the file as UTF-8") from None


def read_tsv(path: Path, num_labels: int | None = None) -> list[Example]:
    """Read a ``sentence<TAB>label`` file with a header and no quoting (GLUE style); with
    ``num_labels``, a label outside ``0..num_labels-1`` is an error naming its line."""
    lines = _read_text(path).split("\n")
    header = lines[0].rstrip("\r")
    columns = header.split("\t")
    if len(columns) < 2 or columns[-1].strip().lower() != "label":
        raise DataError(f"{path}:1: expected the header 'sentence<TAB>label', got {header[:80]!r}")
    examples = []
    for lineno, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line:
            continue
        text, sep, label = line.rpartition("\t")
        if not sep:
            raise DataError(f"{path}:{lineno}: expected 'text<TAB>label', found no tab")
        try:
            label_value = int(label)
        except ValueError:
            raise DataError(f"{path}:{lineno}: label {label!r} is not an integer") from None
        if num_labels is not None and not 0 <= label_value < num_labels:
            raise DataError(f"{path}:{lineno}: label {label_value} is out of range, expected 0..{num_labels - 1}")
        if not text.strip():
            raise DataError(f"{path}:{lineno}: empty text")
        examples.append(Example(text, label_value))
    return examples


def read_lines_with_labels(text_path: Path, label_path: Path) -> list[Example]:
    """OpenBackdoor's LOTClass layout: one text per line, labels in a parallel file."""
    texts = _read_text(text_path).split("\n")
    labels = _read_text(label_path).split("\n")
    if texts and texts[-1] == "":
        texts.pop()
    if labels and labels[-1] == "":
        labels.pop()
    if len(texts) != len(labels):
        raise DataError(f"{text_path}: {len(texts)} texts but {label_path.name} has {len(labels)} labels")
    out = []
    for lineno, (text, label) in enumerate(zip(texts, labels), start=1):
        try:
            out.append(Example(text.strip(), int(label)))
        except ValueError:
            raise DataError(f"{label_path}:{lineno}: label {label!r} is not an integer") from None
    return out


def check_split(examples: Sequence[Example], num_labels: int, where: str) -> None:
    if not examples:
        raise DataError(f"{where}: the split is empty")
    for i, ex in enumerate(examples):
        if not 0 <= ex.label < num_labels:
            raise DataError(f"{where}: example {i} has label {ex.label}, expected 0..{num_labels - 1}")


# --------------------------------------------------------------------------- resolution

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


def _finish(spec: DatasetSpec, splits: dict[str, list[Example]], source: str) -> Dataset:
    carved = False
    if not splits.get("dev"):
        splits["train"], splits["dev"] = carve_dev(splits["train"], spec.dev_fraction, spec.dev_seed)
        carved = True
    for split in ("train", "dev", "test"):
        check_split(splits.get(split, []), spec.num_labels, f"{source} ({spec.name}/{split})")
    return Dataset(spec.name, tuple(splits["train"]), tuple(splits["dev"]), tuple(splits["test"]),
                   spec.num_labels, source, carved)


def _from_uniform_dir(spec: DatasetSpec, root: Path) -> Dataset | None:
    folder = root / spec.name
    if not (folder / "train.tsv").is_file():
        return None
    splits = {s: read_tsv(folder / f"{s}.tsv", spec.num_labels) for s in ("train", "test")}
    splits["dev"] = read_tsv(folder / "dev.tsv", spec.num_labels) if (folder / "dev.tsv").is_file() else []
    return _finish(spec, splits, f"dir:{folder}")


def _from_openbackdoor_dir(spec: DatasetSpec, root: Path) -> Dataset | None:
    if spec.openbackdoor_dir is None:
        return None
    relative = Path(spec.openbackdoor_dir)
    for folder in (root / relative, root / "datasets" / relative, root / relative.name):
        if spec.openbackdoor_format == "tsv" and (folder / "train.tsv").is_file():
            splits = {s: read_tsv(folder / f"{s}.tsv", spec.num_labels) for s in ("train", "test")}
            splits["dev"] = read_tsv(folder / "dev.tsv", spec.num_labels) if (folder / "dev.tsv").is_file() else []
            return _finish(spec, splits, f"openbackdoor:{folder}")
        if spec.openbackdoor_format == "txt" and (folder / "train.txt").is_file():
            splits = {s: read_lines_with_labels(folder / f"{s}.txt", folder / f"{s}_labels.txt")
                      for s in ("train", "test")}
            dev = folder / "dev.txt"
            splits["dev"] = read_lines_with_labels(dev, folder / "dev_labels.txt") if dev.is_file() else []
            return _finish(spec, splits, f"openbackdoor:{folder}")
    return None


def _from_hub(spec: DatasetSpec) -> Dataset:
    import datasets  # imported lazily: it is slow and only this path needs it

    loaded = datasets.load_dataset(spec.hub_id, spec.hub_config)
    mapping = dict(spec.hub_splits) or {"train": "train", "dev": "validation", "test": "test"}
    splits = {}
    for ours, theirs in mapping.items():
        if theirs not in loaded:
            splits[ours] = []
            continue
        part = loaded[theirs]
        splits[ours] = [Example(str(t), int(y)) for t, y in zip(part[spec.text_field], part[spec.label_field])]
    return _finish(spec, splits, f"hub:{spec.hub_id}" + (f"/{spec.hub_config}" if spec.hub_config else ""))


def data_dir_from_env(data_dir: str | os.PathLike | None) -> Path | None:
    if data_dir:
        return Path(data_dir)
    env = os.environ.get("BDBENCH_DATA")
    return Path(env) if env else None


def check_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The data folder (``--data-dir``, else ``BDBENCH_DATA``), refused when it is not a folder,
    even for runs whose data sets need none (a typo should not go unnoticed)."""
    root = data_dir_from_env(data_dir)
    if root is not None and not root.is_dir():
        option = "--data-dir" if data_dir else "BDBENCH_DATA"
        what = "is not a folder" if root.exists() else "no such folder"
        raise DataError(f"{option} {root}: {what}")
    return root


def load_dataset(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Resolve ``spec`` as the module docstring says. Raises :class:`DataError`."""
    tried = []
    if spec.generator is not None:
        return spec.generator(spec.dev_seed)
    root = data_dir_from_env(data_dir)
    if root is not None:
        if not root.is_dir():
            raise DataError(f"data folder {root} does not exist (from --data-dir or BDBENCH_DATA)")
        for finder in (_from_uniform_dir, _from_openbackdoor_dir):
            found = finder(spec, root)
            if found is not None:
                return found
        tried.append(f"{root}/{spec.name}/train.tsv" +
                     (f" and {root}/{spec.openbackdoor_dir}" if spec.openbackdoor_dir else ""))
    if spec.hub_id is not None:
        try:
            return _from_hub(spec)
        except Exception as exc:  # offline, missing package, unknown id: all reported together
            tried.append(f"the Hugging Face hub ({spec.hub_id}: {type(exc).__name__}: {str(exc)[:200]})")
    raise DataError(
        f"data set {spec.name!r} not found. Tried: {'; '.join(tried) or 'nothing'}. "
        f"Supply it with --data-dir DIR (or BDBENCH_DATA) holding {spec.name}/train.tsv, dev.tsv, test.tsv "
        "(header 'sentence<TAB>label', no quoting), or OpenBackdoor's datasets/ folder."
    )


def find_spec(name: str, specs: dict[str, DatasetSpec]) -> DatasetSpec:
    if name not in specs:
        raise UsageError(f"unknown data set {name!r}." + did_you_mean(name, specs))
    return specs[name]


# --------------------------------------------------------------------------- seeded subsets

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
