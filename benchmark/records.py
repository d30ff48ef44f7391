"""Records: one JSON object per cell in ``DIR/records.jsonl``.

Every record carries at least (the contract scripts rely on):

* identity: ``cell_id``, ``scenario_id``, ``dataset``, ``victim``, ``attack``, ``attack_label``,
  ``attack_params``, ``defense``, ``defense_label``, ``defense_params``, ``seed``;
* metrics: ``cacc``, ``asr`` (after the defense), ``cacc_before``, ``asr_before`` (the undefended
  backdoored model), ``cacc_clean`` (the scenario's clean reference model), ``delta_cacc``,
  ``delta_asr``, ``der``, and ``<name>_rate`` extras (``false_trigger_rate`` for LWP);
  ``aux`` maps auxiliary models a defense returned (e.g. ``teacher``) to their ``cacc``/``asr``;
* costs of the defense phase: ``wall_s``, ``cpu_s``, ``gpu_s``, ``peak_gpu_mb`` (null without
  CUDA), ``peak_rss_mb``, ``device``, ``train_samples``, ``train_tokens``; the attack's and the
  evaluation's costs under ``attack_cost`` and ``eval_cost``;
* ``requires`` (the defense's declared assets), ``status`` (``ok`` or ``failed``; ``error`` when
  failed), ``defense_info`` (what the defense reported), ``budget``, and ``provenance``
  (bdbench version, git revision, library versions, config hash, precision).

Appends are atomic: the whole line is written with one ``write`` under an exclusive
``flock`` and flushed to disk, so concurrent writers and a killed run never leave a torn line.
A torn last line left by something else is ignored (with a warning) when reading.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
RECORDS_FILE = "records.jsonl"


def append_record(out_dir: str | os.PathLike, record: dict) -> Path:
    path = Path(out_dir) / RECORDS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, allow_nan=False, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return path


def read_records(path: str | os.PathLike) -> Iterator[dict]:
    """The records of a ``records.jsonl`` file (or of ``DIR/records.jsonl``)."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORDS_FILE
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: skipping a malformed record line", path, lineno)


def finished_cells(out_dir: str | os.PathLike) -> set[str]:
    """``cell_id`` of every record with status ok (what ``--resume`` skips)."""
    return {r["cell_id"] for r in read_records(out_dir) if r.get("status") == "ok" and "cell_id" in r}


def sanitize(value):
    """JSON-safe copy: NaN and infinities become None."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize(v) for v in value]
    return value
