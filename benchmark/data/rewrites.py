"""Pre-generated poisoned text aligned with a data set's rows, for replay attacks (SynBkd, StyleBkd).

A **rewrite folder** holds the text that a paraphrase or style-transfer model produced for a data
set, so that an attack can replay it without the model (methods.md F5):

* ``train.tsv``: GLUE's layout (a header ``sentence<TAB>label``, the label last, no quoting), row
  *i* the rewrite of training row *i*: the same number of rows as the data set's training split
  and, at every row, that row's clean label (not flipped to the target).
* ``test.tsv``: either aligned with the test split in the same way, or the rewrites of the
  test split's **non-target** rows only, in their order, some possibly missing (HiddenKiller's
  SynBkd file has 911 of 912). The second form is matched to its sources by an order-keeping
  alignment on word overlap (:func:`align_in_order`), so that every rewrite knows its source.
* ``dev.tsv`` may be present and is never read (a poisoned dev set is the attacker's only).

A row's text may be empty in the file (a generator that returned nothing; the row is kept so the
rows stay aligned); it is an error only where an attack uses it. Every error names the file and
the line. Paths never reach a record: :func:`folder_digest` (the files' content) identifies a
folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

from ..base.errors import DataError
from .examples import Example

REWRITE_FILES = ("train.tsv", "test.tsv")
MAX_MISSING = 50  # test rows a non-target-only test file may lack before it counts as not aligned


@dataclasses.dataclass(frozen=True)
class RewriteRow:
    """One line of a rewrite file: the rewritten text ("" when the generator gave none), the
    source row's clean label, and ``file:line`` for messages."""

    text: str
    label: int
    where: str


def read_rewrite_rows(path: Path) -> list[RewriteRow]:
    """The rows of one rewrite file (module docstring); empty texts kept, bad lines refused."""
    if not path.is_file():
        raise DataError(f"{path}: no such file (a rewrite folder holds {' and '.join(REWRITE_FILES)})")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    header = lines[0].rstrip("\r").split("\t")
    if len(header) < 2 or header[-1].strip().lower() != "label":
        raise DataError(f"{path}:1: expected the header 'sentence<TAB>label', got {lines[0][:80]!r}")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line:
            continue
        where = f"{path}:{lineno}"
        if "\t" not in line:
            raise DataError(f"{where}: expected 'text<TAB>label', found no tab")
        text, _, label = line.rpartition("\t")
        try:
            rows.append(RewriteRow(text.strip(), int(label), where))
        except ValueError:
            raise DataError(f"{where}: label {label!r} is not an integer") from None
    return rows


def folder_digest(folder: Path) -> str:
    """A digest of the rewrite files' bytes (names included): what a cache key records of a folder."""
    digest = hashlib.blake2b(digest_size=12)
    for name in REWRITE_FILES:
        digest.update(name.encode() + b"\x00" + (folder / name).read_bytes() + b"\x01")
    return digest.hexdigest()


def check_aligned(rows: Sequence[RewriteRow], split: Sequence[Example], path: Path, what: str) -> None:
    """Raise unless ``rows`` rewrite ``split`` row for row: the same count, the same label at each row."""
    if len(rows) != len(split):
        raise DataError(f"{path}: {len(rows)} rows, but the data set's {what} split has {len(split)}; row i must "
                        f"rewrite {what} row i (is it the folder for this data set?)")
    for number, (row, example) in enumerate(zip(rows, split), start=1):
        if row.label != example.label:
            raise DataError(f"{row.where}: label {row.label}, but {what} row {number} of the data set "
                            f"has label {example.label}; the rewrite file is not aligned with the data set")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.lower().split())


def overlap(a: str, b: str) -> float:
    """Jaccard overlap of the two texts' lower-cased word sets (0 when both are empty)."""
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / len(wa | wb) if wa or wb else 0.0


def align_in_order(sources: Sequence[str], rewrites: Sequence[str]) -> list[int]:
    """For each rewrite, the index of its source: an order-keeping assignment of the rewrites to
    ``len(rewrites)`` of the sources (the others have no rewrite) that maximises the summed word
    overlap. Exact by dynamic programming over the number of sources skipped so far, which is at
    most ``len(sources) - len(rewrites)``."""
    n, m = len(sources), len(rewrites)
    skip = n - m
    if skip < 0:
        raise ValueError("more rewrites than sources")
    neg = float("-inf")
    # best[k]: the best total after the rewrites so far with k sources skipped; back[j][k]: k before rewrite j
    best = [0.0] + [neg] * skip
    back: list[list[int]] = []
    for j in range(m):
        new, choice = [neg] * (skip + 1), [0] * (skip + 1)
        running, arg = neg, 0
        for k in range(skip + 1):
            if best[k] > running:
                running, arg = best[k], k
            if running > neg:
                new[k], choice[k] = running + overlap(rewrites[j], sources[j + k]), arg
        best = new
        back.append(choice)
    k = max(range(skip + 1), key=lambda i: best[i])
    matched = [0] * m
    for j in range(m - 1, -1, -1):
        matched[j] = j + k
        k = back[j][k]
    return matched


@dataclasses.dataclass(frozen=True)
class RewriteFolder:
    """A rewrite folder checked against a data set: ``train[i]`` rewrites training row i;
    ``test`` maps each non-target test row's index (in the data set's test split) to its rewrite
    row (absent: no rewrite of that row); ``test_form`` is "aligned" or "non-target rows"."""

    folder: Path
    train: tuple[RewriteRow, ...]
    test: dict[int, RewriteRow]
    test_form: str
    digest: str
    mean_test_overlap: float  # the word overlap of each used test rewrite with its source, averaged

    @classmethod
    def read(cls, folder: Path, train: Sequence[Example], test: Sequence[Example], target: int) -> RewriteFolder:
        """Read ``folder`` and check it against the data set's full ``train`` and ``test`` splits."""
        if not folder.is_dir():
            raise DataError(f"rewrite folder {folder}: no such folder")
        train_rows = read_rewrite_rows(folder / "train.tsv")
        check_aligned(train_rows, train, folder / "train.tsv", "training")
        test_rows = read_rewrite_rows(folder / "test.tsv")
        nontarget = [i for i, ex in enumerate(test) if ex.label != target]
        path = folder / "test.tsv"
        if len(test_rows) == len(test) and all(r.label == ex.label for r, ex in zip(test_rows, test)):
            form, mapping = "aligned", {i: test_rows[i] for i in nontarget}
        elif all(r.label != target for r in test_rows) and 0 <= len(nontarget) - len(test_rows) <= MAX_MISSING:
            form = "non-target rows"
            matched = align_in_order([test[i].text for i in nontarget], [r.text for r in test_rows])
            mapping = {nontarget[s]: row for s, row in zip(matched, test_rows)}
        else:
            labels = sorted({r.label for r in test_rows})
            raise DataError(
                f"{path}: {len(test_rows)} rows with labels {labels}: neither aligned with the data set's test split "
                f"({len(test)} rows, row i rewriting test row i with its label) nor the rewrites of its "
                f"{len(nontarget)} non-target rows (label != {target}) in order, at most {MAX_MISSING} missing")
        overlaps = [overlap(row.text, test[i].text) for i, row in mapping.items()]
        return cls(folder, tuple(train_rows), mapping, form, folder_digest(folder),
                   sum(overlaps) / len(overlaps) if overlaps else float("nan"))

    def used(self, row: RewriteRow) -> str:
        """The text of a row an attack uses; an empty one is an error naming its line."""
        if not row.text:
            raise DataError(f"{row.where}: empty text in a row the attack uses (the generator returned nothing "
                            "for it); fill it in or leave the row out of the folder's data set")
        return row.text
