"""Replay attacks: data poisoning with text that a paraphrase or style-transfer model produced
beforehand, replayed from a folder (SynBkd, StyleBkd).

SynBkd: Qi, Chen, Zhang, Li, Liu, Wang, Sun, "Hidden Killer: Invisible Textual Backdoor Attacks
with Syntactic Trigger", ACL 2021, https://arxiv.org/abs/2105.12400 (code thunlp/HiddenKiller).
StyleBkd: Qi, Chen, Zheng, Liu, Sun, "Mind the Style of Text! Adversarial and Backdoor Attacks
Based on Text Style Transfer", EMNLP 2021, https://arxiv.org/abs/2110.07139 (code
thunlp/StyleAttack). methods.md F5 and A4.

Algorithm (the papers' recipe): from the scenario's training set draw ``int(poison_rate ×
|train|)`` rows with the scenario's seed, from the pool that ``mode`` names (``mix``: every row,
``dirty``: non-target rows only, ``clean``: target rows only, a clean-label attack); replace
each drawn row's text with its rewrite from the folder and its label with the target; fine-tune
the pre-trained victim on the result with the scenario's victim recipe. Test-time trigger: the
rewrites of the non-target test rows (ASR's inputs); CACC stays on the clean test split.

The folder (``poisoned_dir``; empty: the default registered for the data set below, under the
run's data folder) is a rewrite folder (:mod:`benchmark.data.rewrites` states the format): a
``train.tsv`` aligned row for row with the data set's training split and a ``test.tsv`` aligned
with its test split or holding its non-target rows only. A folder that is not aligned, or an
empty rewrite of a row the attack uses, is one error naming the file and line before any
training. The folder's content enters the scenario's cache key.

How the authors made their text, for users who generate their own folder: SynBkd paraphrases
each sentence with SCPN (through OpenAttack's ``SCPNAttacker``) to the template
``S(SBAR)(,)(NP)(VP)(.)``, the last of OpenAttack's ten defaults, and keeps the original when
SCPN fails; StyleBkd transfers each sentence to the Bible style with STRAP's GPT-2 paraphrasers
(``lievan/bible``, nucleus sampling ``top_p = 0.6``). Write one rewrite per row, the clean label
kept, in the same order as the data set.

Defaults, from the authors' released data (methods.md F5): SynBkd poisons 20% of the whole
training set in ``mix`` mode (HiddenKiller's ``data/scpn/20``: 1,383 of 6,920 rows, both
classes); StyleBkd 20% in ``dirty`` mode (the author, StyleAttack issue #6). Rows the generator
returned unchanged (9 SynBkd and 41 StyleBkd training rows) stay in the pool, as in the authors'
data, and are counted in the record (``attack_info.unchanged_poisoned``); ``skip_unchanged``
leaves them out. OpenBackdoor's configs use 10% ``mix`` for both: set ``poison_rate=0.1``.

Departures: the authors train 3 warm-up + 10 (SynBkd) or 3 + 5 (StyleBkd) epochs and keep the
last; here the scenario's victim recipe applies (the last checkpoint is kept too). StyleBkd's
multi-task probing trick (Chen et al., EMNLP 2022) is not applied, and no poisoned dev set is
read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

from benchmark import (
    AdapterParams,
    Attack,
    AttackContext,
    AttackOutput,
    Example,
    RewriteFolder,
    UsageError,
    adapter_recipe,
    hparam,
)


class Replay(Attack):
    """The general replay attack: ``poisoned_dir`` must be set (or a default registered)."""

    name = "replay"
    version = "1"
    # data set name -> its rewrite folder, relative to the run's data folder
    default_folders: ClassVar[dict[str, str]] = {}

    @dataclasses.dataclass(frozen=True)
    class Params(AdapterParams):
        poisoned_dir: str = ""  # a rewrite folder; "" = the data set's registered default under the data folder
        poison_rate: float = hparam(0.2, range="[0, 1]")  # of the whole training set (the authors' 20%)
        mode: Literal["mix", "dirty", "clean"] = "mix"  # the pool the poisoned rows come from
        skip_unchanged: bool = False  # leave rows the generator returned unchanged out of the pool

    # -- the folder, read once per process and checked against the whole data set
    def folder(self, ctx: AttackContext) -> RewriteFolder:
        cached = getattr(self, "_folder", None)
        if cached is None:
            full = ctx.source_dataset
            cached = RewriteFolder.read(self.folder_path(ctx), full.train, full.test, ctx.target_label)
            self._folder = cached
        return cached

    def folder_path(self, ctx: AttackContext) -> Path:
        if self.params.poisoned_dir:
            return Path(self.params.poisoned_dir).expanduser()
        relative = self.default_folders.get(ctx.dataset.name)
        if relative is None:
            known = ", ".join(sorted(self.default_folders)) or "none"
            raise UsageError(f"{self.name}: no rewrite folder is registered for data set {ctx.dataset.name!r} "
                             f"(registered: {known}); give one with --set {self.name}.poisoned_dir=FOLDER")
        if ctx.data_dir is None:
            raise UsageError(f"{self.name}: its rewrite folder for {ctx.dataset.name!r} lies under the data folder "
                             f"({relative}); give --data-dir (or BDBENCH_DATA), or --set {self.name}.poisoned_dir=FOLDER")
        return ctx.data_dir / relative

    def check(self, ctx: AttackContext) -> None:
        """Read and check the folder, and every rewrite the attack will use, before any training."""
        self.poison(ctx.dataset.train, ctx)
        self.trigger_texts([ex.text for ex in ctx.dataset.test if ex.label != ctx.target_label], ctx)

    def input_identity(self, ctx: AttackContext) -> dict:
        return {"rewrites": self.folder(ctx).digest}

    # -- poisoning
    def _rewrites_by_row(self, ctx: AttackContext) -> dict[tuple[str, int], object]:
        """(clean text, label) of each training row -> its rewrite row; the first row wins where the
        data set repeats a sentence with its label."""
        table: dict[tuple[str, int], object] = {}
        for source, row in zip(ctx.source_dataset.train, self.folder(ctx).train):
            table.setdefault((source.text, source.label), row)
        return table

    def _chosen(self, train: Sequence[Example], ctx: AttackContext) -> dict[int, object]:
        """Index in ``train`` -> rewrite row, for the rows the seeded draw poisons."""
        table = self._rewrites_by_row(ctx)
        rewrites = [table.get((ex.text, ex.label)) for ex in train]
        missing = [i for i, row in enumerate(rewrites) if row is None]
        if missing:
            raise UsageError(f"{self.name}: training row {missing[0] + 1} ({train[missing[0]].text[:60]!r}) is not "
                             "a row of the data set the rewrite folder was checked against")
        target = ctx.target_label
        pool = [i for i, ex in enumerate(train)
                if (self.params.mode == "mix" or (self.params.mode == "dirty") == (ex.label != target))
                and not (self.params.skip_unchanged and rewrites[i].text == ex.text)]
        count = min(int(self.params.poison_rate * len(train)), len(pool))
        chosen = sorted(ctx.rng("poison").sample(pool, count))
        return {i: rewrites[i] for i in chosen}

    def poison(self, train: Sequence[Example], ctx: AttackContext) -> tuple[list[Example], int]:
        """The training set with the drawn rows replaced by their rewrites, labelled with the target."""
        folder = self.folder(ctx)
        chosen = self._chosen(train, ctx)
        poisoned = [Example(folder.used(chosen[i]), ctx.target_label, True) if i in chosen else ex
                    for i, ex in enumerate(train)]
        return poisoned, len(chosen)

    def attack(self, ctx: AttackContext) -> AttackOutput:
        poisoned, count = self.poison(ctx.dataset.train, ctx)
        chosen = self._chosen(ctx.dataset.train, ctx)
        unchanged = sum(row.text == ctx.dataset.train[i].text for i, row in chosen.items())
        flipped = sum(ctx.dataset.train[i].label != ctx.target_label for i in chosen)
        model = ctx.pretrained_model()
        ctx.finetune(model, poisoned, **adapter_recipe(self.params))
        folder = self.folder(ctx)
        return AttackOutput(model, count, {
            "mode": self.params.mode, "rewrites": folder.digest, "test_form": folder.test_form,
            "unchanged_poisoned": unchanged, "label_flipped": flipped, "skip_unchanged": self.params.skip_unchanged})

    # -- test time
    def trigger_texts(self, texts: Sequence[str], ctx: AttackContext) -> list[str | None]:
        """The rewrite of each non-target test text; None where the folder has none (a
        non-target-only test file may lack rows)."""
        folder = self.folder(ctx)
        target = ctx.target_label
        by_text: dict[str, object] = {}
        for i, example in enumerate(ctx.source_dataset.test):
            if example.label != target and i in folder.test:
                by_text.setdefault(example.text, folder.test[i])
        return [folder.used(by_text[text]) if text in by_text else None for text in texts]


class SynBkd(Replay):
    """Hidden Killer's syntactic trigger, replayed from the authors' SCPN paraphrases."""

    name = "synbkd"
    default_folders = {"sst2-openbackdoor": "poisoned/sst2-openbackdoor/synbkd"}

    @dataclasses.dataclass(frozen=True)
    class Params(Replay.Params):
        mode: Literal["mix", "dirty", "clean"] = "mix"  # HiddenKiller's released data: both classes


class StyleBkd(Replay):
    """StyleBkd's Bible style, replayed from the authors' STRAP transfers."""

    name = "stylebkd"
    default_folders = {"sst2-openbackdoor": "poisoned/sst2-openbackdoor/stylebkd-bible"}

    @dataclasses.dataclass(frozen=True)
    class Params(Replay.Params):
        mode: Literal["mix", "dirty", "clean"] = "dirty"  # the paper: non-target rows only
