"""Shared fixtures: a tiny random BERT (built from a config, no download), its word-level
tokenizer, contexts for attacks and defenses, and the real data folder when present. The
builders are :mod:`benchmark.testing`'s, which third-party plugins' tests use too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmark import testing
from benchmark.data.examples import Dataset, Example
from benchmark.model.runtime import Runtime

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_victim_dir(tmp_path_factory) -> Path:
    """A folder with a tiny random BERT classifier and its tokenizer (safetensors)."""
    return testing.tiny_victim(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_victim_dir):
    from benchmark.model.victims import load_tokenizer

    return load_tokenizer(tiny_victim_dir)


@pytest.fixture
def tiny_model(tiny_victim_dir):
    """A factory of fresh tiny classifiers (the same weights each call)."""
    return testing.model_factory(tiny_victim_dir)


@pytest.fixture(scope="session")
def cpu_fp32() -> Runtime:
    return testing.cpu_runtime()


@pytest.fixture(scope="session")
def demo_small() -> Dataset:
    return testing.demo_dataset()


@pytest.fixture
def attack_ctx(tiny_tokenizer, tiny_model, demo_small):
    """An AttackContext over the small demo set and the tiny victim; clean_model is the tiny
    victim fine-tuned on the demo set with FAST_RECIPE."""
    return testing.attack_context(tiny_tokenizer, tiny_model, demo_small)


@pytest.fixture
def make_defense_ctx(tiny_tokenizer, tiny_model, demo_small):
    """Build a DefenseContext granting exactly ``requires`` (as the harness does)."""

    def make(requires=frozenset({"clean_data"}), name="test", clean=None):
        return testing.defense_context(tiny_tokenizer, demo_small, requires, pretrained=tiny_model, clean=clean,
                                       name=name)

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
