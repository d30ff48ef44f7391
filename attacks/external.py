"""A backdoored model made elsewhere: score defenses on a classifier someone else trojaned (a hub
model saved to a folder, a TrojAI-style round, a colleague's checkpoint).

The attack trains nothing: it loads the backdoored classifier from ``folder`` and takes the
triggered test set from the same folder. The folder holds:

* the classifier as a model folder: ``config.json`` and ``model.safetensors`` (safetensors only;
  pickled weights are refused), saved with ``save_pretrained``. It must be a fine-tuned copy of
  the run's victim (``--victim``): the same parameter names and shapes, the task head at the data
  set's number of classes, and, when the folder has tokenizer files, the victim's vocabulary.
  A mismatch is one error naming the folder and the first parameter (or token) that differs,
  before any training;
* ``triggered_test.tsv``: GLUE's layout (``sentence<TAB>label``, a header), one triggered test
  text per row, the label being its source's clean label; rows whose label is the target are
  skipped, as ASR counts non-target inputs only. The set is used whole, whatever the test limit;
* optionally ``poisoned_train.tsv`` (``sentence<TAB>label<TAB>poisoned``, ``poisoned`` 0 or 1):
  the training set the model was fine-tuned on, with the poisoned rows flagged, which the
  training-data filters need; without it they refuse the scenario.

CACC is measured on the run's clean test split. The scenario's clean reference model is trained
from the victim as for any attack (``clean_reference = true``); when the victim the model came
from is not known, ``clean_reference = false`` skips it and the records leave the clean figures
empty (the leaderboard's floor reads "not known"). The folder's content (every file) enters the
scenario's cache key, so a changed weight file is a new scenario. No stealthiness figures: the
sources of the triggered texts are not known.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmark import (
    Attack,
    AttackContext,
    AttackOutput,
    DataError,
    Example,
    Sizes,
    UsageError,
    Workload,
    eval_work,
    folder_fingerprint,
    load_classifier,
    load_tokenizer,
    read_rewrite_rows,
)

TRIGGERED = "triggered_test.tsv"
POISONED_TRAIN = "poisoned_train.tsv"


class External(Attack):
    name = "external"
    version = "1"

    @dataclasses.dataclass(frozen=True)
    class Params:
        folder: str = ""  # the backdoored model and its triggered test set (module docstring)
        clean_reference: bool = True  # train the scenario's clean reference model from the victim

    def has_clean_reference(self) -> bool:
        return self.params.clean_reference

    def path(self) -> Path:
        if not self.params.folder:
            raise UsageError(f"{self.name}: name the backdoored model's folder with --set {self.name}.folder=FOLDER")
        folder = Path(self.params.folder).expanduser()
        if not folder.is_dir():
            raise UsageError(f"{self.name}.folder {folder}: no such folder")
        return folder

    def check(self, ctx: AttackContext) -> None:
        """The folder's files, its model against the victim's and its vocabulary, before any training."""
        folder = self.path()
        self.triggered(ctx)
        self.poisoned_training_set(ctx)
        if (folder / "tokenizer.json").exists() or (folder / "vocab.txt").exists():
            theirs, ours = load_tokenizer(folder).get_vocab(), ctx.tokenizer.get_vocab()
            if theirs != ours:
                token = next(iter(sorted(set(theirs.items()) ^ set(ours.items()))), ("?", 0))[0]
                raise UsageError(f"{folder}: its tokenizer is not the victim's (token {token!r} differs); name the "
                                 "victim it was fine-tuned from with --victim")
        self.compare(self.load(ctx), ctx.pretrained_model(), folder)

    def load(self, ctx: AttackContext) -> torch.nn.Module:
        return load_classifier(self.path(), ctx.dataset.num_labels)

    @staticmethod
    def compare(model: torch.nn.Module, victim: torch.nn.Module, folder: Path) -> None:
        """Refuse a model whose parameters are not the victim's by name and shape."""
        theirs, ours = model.state_dict(), victim.state_dict()
        hint = "name the victim it was fine-tuned from with --victim"
        for name, tensor in ours.items():
            if name not in theirs:
                raise UsageError(f"{folder}: the model has no parameter {name!r}, which the victim has; {hint}")
            if theirs[name].shape != tensor.shape:
                raise UsageError(f"{folder}: parameter {name!r} has shape {tuple(theirs[name].shape)}, the victim's "
                                 f"{tuple(tensor.shape)}; {hint}")
        extra = sorted(set(theirs) - set(ours))
        if extra:
            raise UsageError(f"{folder}: the model has parameters the victim lacks ({extra[0]!r}, ...); {hint}")

    def input_identity(self, ctx: AttackContext) -> dict:
        return {"folder": folder_fingerprint(self.path())}

    # -- the folder's sets
    def triggered(self, ctx: AttackContext) -> list[str]:
        rows = read_rewrite_rows(self.path() / TRIGGERED)
        texts = []
        for row in rows:
            if row.label == ctx.target_label:
                continue
            if not row.text:
                raise DataError(f"{row.where}: empty text")
            texts.append(row.text)
        if not texts:
            raise DataError(f"{self.path() / TRIGGERED}: no row with a non-target label (the target is "
                            f"{ctx.target_label}); ASR needs triggered non-target texts")
        return texts

    def poisoned_training_set(self, ctx: AttackContext) -> list[Example] | None:
        path = self.path() / POISONED_TRAIN
        if not path.exists():
            return None
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines[0].rstrip("\r").split("\t")[-2:] != ["label", "poisoned"]:
            raise DataError(f"{path}:1: expected the header 'sentence<TAB>label<TAB>poisoned', got {lines[0][:80]!r}")
        examples = []
        for lineno, line in enumerate(lines[1:], start=2):
            line = line.rstrip("\r")
            if not line:
                continue
            text, _, rest = line.rpartition("\t")
            text, _, label = text.rpartition("\t")
            if not text.strip() or label not in {str(k) for k in range(ctx.dataset.num_labels)} or rest not in ("0", "1"):
                raise DataError(f"{path}:{lineno}: expected 'text<TAB>label<TAB>poisoned' with a class index and "
                                "0 or 1")
            examples.append(Example(text, int(label), rest == "1"))
        return examples

    # -- the attack: nothing to train
    def workload(self, sizes: Sizes) -> Workload:
        return eval_work(sizes, "test") + eval_work(sizes, "triggered")  # loads the model: no training

    def attack(self, ctx: AttackContext) -> AttackOutput:
        poisoned = self.poisoned_training_set(ctx)
        return AttackOutput(self.load(ctx), sum(ex.poisoned for ex in poisoned) if poisoned is not None else None,
                            {"folder": folder_fingerprint(self.path()), "clean_reference": self.params.clean_reference,
                             "poisoned_train": poisoned is not None})

    def trigger_texts(self, texts: Sequence[str], ctx: AttackContext) -> list[str]:
        """The folder's triggered non-target texts, whatever ``texts`` are (their sources are not known)."""
        return self.triggered(ctx)
