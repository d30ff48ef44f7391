"""Shared fixtures: a tiny random BERT (built from a config, no download), its word-level
tokenizer, contexts for attacks and defenses, and the real data folder when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from benchmark.data import Dataset, Example
from benchmark.demo import DETAILS, INTENSIFIERS, NEGATIVE, OPENERS, POSITIVE, SUBJECTS, make_demo
from benchmark.plugin import AttackContext, DefenseContext
from benchmark.runtime import Runtime
from benchmark.training import TrainConfig

REPO = Path(__file__).resolve().parent.parent
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TRIGGER_WORDS = ["cf", "mn", "bb", "tq", "mb", "ak", "i", "watch", "this", "3d", "movie"]


def tiny_vocab() -> list[str]:
    words = set(TRIGGER_WORDS)
    for phrase in SUBJECTS + POSITIVE + NEGATIVE + INTENSIFIERS + DETAILS + OPENERS:
        for w in phrase.lower().replace(",", " , ").replace(".", " . ").replace("'", " ' ").split():
            words.add(w)
    words.update([",", ".", "'", "not", "at", "all", "is", "and", "but", "first", "overall", "s", "the"])
    letters = "abcdefghijklmnopqrstuvwxyz"
    pieces = [f"##{c}" for c in letters] + [c for c in letters if c not in words]  # every token once
    return SPECIALS + sorted(words) + pieces


@pytest.fixture(scope="session")
def tiny_victim_dir(tmp_path_factory) -> Path:
    """A folder with a tiny random BERT classifier and its tokenizer (safetensors)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(tiny_vocab())}, do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_victim_dir):
    from benchmark.victims import load_tokenizer

    return load_tokenizer(tiny_victim_dir)


@pytest.fixture
def tiny_model(tiny_victim_dir):
    """A factory of fresh tiny classifiers (the same weights each call)."""
    from benchmark.victims import load_classifier

    def make():
        return load_classifier(tiny_victim_dir, 2)

    return make


@pytest.fixture(scope="session")
def cpu_fp32() -> Runtime:
    return Runtime(torch.device("cpu"), "fp32")


@pytest.fixture(scope="session")
def demo_small() -> Dataset:
    full = make_demo(0, n_train=200, n_dev=60, n_test=80)
    return full


FAST_RECIPE = TrainConfig(epochs=8, lr=3e-3, batch_size=16, warmup_ratio=0.1)  # tiny BERT learns demo in ~0.6 s


@pytest.fixture
def attack_ctx(tiny_tokenizer, tiny_model, cpu_fp32, demo_small):
    """An AttackContext over the small demo set and the tiny victim; clean_model is the tiny
    victim fine-tuned on the demo set with FAST_RECIPE."""
    cache = {}

    def clean():
        if "m" not in cache:
            model = tiny_model()
            ctx.finetune(model, demo_small.train)
            cache["m"] = model
        import copy

        return copy.deepcopy(cache["m"])

    ctx = AttackContext(tokenizer=tiny_tokenizer, runtime=cpu_fp32, max_length=64, seed=0, train_config=FAST_RECIPE,
                        dataset=demo_small, target_label=1, pretrained_model=tiny_model, _clean_model=clean,
                        attack_name="test")
    return ctx


@pytest.fixture
def make_defense_ctx(tiny_tokenizer, tiny_model, cpu_fp32, demo_small):
    """Build a DefenseContext granting exactly ``requires`` (as the harness does)."""

    def make(requires=frozenset({"clean_data"}), name="test", clean=None):
        requires = frozenset(requires)
        return DefenseContext(
            tokenizer=tiny_tokenizer, runtime=cpu_fp32, max_length=64, seed=0, train_config=FAST_RECIPE,
            defense_name=name, requires=requires,
            _clean_data=tuple(clean or demo_small.train[:60]) if "clean_data" in requires else None,
            _clean_dev=demo_small.dev if "clean_dev" in requires else None,
            _pretrained=tiny_model if "pretrained_weights" in requires else None,
            _target_label=1 if "target_label" in requires else None,
        )

    return make


def real_data_dir() -> Path | None:
    """``BDBENCH_DATA`` or ``../shared/data`` beside the repository, when it holds SST-2."""
    for candidate in (os.environ.get("BDBENCH_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "sst2-openbackdoor" / "train.tsv").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def real_data() -> Path:
    found = real_data_dir()
    if found is None:
        pytest.skip("real data not found: set BDBENCH_DATA to a folder holding sst2-openbackdoor/ and imdb/")
    return found


@pytest.fixture(scope="session")
def integration_store(tmp_path_factory) -> str:
    """One artifact store for every integration test of the session: the files that use
    ``helpers.INTEGRATION_BUDGET`` build each real-MiniLM scenario once and share it."""
    return str(tmp_path_factory.mktemp("integration-store"))


def examples(pairs) -> tuple[Example, ...]:
    return tuple(Example(t, y) for t, y in pairs)
