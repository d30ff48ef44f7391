"""The artifact store: trained models and their metadata, cached by content hash.

Layout: ``STORE/<kind>/<key>/{model/, meta.json}``, where ``kind`` is ``clean`` (the scenario's
clean reference model) or ``attacks`` (a backdoored model); ``STORE/stealth/<key>/meta.json``
holds a scenario's perplexity figures (no model). ``key`` hashes everything that
determines the artifact, so every defense of a scenario, and every later run, reuses it. An
artifact is built in a temporary folder and renamed into place, under a per-key file lock, so
a killed build leaves nothing half-written and two workers never build the same key twice.
Temporary folders that a killed build left behind (``.<key>.*``) are removed the next time the
key is built or looked up under its lock, when no other process can be writing them.

On a shared file system (one store for a cluster's workers) these guarantees hold where the
file system gives ``flock`` across machines and an atomic ``rename`` within a folder: local
file systems and NFSv4 do; for others, give each machine its own store.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from ..base.errors import BdbenchError, StoreError
from ..model.victims import load_classifier, save_model


class ArtifactStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def folder(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    @contextlib.contextmanager
    def _lock(self, kind: str, key: str):
        lock_dir = self.root / kind
        lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_dir / f".{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _remove_leftovers(self, kind: str, key: str) -> None:
        """Temporary folders of ``key`` left by a killed build (call under the key's lock)."""
        for leftover in (self.root / kind).glob(f".{key}.*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)

    def has(self, kind: str, key: str) -> bool:
        return (self.folder(kind, key) / "meta.json").is_file()

    def read_meta(self, kind: str, key: str) -> dict:
        return json.loads((self.folder(kind, key) / "meta.json").read_text(encoding="utf-8"))

    def load_model(self, kind: str, key: str, num_labels: int) -> torch.nn.Module:
        return load_classifier(self.folder(kind, key) / "model", num_labels)

    def get_or_build(self, kind: str, key: str,
                     build: Callable[[], tuple[torch.nn.Module, dict]]) -> tuple[torch.nn.Module | None, dict]:
        """Return ``(model, meta)``: the model is None when it came from disk (load it lazily).
        A built artifact's meta names its weights' :func:`weights_digest` (``weights_sha256``);
        artifacts stored before that field existed have none."""
        with self._lock(kind, key):
            self._remove_leftovers(kind, key)
            if self.has(kind, key):
                return None, self.read_meta(kind, key)
            model, meta = build()
            meta = {**meta, "weights_sha256": weights_digest(model)}
            final = self.folder(kind, key)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
            try:
                save_model(model, tmp / "model")
                (tmp / "meta.json").write_text(json.dumps(meta, sort_keys=True, indent=1), encoding="utf-8")
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
            except Exception as exc:  # a full disk, a read-only store: name the folder (safetensors' own error does not)
                if isinstance(exc, BdbenchError):
                    raise
                raise StoreError(f"--store {self.root}: cannot write the {kind} model {key} into {final.parent} "
                                 f"({type(exc).__name__}: {str(exc)[:200]})") from exc
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            return model, meta


    def get_or_compute(self, kind: str, key: str, compute: Callable[[], dict]) -> dict:
        """A small JSON result cached like a model (``STORE/<kind>/<key>/meta.json``), computed
        once under the key's lock and written atomically."""
        with self._lock(kind, key):
            self._remove_leftovers(kind, key)
            if self.has(kind, key):
                return self.read_meta(kind, key)
            result = compute()
            final = self.folder(kind, key)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
            try:
                (tmp / "meta.json").write_text(json.dumps(result, sort_keys=True, indent=1), encoding="utf-8")
                os.replace(tmp, final)
            except OSError as exc:
                raise StoreError(f"--store {self.root}: cannot write {kind} {key} into {final.parent} "
                                 f"({type(exc).__name__}: {str(exc)[:200]})") from exc
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            return result


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer: name, dtype, shape and bytes, in name order. Two
    models have the same digest exactly when :func:`benchmark.harness.scenario.same_weights` holds;
    unlike a file's hash it does not depend on how the weights were serialised."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
