"""The one training loop that attacks and defenses share.

``train`` fine-tunes a model on an :class:`EncodedSet` with dynamic padding and length-grouped
batches, bf16 autocast where the runtime says so, AdamW (no decay on biases and LayerNorm) with
a linear warm-up then linear decay, gradient clipping, and seeded batch order and dropout.
Methods customise it through three arguments, never by copying it:

* ``loss_fn(model, batch) -> scalar``: the objective (default: cross-entropy on the logits);
* ``trainable(name, param) -> bool``: which parameters the optimiser sees (default: all);
* ``before_step(model, step)``: runs once the step's gradients are accumulated, before clipping
  and the optimiser step (MuScleLoRA's gradient alignment rewrites them);
* ``post_step(model, step)``: runs after every optimiser step (EP's norm projection,
  Fine-pruning's mask).

``on_epoch_end(model, epoch)`` (epoch counted from 1) lets a caller look at the model between
epochs, e.g. to read dev accuracy while choosing an epoch count; it runs outside the training
step's kernels and grad mode, and training resumes after it in train mode.

On a CPU the step runs with the cheaper dropout and attention kernels of :mod:`benchmark.model.kernels`
(same distribution, restored afterwards). On CUDA no step waits for the device: tokens are
counted from the host's lengths and losses are checked for NaN/inf in groups (``CHECK_EVERY``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from ..base import costs
from ..base.errors import EvaluationError, TrainingError
from . import kernels
from .encoding import EncodedSet, batch_order, collate
from .runtime import Runtime

LossFn = Callable[[torch.nn.Module, dict], torch.Tensor]
OptimizerFactory = Callable[[list[tuple[str, torch.nn.Parameter]], "TrainConfig"], torch.optim.Optimizer]
CHECK_EVERY = 32  # on CUDA, losses are checked for NaN/inf every this many steps (and at the end)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A fine-tuning recipe."""

    epochs: int = 2
    lr: float = 2e-5
    batch_size: int = 32
    warmup_ratio: float = 0.1  # share of all steps spent warming up
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0 turns clipping off
    group_by_length: bool = True
    schedule: Literal["linear", "constant"] = "linear"  # linear: warm-up then decay to 0; constant: lr throughout
    # A memory setting, not a change of recipe: a batch holding more padded tokens than this
    # (its size × its longest sequence) runs as equal micro-batches whose losses, each weighted by
    # its share of the batch's samples, accumulate into the batch's one optimiser step. None: whole
    # batches. For a loss that is a mean over samples the step's gradient is the same up to
    # summation order; dropout draws differ, so a value other than None gives other numbers.
    max_batch_tokens: int | None = None
    # LoRA (benchmark.model.lora): a rank trains adapters and the task head only, merged at the
    # end; None is full fine-tuning. alpha, dropout and targets apply only with a rank.
    lora_rank: int | None = None
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    lora_targets: str = "default"  # peft's per-family q/v, "attention_ffn", or "name,name"

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def lora(self):
        """The :class:`benchmark.model.lora.LoraSpec` of this recipe, None without a rank."""
        if self.lora_rank is None:
            return None
        from .lora import LoraSpec

        return LoraSpec(self.lora_rank, self.lora_alpha, self.lora_dropout, self.lora_targets)

    def as_dict(self) -> dict:
        """The recipe's fields; ``max_batch_tokens`` only when set, the ``lora_*`` fields only with
        a rank, so that the cache keys and cell ids of runs without them are those they had before
        they existed."""
        out = dataclasses.asdict(self)
        if out["max_batch_tokens"] is None:
            del out["max_batch_tokens"]
        if out["lora_rank"] is None:
            for key in ("lora_rank", "lora_alpha", "lora_dropout", "lora_targets"):
                del out[key]
        return out


@dataclasses.dataclass
class TrainStats:
    steps: int = 0
    samples: int = 0
    tokens: int = 0
    final_loss: float = float("nan")


def cross_entropy_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits.float(), batch["labels"])


def _param_groups(named: list[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    no_decay = [p for n, p in named if n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n]
    decay = [p for n, p in named if not (n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(model: torch.nn.Module, data: EncodedSet, config: TrainConfig, runtime: Runtime, *, seed: int,
          loss_fn: LossFn = cross_entropy_loss,
          trainable: Callable[[str, torch.nn.Parameter], bool] | None = None,
          post_step: Callable[[torch.nn.Module, int], None] | None = None,
          make_optimizer: OptimizerFactory | None = None,
          on_epoch_end: Callable[[torch.nn.Module, int], None] | None = None,
          before_step: Callable[[torch.nn.Module, int], None] | None = None) -> TrainStats:
    """Fine-tune ``model`` in place on ``data``; returns counts and the last loss.

    ``make_optimizer(named_trainable_params, config)`` replaces AdamW (EP's plain row update).
    """
    if len(data) == 0:
        raise TrainingError("cannot train on an empty data set")
    if config.lora is not None:
        return _train_lora(model, data, config, runtime, seed=seed, loss_fn=loss_fn, trainable=trainable,
                           post_step=post_step, make_optimizer=make_optimizer, on_epoch_end=on_epoch_end,
                           before_step=before_step)
    model.to(runtime.device)
    model.train()
    torch.manual_seed(seed)

    # -- optimiser over the trainable parameters only; the others are frozen for the run
    named = [(n, p) for n, p in model.named_parameters() if trainable is None or trainable(n, p)]
    frozen = [p for n, p in model.named_parameters() if trainable is not None and not trainable(n, p)]
    was_trainable = {id(p): p.requires_grad for _, p in model.named_parameters()}
    for p in frozen:
        p.requires_grad_(False)
    for _, p in named:
        p.requires_grad_(True)
    if make_optimizer is not None:
        optimizer = make_optimizer(named, config)
    else:
        fused = runtime.device.type in ("cpu", "cuda")
        optimizer = torch.optim.AdamW(_param_groups(named, config.weight_decay), lr=config.lr, fused=fused)

    # -- linear warm-up, then linear decay to zero at the last step
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    total_steps = max(1, steps_per_epoch * config.epochs)
    warmup = int(total_steps * config.warmup_ratio)

    def lr_factor(step: int) -> float:
        if config.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    stats = TrainStats()
    lengths = data.lengths
    # Losses wait here until checked for NaN/inf: every step on CPU; on CUDA every CHECK_EVERY
    # steps, since reading a loss back to the host makes the host wait for the device.
    unchecked: list[tuple[int, int, torch.Tensor]] = []  # (step, epoch, loss on the device)
    check_every = 1 if runtime.device.type == "cpu" else CHECK_EVERY
    pin = runtime.device.type == "cuda"

    try:
        for epoch in range(config.epochs):
            with kernels.fast_training(model, runtime.device):
                order = batch_order(lengths, config.batch_size, shuffle=True, group_by_length=config.group_by_length,
                                    seed=seed * 1000 + epoch)
                for indices in costs.progress(order, desc=f"train epoch {epoch + 1}/{config.epochs}"):
                    # -- one step: forward under autocast and backward per micro-batch, clip, step
                    step_loss = None
                    for part in micro_batches(indices, lengths, config.max_batch_tokens):
                        batch = collate(data, part)
                        batch = {k: (v.pin_memory() if pin else v).to(runtime.device, non_blocking=True)
                                 for k, v in batch.items()}
                        with runtime.autocast():
                            loss = loss_fn(model, batch)
                        if len(part) != len(indices):
                            loss = loss * (len(part) / len(indices))
                        loss.backward()
                        step_loss = loss.detach() if step_loss is None else step_loss + loss.detach()
                        del loss, batch
                    unchecked.append((stats.steps, epoch, step_loss))
                    if len(unchecked) >= check_every:
                        _check_finite(unchecked)
                    if before_step is not None:
                        before_step(model, stats.steps)
                    if config.max_grad_norm > 0:
                        torch.nn.utils.clip_grad_norm_([p for _, p in named], config.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    if post_step is not None:
                        post_step(model, stats.steps)
                    # -- book-keeping: samples and real (non-pad) tokens, counted on the host
                    n_tokens = sum(lengths[i] for i in indices)
                    stats.steps += 1
                    stats.samples += len(indices)
                    stats.tokens += n_tokens
                    costs.count(samples=len(indices), tokens=n_tokens)
            if on_epoch_end is not None:
                _check_finite(unchecked)
                unchecked.clear()
                model.eval()
                with torch.no_grad():
                    on_epoch_end(model, epoch + 1)
                model.train()
        last = unchecked[-1][2] if unchecked else step_loss
        _check_finite(unchecked)
        stats.final_loss = float(last)
    finally:
        for _, p in model.named_parameters():
            p.requires_grad_(was_trainable[id(p)])
        model.eval()
    return stats


def _train_lora(model: torch.nn.Module, data: EncodedSet, config: TrainConfig, runtime: Runtime, *, seed: int,
                trainable, **kwargs) -> TrainStats:
    """:func:`train` with LoRA adapters (:mod:`benchmark.model.lora`): attached, trained with the
    task head, merged into ``model`` in place, parity-checked on the first 32 training inputs."""
    from . import lora

    if trainable is not None:
        raise TrainingError("a LoRA recipe (lora_rank) trains the adapters and the task head: it does not take "
                            "a trainable filter as well")
    model.to(runtime.device)
    adapted = lora.attach(model, config.lora)
    adapted_params = {id(p) for p in adapted.parameters() if p.requires_grad}
    try:
        stats = train(adapted, data, dataclasses.replace(config, lora_rank=None), runtime, seed=seed,
                      trainable=lambda name, p: id(p) in adapted_params, **kwargs)
    except BaseException:
        adapted.unload()  # the caller's model without adapters, whatever happened
        raise
    probe = {k: v.to(runtime.device) for k, v in collate(data, list(range(min(32, len(data))))).items()}
    lora.merge(adapted, model, probe)
    return stats


def micro_batches(indices: list[int], lengths, max_tokens: int | None) -> list[list[int]]:
    """``indices`` as one batch, or, when its padded size (count × longest length) exceeds
    ``max_tokens``, as the fewest equal parts (sizes differing by at most one, order kept) that
    each hold at most ``max_tokens`` padded tokens where one sample alone does."""
    if max_tokens is None or len(indices) <= 1:
        return [indices]
    longest = max(lengths[i] for i in indices)
    if len(indices) * longest <= max_tokens:
        return [indices]
    parts = min(len(indices), math.ceil(len(indices) / max(1, max_tokens // longest)))
    size, extra = divmod(len(indices), parts)
    out, start = [], 0
    for k in range(parts):
        end = start + size + (k < extra)
        out.append(indices[start:end])
        start = end
    return out


def _check_finite(unchecked: list[tuple[int, int, torch.Tensor]]) -> None:
    """Raise on the first non-finite loss among ``unchecked`` (one host read for all), then empty it."""
    if not unchecked:
        return
    losses = torch.stack([loss.float().reshape(()) for _, _, loss in unchecked])
    finite = torch.isfinite(losses)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0, 0])
        step, epoch, _ = unchecked[first]
        raise TrainingError(f"non-finite loss ({float(losses[first])}) at step {step} "
                            f"(epoch {epoch + 1}); lower the learning rate or check the data")
    unchecked.clear()


@torch.no_grad()
def predict(model: torch.nn.Module, data: EncodedSet, runtime: Runtime, batch_size: int = 128) -> list[int]:
    """Predicted class per example, in ``data``'s order (batches are length-sorted internally)."""
    model.to(runtime.device)
    model.eval()
    predictions = [0] * len(data)
    for indices in batch_order(data.lengths, batch_size, shuffle=False, group_by_length=True, seed=0):
        batch = collate(data, indices)
        with runtime.autocast():
            logits = model(input_ids=batch["input_ids"].to(runtime.device),
                           attention_mask=batch["attention_mask"].to(runtime.device)).logits
        if not bool(torch.isfinite(logits).all()):  # NaN logits argmax to class 0: never a score
            raise EvaluationError(f"the model's logits are not finite on evaluation ({len(data)} inputs); "
                                  "its weights hold NaN or infinite values")
        for i, label in zip(indices, logits.argmax(-1).tolist()):
            predictions[i] = label
        costs.count(samples=len(indices), tokens=int(batch["attention_mask"].sum()), training=False)
    return predictions


def accuracy(model: torch.nn.Module, data: EncodedSet, runtime: Runtime) -> float:
    if len(data) == 0:
        return float("nan")
    predictions = predict(model, data, runtime)
    return sum(int(p == y) for p, y in zip(predictions, data.labels)) / len(data)
