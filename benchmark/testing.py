"""Helpers for testing plugins: tiny random victims, contexts like the harness builds, one-call runs.

bdbench's own tests use exactly these, so a third-party plugin's tests can look like the
built-ins'. Nothing here downloads anything: every victim is built from a config in code, with a
tokenizer built from a word list, and saved as safetensors to a folder of your choice.

Victims (one per supported family, :data:`FAMILIES`):

* :func:`tiny_victim` ``(folder, family)`` writes a 2-layer, 32-wide random classifier and its
  tokenizer (every word of the demo data set and the usual trigger words is one word-piece:
  WordPiece for BERT, DistilBERT and ELECTRA, byte-level BPE for RoBERTa, GPT-2 and Qwen2, Unigram
  for DeBERTa-v2, SentencePiece-style BPE (``▁word``) for Llama). Decoders are written as their
  checkpoints ship: GPT-2 and Llama with no pad token, Qwen2 with pad = ``<|endoftext|>`` = EOS,
  so that the victim loader's padding rules are what the tests exercise; :func:`model_factory` gives fresh copies of it and :func:`load_tokenizer` its
  tokenizer, both loaded as the harness loads a victim.

Contexts (CPU, fp32, the demo data set):

* :func:`cpu_runtime`, :func:`demo_dataset`, :data:`FAST_RECIPE`;
* :func:`attack_context` and :func:`defense_context`, which grant a defense exactly what its
  ``requires`` declares, as the harness does;
* :func:`run_attack`, :func:`run_defense`: run a plugin by its kind and check what it returns
  against the contract of its base class.

Harness runs: :data:`TINY_BUDGET` and :func:`run`, which runs cells of the whole pipeline on a
tiny victim folder into a temporary folder (``plugins`` adds classes that are not installed).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from .data.demo import DETAILS, INTENSIFIERS, NEGATIVE, OPENERS, POSITIVE, SUBJECTS, make_demo
from .data.examples import Dataset, Example
from .harness.config import Budget
from .model.runtime import Runtime
from .model.training import TrainConfig
from .model.victims import load_tokenizer
from .plugins.attack import Attack, AttackOutput
from .plugins.contexts import AttackContext, DefenseContext
from .plugins.defense import (
    Calibration,
    DataFilter,
    Defense,
    DefenseOutput,
    InputCorrector,
    InputDetector,
    RobustTrainer,
)
from .plugins.resolve import PluginSpec

__all__ = [
    "DECODER_FAMILIES", "FAMILIES", "FAST_RECIPE", "TINY_BUDGET", "TINY_RECIPE", "TRIGGER_WORDS", "AttackRun", "DefenseRun",
    "attack_context", "cells", "cpu_runtime", "defense_context", "demo_dataset", "load_tokenizer", "model_factory",
    "run", "run_attack", "run_defense", "tiny_config", "tiny_tokenizer", "tiny_victim", "tiny_vocab", "tiny_words",
]

FAMILIES = ("bert", "roberta", "distilbert", "electra", "deberta-v2", "gpt2", "llama", "qwen2")
DECODER_FAMILIES = ("gpt2", "llama", "qwen2")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TRIGGER_WORDS = ["cf", "mn", "bb", "tq", "mb", "ak", "i", "watch", "this", "3d", "movie"]

FAST_RECIPE = TrainConfig(epochs=8, lr=3e-3, batch_size=16, warmup_ratio=0.1)  # tiny BERT learns demo in ~0.6 s
TINY_RECIPE = TrainConfig(epochs=4, lr=3e-3, batch_size=16, warmup_ratio=0.1)
TINY_BUDGET = Budget(train_limit=200, test_limit=80, dev_limit=40, max_length=48,
                     victim_training=TINY_RECIPE, defense_training=TrainConfig(epochs=1, lr=1e-3, batch_size=16))


# --------------------------------------------------------------------------- tiny victims

def tiny_words() -> list[str]:
    """Every lower-case word of the demo data set, the trigger words and the punctuation, sorted."""
    words = set(TRIGGER_WORDS)
    for phrase in SUBJECTS + POSITIVE + NEGATIVE + INTENSIFIERS + DETAILS + OPENERS:
        for w in phrase.lower().replace(",", " , ").replace(".", " . ").replace("'", " ' ").split():
            words.add(w)
    words.update([",", ".", "'", "not", "at", "all", "is", "and", "but", "first", "overall", "s", "the"])
    return sorted(words)


def tiny_vocab() -> list[str]:
    """The WordPiece vocabulary of the tiny BERT-style tokenizers (index = token id)."""
    words = set(tiny_words())
    letters = "abcdefghijklmnopqrstuvwxyz"
    pieces = [f"##{c}" for c in letters] + [c for c in letters if c not in words]  # every token once
    return SPECIALS + sorted(words) + pieces


def _word_bpe(prefix: str, specials: Sequence[str], alphabet: Iterable[str]) -> tuple[dict[str, int], list]:
    """A BPE vocabulary and merges over the tiny words: ``specials``, ``alphabet``, then every word
    after its word-start mark ``prefix`` (lower-case and capitalised), built by merges from its
    first character on."""
    vocab: dict[str, int] = {}
    for token in [*specials, *alphabet]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in tiny_words():
        for form in dict.fromkeys((prefix + word, prefix + word.capitalize())):
            for end in range(2, len(form) + 1):
                if form[:end] not in vocab:
                    vocab[form[:end]] = len(vocab)
                    merges.append((form[:end - 1], form[end - 1]))
    return vocab, merges


def _byte_level_bpe(cls_name: str = "RobertaTokenizerFast", specials: Sequence[str] = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")):
    """A byte-level BPE tokenizer (RoBERTa's by default; GPT-2's, Qwen2's) over the tiny words:
    the byte alphabet, then every word after a space (``Ġword``)."""
    import transformers
    from tokenizers.pre_tokenizers import ByteLevel

    vocab, merges = _word_bpe("Ġ", specials, sorted(ByteLevel.alphabet()))
    return getattr(transformers, cls_name)(vocab=vocab, merges=merges)


def _sentencepiece_bpe():
    """Llama's tokenizer kind over the tiny words: ``▁word`` pieces, characters as fallback,
    ``<unk>``, ``<s>``, ``</s>``, no pad token (as Llama checkpoints ship)."""
    from transformers import LlamaTokenizerFast

    alphabet = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,.'!?-▁"))
    vocab, merges = _word_bpe("▁", ("<unk>", "<s>", "</s>"), alphabet)
    return LlamaTokenizerFast(vocab=vocab, merges=merges)


def _unigram():
    """DeBERTa-v2's tokenizer over the tiny words: ``▁word`` pieces, single characters as fallback."""
    from transformers import DebertaV2TokenizerFast

    pieces = [(s, 0.0) for s in SPECIALS] + [("▁" + w, -1.0) for w in tiny_words()]
    known = {p for p, _ in pieces}
    pieces += [(c, -10.0) for c in "▁abcdefghijklmnopqrstuvwxyz0123456789,.'!?-" if c not in known]
    return DebertaV2TokenizerFast(vocab=pieces, unk_id=1, do_lower_case=True)


def tiny_tokenizer(family: str = "bert"):
    """A tokenizer of ``family``'s kind in which every :func:`tiny_words` word is one piece."""
    from transformers import BertTokenizerFast, DistilBertTokenizerFast, ElectraTokenizerFast

    wordpiece = {"bert": BertTokenizerFast, "distilbert": DistilBertTokenizerFast, "electra": ElectraTokenizerFast}
    if family in wordpiece:
        return wordpiece[family](vocab={w: i for i, w in enumerate(tiny_vocab())}, do_lower_case=True)
    if family == "roberta":
        return _byte_level_bpe()
    if family == "deberta-v2":
        return _unigram()
    if family == "gpt2":  # <|endoftext|> is BOS, EOS and UNK; no pad token
        return _byte_level_bpe("GPT2TokenizerFast", ("<|endoftext|>",))
    if family == "qwen2":  # pad = EOS = <|endoftext|>, as Qwen2 ships
        return _byte_level_bpe("Qwen2TokenizerFast", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"))
    if family == "llama":
        return _sentencepiece_bpe()
    raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")


def tiny_config(family: str, tokenizer, num_labels: int = 2):
    """A 2-layer, 2-head, 32-wide config of ``family`` for ``tokenizer`` (BERT: FFN 64, others 37,
    an odd width that no other dimension shares; ELECTRA: 16-wide embeddings, projected; Llama and
    Qwen2: one key-value head, grouped-query attention as in SmolLM2). A decoder's config has the
    tokenizer's pad id, None where it has no pad token (GPT-2 and Llama checkpoints)."""
    from transformers import (
        BertConfig,
        DebertaV2Config,
        DistilBertConfig,
        ElectraConfig,
        GPT2Config,
        LlamaConfig,
        Qwen2Config,
        RobertaConfig,
    )

    size = dict(vocab_size=len(tokenizer), num_labels=num_labels, pad_token_id=tokenizer.pad_token_id)
    layers = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                  max_position_embeddings=128)
    if family == "bert":
        return BertConfig(**size, **{**layers, "intermediate_size": 64})
    if family == "roberta":  # positions start after the padding index
        return RobertaConfig(**size, **{**layers, "max_position_embeddings": 130}, type_vocab_size=1,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if family == "distilbert":
        return DistilBertConfig(**size, dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=128)
    if family == "electra":
        return ElectraConfig(**size, **layers, embedding_size=16)
    if family == "deberta-v2":
        return DebertaV2Config(**size, **layers, pooler_hidden_size=32, relative_attention=True,
                               pos_att_type=["p2c", "c2p"], position_buckets=16, max_relative_positions=32)
    ends = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if family == "gpt2":
        return GPT2Config(**size, **ends, n_embd=32, n_layer=2, n_head=2, n_inner=37, n_positions=128)
    decoder = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                   intermediate_size=37, max_position_embeddings=128)
    if family == "llama":
        return LlamaConfig(**size, **ends, **decoder)
    if family == "qwen2":
        return Qwen2Config(**size, **ends, **decoder, tie_word_embeddings=True)
    raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")


def tiny_victim(folder: str | os.PathLike, family: str = "bert", *, num_labels: int = 2, seed: int = 0) -> Path:
    """Write a tiny random ``family`` classifier (weights drawn after ``torch.manual_seed(seed)``)
    and its tokenizer to ``folder``, as safetensors; returns the folder, a victim for any run."""
    from transformers import AutoModelForSequenceClassification

    from .model.victims import save_model

    folder = Path(folder)
    tokenizer = tiny_tokenizer(family)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(seed)
    save_model(AutoModelForSequenceClassification.from_config(tiny_config(family, tokenizer, num_labels)), folder)
    return folder


def model_factory(folder: str | os.PathLike, num_labels: int = 2) -> Callable[[], torch.nn.Module]:
    """Fresh copies of the classifier in ``folder`` (the same weights each call), loaded as the
    harness loads a victim."""
    from .model.victims import load_classifier

    return lambda: load_classifier(folder, num_labels)


# --------------------------------------------------------------------------- contexts

def cpu_runtime() -> Runtime:
    return Runtime(torch.device("cpu"), "fp32")


def demo_dataset(seed: int = 0, n_train: int = 200, n_dev: int = 60, n_test: int = 80) -> Dataset:
    """The generated demo data set (two labels), small by default."""
    return make_demo(seed, n_train=n_train, n_dev=n_dev, n_test=n_test)


def attack_context(tokenizer, pretrained: Callable[[], torch.nn.Module], dataset: Dataset, *,
                   recipe: TrainConfig = FAST_RECIPE, target_label: int = 1, max_length: int = 64, seed: int = 0,
                   name: str = "test", data_dir: os.PathLike | None = None) -> AttackContext:
    """An :class:`AttackContext` over ``dataset`` (also its ``source_dataset``: no limits);
    ``clean_model()`` is ``pretrained()`` fine-tuned on the training split with ``recipe``
    (trained once, copied on each call); ``data_dir``: the run's data folder."""
    cache: dict[str, torch.nn.Module] = {}

    def clean() -> torch.nn.Module:
        if "model" not in cache:
            model = pretrained()
            ctx.finetune(model, dataset.train)
            cache["model"] = model
        return copy.deepcopy(cache["model"])

    ctx = AttackContext(tokenizer=tokenizer, runtime=cpu_runtime(), max_length=max_length, seed=seed,
                        train_config=recipe, dataset=dataset, source_dataset=dataset,
                        data_dir=Path(data_dir) if data_dir is not None else None, target_label=target_label,
                        pretrained_model=pretrained, _clean_model=clean, attack_name=name)
    return ctx


def defense_context(tokenizer, dataset: Dataset, requires: Iterable[str] = ("clean_data",), *,
                    pretrained: Callable[[], torch.nn.Module] | None = None,
                    clean: Sequence[Example] | None = None, poisoned_train: Sequence[Example] | None = None,
                    recipe: TrainConfig = FAST_RECIPE, target_label: int = 1, max_length: int = 64, seed: int = 0,
                    name: str = "test") -> DefenseContext:
    """A :class:`DefenseContext` granting exactly ``requires``, as the harness does: clean data
    (``clean``, default the first 60 training examples), the dev split, ``pretrained`` weights,
    the target label, a poisoned training set (default the training split)."""
    requires = frozenset(requires)

    def grant(asset: str, value):
        return value if asset in requires else None

    train = tuple(poisoned_train if poisoned_train is not None else dataset.train)
    return DefenseContext(
        tokenizer=tokenizer, runtime=cpu_runtime(), max_length=max_length, seed=seed, train_config=recipe,
        defense_name=name, requires=requires,
        _clean_data=grant("clean_data", tuple(clean or dataset.train[:60])),
        _clean_dev=grant("clean_dev", dataset.dev), _pretrained=grant("pretrained_weights", pretrained),
        _target_label=grant("target_label", target_label),
        _poisoned_train=grant("poisoned_train", tuple(Example(ex.text, ex.label) for ex in train)),
    )


# --------------------------------------------------------------------------- running a plugin

def _expect(condition: bool, message: str) -> None:
    """A contract check of :func:`run_attack` / :func:`run_defense` (an AssertionError, as in a test)."""
    if not condition:
        raise AssertionError(message)


@dataclasses.dataclass(frozen=True)
class AttackRun:
    """What :func:`run_attack` saw: the attack's output and its triggered test texts."""

    output: AttackOutput
    triggered: list[str]
    extra: dict[str, list[str]]


def run_attack(attack: Attack, ctx: AttackContext, texts: Sequence[str] | None = None) -> AttackRun:
    """``check``, ``attack`` and the test-time trigger on ``texts`` (default: the non-target test
    texts), each checked against the :class:`Attack` contract."""
    if texts is None:
        texts = [ex.text for ex in ctx.dataset.test if ex.label != ctx.target_label]
    attack.check(ctx)
    output = attack.attack(ctx)
    _expect(isinstance(output, AttackOutput) and isinstance(output.model, torch.nn.Module),
            f"{attack.name}.attack returned {output!r:.80}, not an AttackOutput holding a model")
    triggered = attack.trigger_texts(list(texts), ctx)
    _expect(len(triggered) == len(texts) and all(t is None or isinstance(t, str) for t in triggered),
            f"{attack.name}.trigger_texts must return one text (or None) per input")
    extra = attack.extra_test_sets(list(texts), ctx)
    _expect(all(len(v) == len(texts) for v in extra.values()), f"{attack.name}.extra_test_sets: one text per input")
    return AttackRun(output, triggered, extra)


@dataclasses.dataclass(frozen=True)
class DefenseRun:
    """What :func:`run_defense` saw. model: the purified model (purification), else the model
    given. scores, calibration: a detector's; texts: a corrector's rewritten inputs; kept: a
    filter's indices. Fields that do not apply are None."""

    model: torch.nn.Module
    output: DefenseOutput | None = None
    scores: list[float] | None = None
    calibration: Calibration | None = None
    texts: list[str] | None = None
    kept: list[int] | None = None


def run_defense(defense: Defense, model: torch.nn.Module, ctx: DefenseContext,
                texts: Sequence[str] | None = None) -> DefenseRun:
    """Run ``defense`` as the harness does for its kind and check what it returns against the
    contract of its base class (``docs/defense-kinds.md``; a robust trainer never sees ``model``). ``texts``: the inputs a detector or
    corrector screens (default: the first 8 test texts of the demo data set)."""
    texts = list(texts) if texts is not None else [ex.text for ex in demo_dataset().test[:8]]
    if isinstance(defense, InputDetector):
        defense.fit(model, ctx)
        calibration = defense.calibrate(model, ctx)
        scores = [float(s) for s in defense.score(model, texts, ctx)]
        _expect(len(scores) == len(texts) and not any(math.isnan(s) for s in scores),
                f"{defense.name}.score must return one number (not NaN) per input")
        return DefenseRun(model, scores=scores, calibration=calibration)
    if isinstance(defense, InputCorrector):
        defense.fit(model, ctx)
        rewritten, scores = defense.correct(model, texts, ctx)
        _expect(len(rewritten) == len(texts) and (scores is None or len(scores) == len(texts)),
                f"{defense.name}.correct must return one text (and one score, or None) per input")
        return DefenseRun(model, scores=None if scores is None else list(scores), texts=list(rewritten))
    if isinstance(defense, DataFilter):
        kept = [int(i) for i in defense.keep(model, ctx)]
        _expect(all(0 <= i < len(ctx.poisoned_train) for i in kept) and len(set(kept)) == len(kept),
                f"{defense.name}.keep must return distinct indices of ctx.poisoned_train")
        return DefenseRun(model, kept=kept)
    if isinstance(defense, RobustTrainer):  # it trains from ctx.pretrained_model(); ``model`` is not given
        result = defense.train(ctx)
    else:
        result = defense.purify(model, ctx)
    output = result if isinstance(result, DefenseOutput) else DefenseOutput(result)
    verb = "train" if isinstance(defense, RobustTrainer) else "purify"
    _expect(isinstance(output.model, torch.nn.Module), f"{defense.name}.{verb} returned {type(result).__name__}")
    return DefenseRun(output.model, output=output)


# --------------------------------------------------------------------------- harness runs

def cells(victim, attacks=("badnets",), defenses=("none",), seeds=(0,), dataset="demo", budget: Budget = TINY_BUDGET):
    """The cells of attacks × seeds × defenses on one victim (by plugin name, no overrides)."""
    from .harness.cells import CellSpec

    return [CellSpec(dataset, str(victim), PluginSpec(a, a), PluginSpec(d, d), s, budget)
            for a in attacks for s in seeds for d in defenses]


def run(tmp_path, victim, registry=None, resume=False, overrides=(), isolation: str = "process",
        plugins: Sequence[tuple[str, str]] = (), stealth_lm: str | None = None, store=None, **kwargs) -> list[dict]:
    """Run :func:`cells` (``kwargs``) on CPU in fp32 with the store and records under
    ``tmp_path``; returns the records. ``plugins``: extra ``(kind, "module:Class")`` plugins;
    ``stealth_lm``: ``--stealth-lm``; ``store``: another store folder (tests sharing scenarios)."""
    from .harness.cells import HarnessConfig
    from .harness.runner import run_cells

    config = HarnessConfig(store_dir=str(store or Path(tmp_path) / "store"), device="cpu", precision="fp32",
                           overrides=overrides, isolation=isolation, plugins=tuple(plugins), stealth_lm=stealth_lm)
    return run_cells(cells(victim, **kwargs), config, Path(tmp_path) / "out", resume=resume, registry=registry)
