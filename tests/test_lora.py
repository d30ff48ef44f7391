"""LoRA as a training mode (benchmark/model/lora.py) and the lora_finetune defense, on tiny random
victims: only the adapters and the task head train (every base weight bit-identical before the
merge), the merged model computes what the adapted one did, a phase returns a plain model, and
recipes without a rank keep their cache keys."""

from __future__ import annotations

import pytest
import torch

from benchmark import task_head
from benchmark.base.errors import TrainingError
from benchmark.model import lora
from benchmark.model.encoding import collate, encode
from benchmark.model.training import TrainConfig, train
from benchmark.testing import (
    cpu_runtime,
    defense_context,
    demo_dataset,
    load_tokenizer,
    model_factory,
    run_defense,
    tiny_victim,
)
from defenses.lora_finetune import LoraFineTune

DATA = demo_dataset(0, n_train=64, n_dev=16, n_test=16)
RECIPE = TrainConfig(epochs=2, lr=3e-3, batch_size=16, lora_rank=4, lora_alpha=8)


@pytest.fixture(scope="module", params=["bert", "distilbert", "gpt2", "llama"])
def victim(request, tmp_path_factory):
    folder = tiny_victim(tmp_path_factory.mktemp(request.param), request.param)
    return request.param, folder, load_tokenizer(folder)


def head_names(model):
    return {f"{name}.{key}" for name, module in task_head(model) for key in module.state_dict()}


def test_only_adapters_and_head_train_and_the_base_is_untouched_before_the_merge(victim):
    family, folder, tokenizer = victim
    model = model_factory(folder)()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = encode(tokenizer, DATA.train, 48)
    adapted = lora.attach(model, RECIPE.lora)
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    adapted_ids = {id(p) for p in adapted.parameters() if p.requires_grad}
    train(adapted, data, TrainConfig(epochs=2, lr=3e-3, batch_size=16), cpu_runtime(), seed=0,
          trainable=lambda n, p: id(p) in adapted_ids)
    base = {k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in adapted.state_dict().items()
            if "lora_" not in k and "modules_to_save" not in k and "original_module" not in k}
    for key, value in before.items():
        if key in base and key not in head_names(model):
            assert torch.equal(base[key], value), key  # frozen: bit-identical
    probe = collate(data, list(range(16)))
    adapted.eval()
    with torch.no_grad():
        unmerged = adapted(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).logits
    lora.merge(adapted, model, probe)
    assert type(model).__name__.endswith("ForSequenceClassification")
    assert set(model.state_dict()) == set(before)  # a plain model again: no adapter keys
    with torch.no_grad():
        merged = model(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            merged_bf16 = model(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).logits.float()
    assert (merged - unmerged).abs().max() <= 1e-4
    assert (merged_bf16 - unmerged).abs().max() <= 5e-2  # bf16 tolerance
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    targets = lora.target_modules(model, "default")
    assert changed - head_names(model)
    assert all(any(f".{t}." in k or k.startswith(f"{t}.") for t in targets) for k in changed - head_names(model))


def test_the_training_loop_returns_a_merged_plain_model(victim):
    family, folder, tokenizer = victim
    model = model_factory(folder)()
    keys = set(model.state_dict())
    stats = train(model, encode(tokenizer, DATA.train, 48), RECIPE, cpu_runtime(), seed=0)
    assert stats.steps == 8 and set(model.state_dict()) == keys
    assert not any("lora" in name for name, _ in model.named_modules())


def test_a_merge_that_changes_outputs_fails_loudly(victim, monkeypatch):
    family, folder, tokenizer = victim
    model = model_factory(folder)()
    data = encode(tokenizer, DATA.train, 48)
    adapted = lora.attach(model, RECIPE.lora)
    real = adapted.merge_and_unload

    def lossy(*args, **kwargs):
        merged = real(*args, **kwargs)
        with torch.no_grad():
            for _, module in task_head(merged):
                for p in module.parameters():
                    p.mul_(-1.0)  # the logits negated: another argmax
        return merged

    monkeypatch.setattr(adapted, "merge_and_unload", lossy)
    with pytest.raises(TrainingError, match="LoRA merge changed the model's outputs"):
        lora.merge(adapted, model, collate(data, list(range(16))))


def test_recipes_without_a_rank_keep_their_keys():
    plain = TrainConfig(epochs=3, lr=2e-5)
    assert "lora_rank" not in plain.as_dict() and plain.lora is None
    assert set(RECIPE.as_dict()) - set(plain.as_dict()) == {"lora_rank", "lora_alpha", "lora_dropout", "lora_targets"}
    with pytest.raises(TrainingError, match="does not take a trainable filter"):
        train(torch.nn.Linear(2, 2), encode(load_tokenizer(tiny_victim_dir()), DATA.train[:4], 16), RECIPE,
              cpu_runtime(), seed=0, trainable=lambda n, p: True)


_DIR = {}


def tiny_victim_dir():
    import tempfile

    if "bert" not in _DIR:
        _DIR["bert"] = tiny_victim(tempfile.mkdtemp(), "bert")
    return _DIR["bert"]


def test_unknown_targets_are_named(victim):
    from benchmark import UsageError

    _, folder, _ = victim
    with pytest.raises(UsageError, match="no module of victim .* is named nonesuch"):
        lora.target_modules(model_factory(folder)(), "query,nonesuch" if victim[0] == "bert" else "nonesuch")


def test_lora_finetune_changes_only_targets_and_head(victim):
    family, folder, tokenizer = victim
    pretrained = model_factory(folder)
    model = pretrained()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = defense_context(tokenizer, DATA, LoraFineTune.requires, name="lora_finetune")
    result = run_defense(LoraFineTune(LoraFineTune.Params(rank=4, alpha=8, lr=3e-3)), model, ctx)
    info = result.output.info
    targets = lora.target_modules(result.model, "default")
    changed = {k for k, v in result.model.state_dict().items() if not torch.equal(v, before[k])}
    outside = {k for k in changed - head_names(result.model) if not any(f".{t}." in k for t in targets)}
    assert not outside
    assert info["adapted_matrices"] == 2 * len(targets) and 0 < info["update_to_weight_median"] <= info["update_to_weight_max"]
