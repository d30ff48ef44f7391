"""LoRA as a training mode of the one training loop (methods.md F1), through ``peft``.

With ``TrainConfig.lora_rank`` set, :func:`benchmark.model.training.train` attaches LoRA adapters
(:func:`attach`), trains only them and the task head, and merges them into the weights at the end
(:func:`merge`), so that the phase returns a plain model: the next phase and the store see
``W = W0 + (alpha / rank) · B · A`` and nothing of peft.

* **Adapter** (peft's ``LoraConfig``): ``A`` Kaiming-uniform, ``B`` zero, so step 0 is the base
  model; forward ``W0·x + (alpha/rank)·B·A·dropout(x)``. bdbench's defaults (methods.md F1 [rec]):
  rank 8, alpha 32, dropout 0 (MuScleLoRA's PLM values).
* **Targets** (``lora_targets``): ``default`` is peft's own per-family table
  (``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``: BERT, RoBERTa, ELECTRA ``query``,
  ``value``; DeBERTa-v2 ``query_proj``, ``value_proj``; GPT-2 the fused ``c_attn``; Llama, Qwen2
  ``q_proj``, ``v_proj``), with DistilBERT, which peft's table lacks, given ``q_lin``, ``v_lin``;
  ``attention_ffn`` is every attention and FFN projection (:data:`WIDE_TARGETS`); anything else is
  a comma-separated list of module names.
* **The task head is trained in full** (peft's ``modules_to_save``: the modules of
  :func:`benchmark.model.architecture.task_head`, e.g. BERT's ``classifier``, a decoder's
  ``score``). BERT's ``pooler`` stays frozen, as in peft's sequence-classification default.
* **Merge parity**: :func:`merge` checks the merged model's logits against the adapted model's on
  a fixed probe batch, in float32 eval mode: max |difference| ≤ :data:`PARITY_ATOL` with the same
  argmax, or a :class:`~benchmark.base.errors.TrainingError` (methods.md F1: merged and unmerged
  models have been seen to disagree).
"""

from __future__ import annotations

import dataclasses

import torch

from ..base.errors import TrainingError, UsageError
from .architecture import architecture, task_head

DISTILBERT_TARGETS = ("q_lin", "v_lin")
WIDE_TARGETS = {
    "bert": ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"),
    "roberta": ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"),
    "electra": ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"),
    "distilbert": ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
    "deberta-v2": ("query_proj", "key_proj", "value_proj", "attention.output.dense", "intermediate.dense",
                   "output.dense"),
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}
PARITY_ATOL = 1e-4


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    """One adapter configuration (the ``lora_*`` fields of a training recipe)."""

    rank: int
    alpha: float = 32.0
    dropout: float = 0.0
    targets: str = "default"


def target_modules(model: torch.nn.Module, targets: str) -> list[str]:
    """The module names LoRA adapts in ``model`` (module docstring); a :class:`UsageError` for a
    family with no known table or a name that matches no module."""
    model_type = getattr(model.config, "model_type", "")
    if targets in ("default", "attention_ffn"):
        if targets == "attention_ffn":
            found = WIDE_TARGETS.get(model_type)
        elif model_type == "distilbert":
            found = DISTILBERT_TARGETS
        else:
            from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

            found = DEFAULTS.get(model_type)
        if not found:
            raise UsageError(f"lora_targets {targets!r}: no target table for victim {architecture(model)}; "
                             "name the modules (lora_targets = \"query,value\")")
        return list(found)
    names = [name.strip() for name in targets.split(",") if name.strip()]
    modules = [name for name, _ in model.named_modules()]
    missing = [name for name in names if not any(m == name or m.endswith("." + name) for m in modules)]
    if not names or missing:
        raise UsageError(f"lora_targets {targets!r}: no module of victim {architecture(model)} is named "
                         f"{', '.join(missing) or 'anything'}")
    return names


def attach(model: torch.nn.Module, spec: LoraSpec):
    """``model`` with LoRA adapters injected in place (peft's ``get_peft_model``): only the
    adapters and the task head require gradients. Returns the peft wrapper, for :func:`merge`."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise UsageError(f"LoRA training needs peft ({exc}); pip install peft") from None
    config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=target_modules(model, spec.targets),
                        modules_to_save=[name for name, _ in task_head(model)],
                        fan_in_fan_out=getattr(model.config, "model_type", "") == "gpt2")  # GPT-2's Conv1D
    return get_peft_model(model, config)


@torch.no_grad()
def _logits(model: torch.nn.Module, probe: dict) -> torch.Tensor:
    return model(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).logits.float()


@torch.no_grad()
def merge(adapted, model: torch.nn.Module, probe: dict | None) -> None:
    """Merge the adapters into ``model``'s weights (peft's ``merge_and_unload``, in place: ``model``
    is again the plain model it was, its weights changed) and check parity on ``probe`` (a batch
    on the model's device; None: no check)."""
    was_training = model.training
    model.eval()
    before = _logits(adapted, probe) if probe is not None else None
    merged = adapted.merge_and_unload()
    if merged is not model:  # peft unloads in place; a copy would leave the caller's model adapted
        raise TrainingError("LoRA merge returned another model object than the one trained")
    if before is not None:
        after = _logits(model, probe)
        gap = float((after - before).abs().max())
        if gap > PARITY_ATOL or not torch.equal(after.argmax(-1), before.argmax(-1)):
            raise TrainingError(f"LoRA merge changed the model's outputs (max |logit difference| {gap:.2e} > "
                                f"{PARITY_ATOL:g}, or another argmax) on {len(after)} probe inputs")
    model.train(was_training)
