"""Where a data set comes from: registered names, folders and the hub; its columns and classes.

A run names each data set (``--dataset``, a suite's ``datasets``) in one of three ways:

1. **A registered name** (built-in, or from a plugin's ``bdbench_datasets`` hook), resolved in
   order from (a) a data folder (``--data-dir`` or ``BDBENCH_DATA``) holding
   ``NAME/{train,dev,test}.tsv`` (``sentence<TAB>label``, a header, no CSV quoting, the label
   last) or OpenBackdoor's layout; (b) the Hugging Face hub through ``datasets``; (c) a
   generator shipped with the project (``demo``). Failing all, one :class:`DataError` says what
   was tried and how to supply the data. A registered name wins over a folder of the same name
   (write ``./NAME`` for the folder).
2. **A folder** (the name holds a path separator or is an existing folder), with no plugin and
   no ``--data-dir``: ``train.tsv``, ``test.tsv`` and optionally ``dev.tsv`` (tab-separated, a
   header naming the columns, no CSV quoting), or OpenBackdoor's ``{split}.txt`` +
   ``{split}_labels.txt``. Records call it by the folder's name; its source is
   ``dir:<name>`` (or ``openbackdoor:<name>``), never a path.
3. **``hf:ID[:CONFIG]``**: ``datasets.load_dataset(ID, CONFIG)`` (splits ``train``,
   ``validation`` as dev, ``test``), from the hub or its local cache. When it cannot be loaded
   (offline with ``HF_HUB_OFFLINE=1`` and not cached, no network, unknown id) one
   :class:`DataError` names the id and says what was tried, before any training.

For folders and the hub, ``--text-field`` and ``--label-field`` (suite keys ``text_field`` and
``label_field``) name the text and label columns (:func:`pick_columns`): by default the label is
``label`` and the text is the other column of two, else ``sentence`` or ``text``. Every
line has the header's number of fields (a tab inside a text is refused: it would move the label).
The classes of such a data set come from its training
labels (:class:`LabelMap`): integers that are exactly ``0..K-1`` are the class indices; any other
labels (strings, other integers) map to ``0..K-1`` in sorted order (numeric when all are
integers), and the mapping is recorded in each record's provenance (``dataset_labels``). Training
labels of one class, or a dev or test label that train lacks, are errors naming the file.

A data set's content enters every cache key through :func:`benchmark.data.subsets.dataset_fingerprint` (each text
and label); for folder and hub data sets it also enters the cell id, so edited data is never
served an earlier result. Splits without a dev set get one carved from train, seeded by
``DatasetSpec.dev_seed``, the same for every run seed (``dataset_dev_carved`` in the provenance).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..base.errors import DataError, UsageError, did_you_mean
from .examples import SPLITS, Dataset, DatasetSpec, Example
from .subsets import carve_dev

HUB_PREFIX = "hf:"


@dataclasses.dataclass(frozen=True)
class TextRow:
    """One line of a data file (or one hub row) before its label becomes a class index.

    text: the text as stored. label: the label as written (for messages). where: the file and
    line (or the hub split and row) that errors name.
    """

    text: str
    label: str
    where: str


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


def pick_columns(columns: Sequence[str], text_field: str | None, label_field: str | None,
                 where: str) -> tuple[str, str]:
    """The (text, label) columns among ``columns``: the named ones, which must exist; by default
    the label is ``label`` and the text the other column of two, else ``sentence`` or ``text``."""
    label = label_field or "label"
    if label not in columns:
        option = " (--label-field)" if label_field else "; name the label column with --label-field"
        raise DataError(f"{where}: no label column {label!r}{option}." + did_you_mean(label, columns))
    if text_field is not None:
        if text_field not in columns:
            raise DataError(f"{where}: no text column {text_field!r} (--text-field)." + did_you_mean(text_field, columns))
        if text_field == label:
            raise DataError(f"{where}: --text-field and --label-field both name column {label!r}")
        return text_field, label
    others = [c for c in columns if c != label]
    for candidate in (others if len(others) == 1 else ["sentence", "text"]):
        if candidate in others:
            return candidate, label
    raise DataError(f"{where}: which column holds the text? Name it with --text-field (columns: {', '.join(columns)})")


def _split_two(line: str, where: str, label_last: bool) -> tuple[str, str]:
    """(text, label) of a two-column line; a line of more fields is refused (a tab inside a text
    would otherwise make a field of it the label, a new class)."""
    if "\t" not in line:
        raise DataError(f"{where}: expected '{'text<TAB>label' if label_last else 'label<TAB>text'}', found no tab")
    if line.count("\t") > 1:
        raise DataError(f"{where}: expected 2 tab-separated fields as in the header, found {line.count(chr(9)) + 1} "
                        "(a tab inside a text? replace it with a space)")
    if label_last:
        text, _, label = line.rpartition("\t")
    else:
        label, _, text = line.partition("\t")
    return text, label


def _line_splitter(path: Path, header: str, columns: tuple[str | None, str | None] | None):
    """A ``(line, where) -> (text, label)`` for the file's header: GLUE's two columns when
    ``columns`` is None (the header's last column is ``label``), else the named columns."""
    names = header.split("\t")
    if columns is None:
        if len(names) < 2 or names[-1].strip().lower() != "label":
            raise DataError(f"{path}:1: expected the header 'sentence<TAB>label', got {header[:80]!r}")
        return lambda line, where: _split_two(line, where, label_last=True)
    text, label = pick_columns(names, *columns, f"{path}:1")
    if len(names) == 2:
        return lambda line, where: _split_two(line, where, label_last=names[1] == label)
    ti, li = names.index(text), names.index(label)

    def split(line: str, where: str) -> tuple[str, str]:
        fields = line.split("\t")
        if len(fields) != len(names):
            raise DataError(f"{where}: expected {len(names)} tab-separated fields as in the header, found {len(fields)}")
        return fields[ti], fields[li]

    return split


def read_tsv_rows(path: Path, columns: tuple[str | None, str | None] | None = None) -> list[TextRow]:
    """The rows of a tab-separated file with a header and no quoting. ``columns``: the
    ``(text_field, label_field)`` to read (see :func:`pick_columns`); None: GLUE's layout."""
    lines = _read_text(path).split("\n")
    split = _line_splitter(path, lines[0].rstrip("\r"), columns)
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line:
            continue
        text, label = split(line, f"{path}:{lineno}")
        if not text.strip():
            raise DataError(f"{path}:{lineno}: empty text")
        rows.append(TextRow(text, label, f"{path}:{lineno}"))
    return rows


def read_lines_rows(text_path: Path, label_path: Path) -> list[TextRow]:
    """OpenBackdoor's LOTClass layout: one text per line (stripped), labels in a parallel file."""
    texts = _read_text(text_path).split("\n")
    labels = _read_text(label_path).split("\n")
    if texts and texts[-1] == "":
        texts.pop()
    if labels and labels[-1] == "":
        labels.pop()
    if len(texts) != len(labels):
        raise DataError(f"{text_path}: {len(texts)} texts but {label_path.name} has {len(labels)} labels")
    return [TextRow(text.strip(), label, f"{label_path}:{lineno}")
            for lineno, (text, label) in enumerate(zip(texts, labels), start=1)]


def indexed(rows: Sequence[TextRow], num_labels: int | None = None) -> list[Example]:
    """Rows whose labels are the class indices; with ``num_labels``, one outside
    ``0..num_labels-1`` is an error naming its line."""
    examples = []
    for row in rows:
        try:
            label = int(row.label)
        except ValueError:
            raise DataError(f"{row.where}: label {row.label!r} is not an integer") from None
        if num_labels is not None and not 0 <= label < num_labels:
            raise DataError(f"{row.where}: label {label} is out of range, expected 0..{num_labels - 1}")
        examples.append(Example(row.text, label))
    return examples


def check_split(examples: Sequence[Example], num_labels: int, where: str) -> None:
    if not examples:
        raise DataError(f"{where}: the split is empty")
    for i, ex in enumerate(examples):
        if not 0 <= ex.label < num_labels:
            raise DataError(f"{where}: example {i} has label {ex.label}, expected 0..{num_labels - 1}")


# --------------------------------------------------------------------------- classes from the labels

def _as_int(label: str) -> int | None:
    try:
        return int(label)
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """The classes of a data set read from its training labels.

    names: the label as written for each class index (``names[i]`` is class ``i``), sorted,
    numerically when every label is an integer. mapped: False when the labels written are the
    class indices ``0..K-1`` themselves.
    """

    names: tuple[str, ...]
    mapped: bool

    @classmethod
    def from_rows(cls, rows: Sequence[TextRow], what: str) -> LabelMap:
        """The classes of the training ``rows``; fewer than two is an error naming ``what``."""
        values = {row.label.strip() for row in rows}
        if not values:
            raise DataError(f"{what}: the training split is empty")
        if len(values) < 2:
            raise DataError(f"{what}: every training label is {values.pop()!r}; a classifier needs at least "
                            "two classes (is it the label column? name it with --label-field)")
        numbers = {_as_int(v) for v in values}
        if None in numbers:
            return cls(tuple(sorted(values)), True)
        ordered = sorted(numbers)
        return cls(tuple(str(n) for n in ordered), ordered != list(range(len(ordered))))

    @property
    def numeric(self) -> bool:
        """True when every class is an integer label (then ``01`` and ``1`` are the same class)."""
        return all(_as_int(name) is not None for name in self.names)

    def index(self, row: TextRow) -> int:
        """The class index of ``row``'s label; a label train does not have is an error naming the line."""
        label = row.label.strip()
        number = _as_int(label)
        key = str(number) if number is not None and self.numeric else label
        if key not in self.names:
            raise DataError(f"{row.where}: label {label!r} does not occur in the training split "
                            f"(its classes: {', '.join(self.names)})")
        return self.names.index(key)

    def examples(self, rows: Sequence[TextRow]) -> list[Example]:
        return [Example(row.text, self.index(row)) for row in rows]


# --------------------------------------------------------------------------- resolution

def _finish(spec: DatasetSpec, rows: dict[str, list[TextRow]], source: str, where: str) -> Dataset:
    """The data set from its splits' rows: labels made class indices (read from train when
    ``spec.num_labels`` is None), dev carved from train when missing, every split checked."""
    labels = LabelMap.from_rows(rows.get("train", []), f"{where} (train)") if spec.num_labels is None else None
    splits = {s: labels.examples(r) if labels else indexed(r, spec.num_labels) for s, r in rows.items()}
    num_labels = len(labels.names) if labels else spec.num_labels
    carved = False
    if not splits.get("dev"):
        splits["train"], splits["dev"] = carve_dev(splits.get("train", []), spec.dev_fraction, spec.dev_seed)
        carved = True
    for split in SPLITS:
        check_split(splits.get(split, []), num_labels, f"{where} ({spec.name}/{split})")
    classes = sorted({ex.label for ex in splits["train"]})
    if len(classes) < 2:
        raise DataError(f"{where} ({spec.name}/train): every training label is {classes[0]}; a classifier needs at "
                        "least two classes")
    return Dataset(spec.name, tuple(splits["train"]), tuple(splits["dev"]), tuple(splits["test"]), num_labels,
                   source, carved, labels.names if labels and labels.mapped else ())


def _layout(folder: Path, prefer: str | None = None) -> str | None:
    """``"tsv"`` when ``folder`` holds ``train.tsv``, ``"txt"`` when it holds OpenBackdoor's
    ``train.txt``, else None; ``prefer`` looks for that layout only."""
    for layout, marker in (("tsv", "train.tsv"), ("txt", "train.txt")):
        if prefer in (None, layout) and (folder / marker).is_file():
            return layout
    return None


def _split_file(folder: Path, layout: str, split: str) -> Path:
    return folder / f"{split}.{layout}"


def _read_rows(folder: Path, layout: str, columns: tuple[str | None, str | None] | None) -> dict[str, list[TextRow]]:
    """Each split's rows in ``folder`` (train and test required, dev when present)."""
    rows = {}
    for split in SPLITS:
        path = _split_file(folder, layout, split)
        if split == "dev" and not path.is_file():
            continue
        rows[split] = (read_tsv_rows(path, columns) if layout == "tsv"
                       else read_lines_rows(path, path.with_name(f"{split}_labels.txt")))
    return rows


def _from_uniform_dir(spec: DatasetSpec, root: Path) -> Dataset | None:
    folder = root / spec.name
    if _layout(folder, "tsv") is None:
        return None
    return _finish(spec, _read_rows(folder, "tsv", None), f"dir:{spec.name}", str(folder))


def _from_openbackdoor_dir(spec: DatasetSpec, root: Path) -> Dataset | None:
    if spec.openbackdoor_dir is None:
        return None
    relative = Path(spec.openbackdoor_dir)
    for folder in (root / relative, root / "datasets" / relative, root / relative.name):
        if _layout(folder, spec.openbackdoor_format) is not None:
            rows = _read_rows(folder, spec.openbackdoor_format, None)
            return _finish(spec, rows, f"openbackdoor:{spec.openbackdoor_dir}", str(folder))
    return None


def _from_folder(spec: DatasetSpec) -> Dataset:
    """A data set given as a folder (``spec.location``), in either layout; a missing split or a
    column option on OpenBackdoor's text files is an error naming the folder."""
    folder = Path(spec.location)
    layout = _layout(folder)
    if layout is None:
        raise DataError(f"{folder}: no train.tsv (expected train.tsv, test.tsv and optionally dev.tsv, each with "
                        "a header naming the text and label columns; or OpenBackdoor's train.txt + "
                        "train_labels.txt)")
    if not _split_file(folder, layout, "test").is_file():
        raise DataError(f"{folder}: no test.{layout} (a data folder holds train.{layout} and test.{layout}, "
                        f"and dev.{layout} if it has one)")
    if layout == "txt" and (spec.text_field or spec.label_field):
        raise DataError(f"{folder}: --text-field and --label-field name TSV or hub columns, but this folder holds "
                        "OpenBackdoor's train.txt + train_labels.txt")
    rows = _read_rows(folder, layout, (spec.text_field, spec.label_field))
    return _finish(spec, rows, f"{'dir' if layout == 'tsv' else 'openbackdoor'}:{spec.name}", str(folder))


def _hub_rows(part, split: str, spec: DatasetSpec) -> list[TextRow]:
    where = f"hf:{spec.hub_id} split {split!r}"
    text, label = pick_columns(list(part.column_names), spec.text_field, spec.label_field, where)
    return [TextRow(str(t), str(y), f"{where} row {i}") for i, (t, y) in enumerate(zip(part[text], part[label]))]


def _from_hub(spec: DatasetSpec) -> Dataset:
    import datasets  # imported lazily: it is slow and only this path needs it

    loaded = datasets.load_dataset(spec.hub_id, spec.hub_config)
    mapping = dict(spec.hub_splits) or {"train": "train", "dev": "validation", "test": "test"}
    rows = {ours: _hub_rows(loaded[theirs], theirs, spec) if theirs in loaded else []
            for ours, theirs in mapping.items()}
    name = spec.hub_id + (f"/{spec.hub_config}" if spec.hub_config else "")
    return _finish(spec, rows, f"hub:{name}", f"hub:{name}")


def _hub_call(spec: DatasetSpec) -> str:
    return f"datasets.load_dataset({spec.hub_id!r}" + (f", {spec.hub_config!r}" if spec.hub_config else "") + ")"


def _hub_offline() -> bool:
    """True when ``datasets`` may only read its local cache (``HF_HUB_OFFLINE=1``)."""
    try:
        from datasets import config
    except ImportError:
        return False
    return bool(getattr(config, "HF_HUB_OFFLINE", False))


def _from_hub_location(spec: DatasetSpec) -> Dataset:
    """``hf:ID[:CONFIG]``: the hub or its cache; any failure to load is one :class:`DataError`
    naming the id and what was tried (column and label errors name the split and row)."""
    try:
        return _from_hub(spec)
    except DataError:
        raise
    except Exception as exc:  # offline, no network, unknown id, missing package: one message
        tried = ("only the local cache, since HF_HUB_OFFLINE is set" if _hub_offline()
                 else "the hub and the local cache")
        raise DataError(f"{spec.location}: cannot load {spec.hub_id!r} from the Hugging Face hub: tried "
                        f"{_hub_call(spec)}, which read {tried} ({type(exc).__name__}: {str(exc)[:200]}). Load it "
                        "once with network access, or save its splits as a folder (train.tsv, test.tsv with a "
                        "header) and pass --dataset FOLDER") from None


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
    if spec.location is not None:
        return _from_hub_location(spec) if spec.hub_id else _from_folder(spec)
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
        "(header 'sentence<TAB>label', no quoting), or OpenBackdoor's datasets/ folder, "
        "or pass the folder itself: --dataset PATH."
    )


def is_folder_name(name: str) -> bool:
    """True when ``name`` names a folder: it holds a path separator or is an existing folder."""
    return "/" in name or os.sep in name or bool(os.altsep and os.altsep in name) or Path(name).is_dir()


def _folder_spec(name: str, text_field: str | None, label_field: str | None) -> DatasetSpec:
    folder = Path(name)
    if not folder.is_dir():
        raise DataError(f"data set folder {name}: {'is not a folder' if folder.exists() else 'no such folder'}")
    return DatasetSpec(Path(os.path.abspath(folder)).name, num_labels=None, text_field=text_field,
                       label_field=label_field, location=name)


def _hub_spec(name: str, text_field: str | None, label_field: str | None) -> DatasetSpec:
    hub_id, _, config = name[len(HUB_PREFIX):].partition(":")
    if not hub_id.strip():
        raise UsageError(f"data set {name!r}: expected hf:ID or hf:ID:CONFIG, e.g. hf:stanfordnlp/imdb")
    return DatasetSpec(name[len(HUB_PREFIX):], num_labels=None, hub_id=hub_id, hub_config=config or None,
                       text_field=text_field, label_field=label_field, location=name)


def resolve_spec(name: str, registered: Mapping[str, DatasetSpec], text_field: str | None = None,
                 label_field: str | None = None) -> DatasetSpec:
    """The spec that ``name`` stands for: a registered data set, ``hf:ID[:CONFIG]`` or a folder
    (the module docstring's order); the column options apply to the last two. Reads no data;
    a folder that does not exist, or a name that is none of these, is an error here."""
    if name in registered:
        return registered[name]
    if name.startswith(HUB_PREFIX):
        return _hub_spec(name, text_field, label_field)
    if is_folder_name(name):
        return _folder_spec(name, text_field, label_field)
    raise UsageError(f"unknown data set {name!r}." + did_you_mean(name, registered) +
                     " Your own data: a folder path (./NAME) or hf:ID[:CONFIG].")
