"""Records: one JSON object per cell in ``DIR/records.jsonl``.

What a record holds is declared in :mod:`benchmark.base.record_schema`, one entry per key: its meaning, its
JSON types, its group (identity, outcome, configuration, scenario, metrics, costs, the fields of
each defense kind, provenance), which records carry it and, for a metric, which direction is
better. The harness builds records through that schema and checks each one before appending it.

Appends are atomic: the whole line is written under an exclusive ``flock`` and synced to disk.
If the file does not end in a newline (a line torn by a full disk, a kill, or anything else),
the new record starts on a line of its own, so a torn line never swallows the next record. A
write that fails part-way is rolled back to the file's previous size. When reading, a line
that is not JSON (a torn line) is skipped with a warning naming file and line; a line that is
JSON but not a record (not an object, or without a string ``cell_id`` and ``status``) is a
:class:`RecordsError` naming file and line, since it means the file is not bdbench's.

Concurrent runs sharing one ``--out`` share the work: :func:`claim_cell` takes a per-cell lock
(``OUT/.claims/<cell_id>.lock``) before a cell is computed, and a run skips a cell that another
run finished while it waited.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError

log = logging.getLogger(__name__)
RECORDS_FILE = "records.jsonl"
CLAIMS_DIR = ".claims"


class RecordsError(UsageError):
    """A records file that cannot be read or written: the message names the file (and line)."""


def records_path(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / RECORDS_FILE


def check_writable(out_dir: str | os.PathLike) -> Path:
    """Fail now, before any training, if ``OUT/records.jsonl`` cannot be appended to."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RecordsError(f"--out {out}: is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = records_path(out)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.close(fd)
    except OSError as exc:
        raise RecordsError(f"--out {out}: cannot write records there ({exc.strerror or exc})") from None
    return path


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - os.write raises rather than returning 0 on Linux
            raise OSError(errno.EIO, "short write")
        view = view[written:]


def append_record(out_dir: str | os.PathLike, record: dict) -> Path:
    """Append ``record`` as one line (see the module docstring for the guarantees)."""
    path = records_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, allow_nan=False, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a torn last line stays a line of its own
        try:
            _write_all(fd, line)
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # roll back a partial line
            raise RecordsError(f"{path}: could not append a record ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return path


def read_records(path: str | os.PathLike, *, start: int = 0) -> Iterator[dict]:
    """The records of a ``records.jsonl`` file (or of ``DIR/records.jsonl``), from byte ``start``."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORDS_FILE
    if not path.exists():
        return
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise RecordsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        handle.seek(start)
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}:{lineno}" if start == 0 else f"{path} (byte {start}+, line {lineno})"
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise RecordsError(f"{where}: not UTF-8 text, so not a bdbench records file; is this the right "
                                   "folder?") from None
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                if not text.lstrip().startswith("{"):
                    raise RecordsError(f"{where}: not a bdbench record (not a JSON object); is this the right "
                                       "folder?") from None
                log.warning("%s: skipping a malformed (torn) record line", where)
                continue
            if not (isinstance(record, dict) and isinstance(record.get("cell_id"), str)
                    and record.get("status") in ("ok", "failed")):
                raise RecordsError(f"{where}: not a bdbench record (expected a JSON object with a string "
                                   "'cell_id' and 'status' ok or failed); is this the right folder?")
            yield record


def records_end(out_dir: str | os.PathLike) -> int:
    """The current size of the records file (where records appended from now on start)."""
    path = records_path(out_dir)
    return path.stat().st_size if path.exists() else 0


def finished_cells(out_dir: str | os.PathLike, *, start: int = 0) -> set[str]:
    """``cell_id`` of every record with status ok (what ``--resume`` skips), from byte ``start``."""
    return {r["cell_id"] for r in read_records(out_dir, start=start) if r.get("status") == "ok"}


def finished_records(out_dir: str | os.PathLike) -> dict[str, dict]:
    """The last record with status ok of each ``cell_id`` (what ``--resume`` compares its inputs with)."""
    return {r["cell_id"]: r for r in read_records(out_dir) if r.get("status") == "ok"}


@contextlib.contextmanager
def claim_cell(out_dir: str | os.PathLike, cell_id: str, *, wait: bool) -> Iterator[bool]:
    """Hold the per-cell lock while the block runs. Yields False (without the lock) when another
    process holds it and ``wait`` is False; with ``wait`` it blocks until the lock is free."""
    folder = Path(out_dir) / CLAIMS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{cell_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def sanitize(value):
    """JSON-safe copy: NaN and infinities become None."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize(v) for v in value]
    return value


_PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout (or site-packages) holding benchmark/
_FRAME_FILE = re.compile(r'File "([^"]+)"')


def portable_traceback(text: str) -> str:
    """``text`` (a formatted traceback) without this machine's folders, so that records can be
    published: a file under the project is named from the project's root, a file of an installed
    package from its ``site-packages`` folder, any other absolute path by its last two parts."""
    root = str(_PROJECT_ROOT) + os.sep

    def short(match: re.Match) -> str:
        path = match.group(1)
        if path.startswith(root):
            path = path[len(root):]
        elif "site-packages" + os.sep in path:
            path = path[path.index("site-packages" + os.sep):]
        elif os.path.isabs(path):
            path = os.path.join("...", *Path(path).parts[-2:])
        return f'File "{path}"'

    return _FRAME_FILE.sub(short, text)
