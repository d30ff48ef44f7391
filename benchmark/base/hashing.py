"""Content fingerprints of files and folders, for cache keys that follow the bytes, not the names.

A scenario's cache key must change when the victim's weights or tokenizer change at the same
path, so it hashes the content of every file of the victim folder. Hashing 90 MB of weights
costs about a fifth of a second; :class:`DigestCache` remembers each file's digest by
(resolved path, size, modification time in ns, inode) in one small JSON file, so a rerun pays
only a ``stat`` per file. A file rewritten in place keeps its path but changes its mtime (and
usually its size), so the cached digest is not reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DigestCache:
    """File digests cached by (path, size, mtime_ns, inode) in ``cache_file`` (None: in memory only)."""

    def __init__(self, cache_file: str | os.PathLike | None = None):
        self.cache_file = Path(cache_file) if cache_file else None
        self._entries: dict[str, list] | None = None
        self._dirty = False

    def _load(self) -> dict[str, list]:
        if self._entries is None:
            self._entries = {}
            if self.cache_file is not None and self.cache_file.is_file():
                with contextlib.suppress(OSError, ValueError):
                    loaded = json.loads(self.cache_file.read_text(encoding="utf-8"))
                    if isinstance(loaded, dict):
                        self._entries = loaded
        return self._entries

    def digest(self, path: Path) -> str:
        resolved = str(Path(path).resolve())
        st = os.stat(resolved)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        entries = self._load()
        cached = entries.get(resolved)
        if isinstance(cached, list) and len(cached) == 4 and cached[:3] == stamp:
            return cached[3]
        value = file_digest(Path(resolved))
        entries[resolved] = [*stamp, value]
        self._dirty = True
        self._save()
        return value

    def _save(self) -> None:
        if self.cache_file is None or not self._dirty:
            return
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            lock = os.open(self.cache_file.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                merged = {}
                if self.cache_file.is_file():
                    with contextlib.suppress(ValueError):
                        merged = json.loads(self.cache_file.read_text(encoding="utf-8")) or {}
                merged.update(self._entries or {})
                fd, tmp = tempfile.mkstemp(prefix=".digests.", dir=self.cache_file.parent)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(merged, handle, sort_keys=True)
                os.replace(tmp, self.cache_file)
                self._dirty = False
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
                os.close(lock)


def folder_fingerprint(folder: str | os.PathLike, cache: DigestCache | None = None) -> str:
    """A digest of every regular file under ``folder`` (names and contents; hidden files skipped)."""
    folder = Path(folder)
    cache = cache or DigestCache()
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        digest.update(relative.as_posix().encode("utf-8") + b"\x00")
        digest.update(cache.digest(path).encode("ascii") + b"\x01")
    return digest.hexdigest()


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short content hash of a JSON-able object (key order does not matter): the cell ids and
    the store's keys. Its input and output must never change: published runs resume by them."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
