"""MuScleLoRA: low-rank adaptation with multiple radial scalings and gradients aligned to a small
clean reference set (robust training; methods.md F3).

Wu, Zhang, Cheng, Liu, "Acquiring Clean Language Models from Backdoor Poisoned Datasets by
Downscaling Frequency Space", ACL 2024, https://arxiv.org/abs/2402.12026 (reference code:
https://github.com/ZrW00/MuScleLoRA, GPL-3.0, read, not copied: ``victims/{victim,plms,llms}.py``,
``trainers/ga_trainer.py``, ``plmConfigs/*GA+LoRA+MSLRConfig.json``, ``llmConfigs``). Premise: the
backdoor mapping is lower-frequency than the clean one and is learnt first; scaling the update
down in frequency space, and following only the gradient directions that a clean reference set
agrees with, makes the model learn the clean mapping first.

Algorithm, from the victim's pre-trained weights on the poisoned training set (no flags), with a
reference set carved from the clean dev split:

1. **LoRA** (``lora``) on the base model's default targets (peft's per-family q/v), ``rank`` 8,
   ``alpha`` 32, no dropout; the pre-trained weights frozen. **The task head stays frozen at its
   random initialisation** (the reference sets the classifier's ``requires_grad`` False).
2. **MSLR** (``mslr``): the dense layer next to the head (BERT: ``pooler.dense``; RoBERTa,
   ELECTRA: ``classifier.dense``; DistilBERT: ``pre_classifier``) computes
   ``W0·x + b0 + s·(R·diag(k)·L)·x``, ``W0``, ``b0`` frozen, ``s = mslr_alpha / inner_rank``, ``k``
   the frequency band, each entry repeated ``inner_rank`` times; ``L`` and ``R`` both
   Kaiming-uniform, so the update is not zero at step 0. Decoders (the reference's LLM victims)
   get a new two-layer head ``out(dense(x))`` (both bias-free, PyTorch's default init, frozen) with
   MSLR on ``dense``.
3. **Gradient alignment** (``alignment``), at every step, per trainable tensor: ``g`` the batch's
   gradient, ``g_ref`` the gradient of one random batch (``reference_batch``) of the reference set;
   ``ĝ = |⟨g, g_ref⟩| / ‖g_ref‖² · g_ref``. When the mean of the reference gradients' norms exceeds
   ``min_ref_grad_norm`` and the reference loss ``min_ref_loss``, ``g`` is replaced by ``ĝ``;
   otherwise, from epoch ``ga_epoch`` (0-based) on, by ``(1 − ρ)·ĝ + ρ·g``,
   ``ρ = max_raw_grad_ratio·(e − ga_epoch)/(E − ga_epoch)``; otherwise kept. Then clipping to norm 1
   and the AdamW step.
4. Cross-entropy, AdamW, ``epochs`` at ``lr``, no warm-up, no weight decay; the epoch with the best
   accuracy on the rest of the clean dev split is kept (``select`` ``best_dev``, the reference's
   ``ckpt: best`` with ``defense: true``), or the last.
5. LoRA and MSLR are merged into the weights (exact; the decoder's two-layer head folds into its
   one ``score`` matrix, ``out·(dense + ΔW)``): a plain classifier.

Settings: every unset value (None, or an empty ``freq_band``) takes the reference's per kind of
model. Encoders (``plmConfigs``, bert-base's band): rank 8, alpha 32, band
``1,4,8,12,16,20,24,28``, ``mslr_alpha`` 6, 10 epochs, lr 2e-5, reference set 96, reference batch
32, ``ga_epoch`` 1, ``min_ref_loss`` 0.4. Decoders (``llmConfigs``): rank 2, alpha 8, band
``1,2,3,4``, ``mslr_alpha`` 4, 5 epochs, lr 1e-5, reference set 128, reference batch 16, ``ga_epoch``
0, ``min_ref_loss`` 0. Both: ``inner_rank`` 1, ``max_raw_grad_ratio`` 0.1, ``min_ref_grad_norm``
5e-7; the reference set a random draw (``randomRef: true``) removed from the dev data used to pick
the epoch. The batch size is the shared recipe's (the reference: 32 for encoders, 16 for LLMs).

Departures: no dropout between the decoder head's two layers (the reference: 0.1), since the
head is kept as a weight that folds into one matrix; the reference's bert-base band is used for
every BERT-style encoder (MiniLM included, which the paper does not run); LoRA's update is applied
as ``(W0 + s·B·A)·x`` rather than a parallel path (the same function).

``defense_info``: the epoch kept, its dev accuracy, the reference set's size, and the share of
steps whose gradients were replaced, mixed or kept.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from benchmark import (
    DefenseContext,
    DefenseOutput,
    LowRank,
    MultiScale,
    RobustTrainer,
    Sizes,
    UsageError,
    Workload,
    eval_work,
    hparam,
    is_decoder,
    kaiming_uniform,
    merge_updates,
    modules_named,
    parametrize_tensor,
    pooler,
    target_modules,
    task_head,
    train_work,
    trainable_factors,
    update_factors,
)

ENCODER = dict(rank=8, alpha=32.0, freq_band=(1, 4, 8, 12, 16, 20, 24, 28), mslr_alpha=6.0, epochs=10, lr=2e-5,
               reference_size=96, reference_batch=32, ga_epoch=1, min_ref_loss=0.4)
DECODER = dict(rank=2, alpha=8.0, freq_band=(1, 2, 3, 4), mslr_alpha=4.0, epochs=5, lr=1e-5,
               reference_size=128, reference_batch=16, ga_epoch=0, min_ref_loss=0.0)


class MuScleLoRA(RobustTrainer):
    name = "muscle_lora"
    version = "1"
    requires = frozenset({"poisoned_train", "pretrained_weights", "clean_dev"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        lora: bool = True
        mslr: bool = True
        alignment: bool = True
        rank: int | None = hparam(None, range="[1, )")  # None: 8 (encoders), 2 (decoders)
        alpha: float | None = hparam(None, range="(0, )")  # None: 32, 8
        freq_band: tuple[float, ...] = hparam((), range="(0, )")  # (): the reference's band per kind
        inner_rank: int = hparam(1, range="[1, )")
        mslr_alpha: float | None = hparam(None, range="(0, )")  # None: 6, 4
        epochs: int | None = hparam(None, range="[1, )")  # None: 10, 5
        lr: float | None = hparam(None, range="(0, )")  # None: 2e-5, 1e-5
        reference_size: int | None = hparam(None, range="[1, )")  # None: 96, 128 (from clean dev)
        reference_batch: int | None = hparam(None, range="[1, )")  # None: 32, 16
        ga_epoch: int | None = hparam(None, range="[0, )")  # None: 1, 0
        max_raw_grad_ratio: float = hparam(0.1, range="[0, 1]")
        min_ref_grad_norm: float = hparam(5e-7, range="[0, )")
        min_ref_loss: float | None = hparam(None, range="[0, )")  # None: 0.4, 0
        select: str = hparam("best_dev", choices=("best_dev", "last"))

    def settings(self, model: torch.nn.Module | None) -> dict:
        """The parameters with every unset value taken from the reference's table for the model's
        kind (None: an encoder's)."""
        table = DECODER if model is not None and is_decoder(model) else ENCODER
        values = dataclasses.asdict(self.params)
        return {k: (table[k] if k in table and values[k] in (None, ()) else v) for k, v in values.items()}

    def workload(self, sizes: Sizes) -> Workload:
        """The training run, a reference batch's forward and backward pass at every step (at the
        dev split's mean length), and one evaluation of the selection data per epoch; an encoder's
        settings where a value is unset (the model's kind is not known before it loads)."""
        s = self.settings(None)
        steps = s["epochs"] * math.ceil(sizes.train / sizes.defense_batch_size)
        reference = steps * s["reference_batch"] * sizes.tokens_per("dev") if s["alignment"] else 0.0
        return (Workload(note="an encoder's settings where unset") + train_work(sizes, "train", s["epochs"])
                + Workload(train_tokens=reference) + eval_work(sizes, "dev", s["epochs"]))

    def train(self, ctx: DefenseContext) -> DefenseOutput:
        data = list(ctx.poisoned_train)
        model = ctx.pretrained_model()
        s = self.settings(model)
        dev = list(ctx.clean_dev)
        picked = set(ctx.rng("reference set").sample(range(len(dev)), min(s["reference_size"], len(dev) - 1)))
        reference = [dev[i] for i in sorted(picked)]
        selection = [ex for i, ex in enumerate(dev) if i not in picked]

        self.attach(model, s, ctx)  # every pre-trained weight and the random head stay as they are
        factors = update_factors(model)
        steps_per_epoch = -(-len(data) // ctx.train_config.batch_size)
        counts = {"replaced": 0, "mixed": 0, "kept": 0}
        aligner = self.aligner(reference, factors, s, ctx, steps_per_epoch, counts) if s["alignment"] else None
        best = {"epoch": 0, "accuracy": -1.0, "factors": None}

        def keep_best(model: torch.nn.Module, epoch: int) -> None:
            accuracy = ctx.accuracy(model, selection)
            if s["select"] == "last" or accuracy > best["accuracy"]:
                best.update(epoch=epoch, accuracy=accuracy,
                            factors=[t.detach().clone() for t in factors])

        ctx.finetune(model, data, trainable=trainable_factors(model), before_step=aligner, on_epoch_end=keep_best,
                     epochs=s["epochs"], lr=s["lr"], warmup_ratio=0.0, weight_decay=0.0)
        with torch.no_grad():
            for tensor, value in zip(factors, best["factors"]):
                tensor.copy_(value)
        merge_updates(model)
        steps = max(1, sum(counts.values()))
        info = {"epoch_kept": best["epoch"], "selection_accuracy": round(best["accuracy"], 5),
                "reference_size": len(reference), "selection_size": len(selection),
                **{f"steps_{k}": round(v / steps, 4) for k, v in counts.items()}}
        return DefenseOutput(model, info=info)

    def attach(self, model: torch.nn.Module, s: dict, ctx: DefenseContext) -> None:
        """Steps 1 and 2 of the module docstring, in place."""
        seed = torch.Generator().manual_seed(ctx.rng("adapters").randrange(2**63))
        if s["lora"]:
            for _, module in modules_named(model.base_model, target_modules(model, "default")):
                parametrize_tensor(module, "weight", LowRank(module, s["rank"], s["alpha"] / s["rank"], seed))
        if not s["mslr"]:
            return
        multiscale = (s["freq_band"], s["inner_rank"], s["mslr_alpha"] / s["inner_rank"])
        if is_decoder(model):
            (_, score), = task_head(model)
            parametrize_tensor(score, "weight", TwoLayerHead(score, multiscale, seed))
            return
        dense = mslr_layer(model)
        parametrize_tensor(dense, "weight", MultiScale(dense, *multiscale, generator=seed))

    def aligner(self, reference, factors, s: dict, ctx: DefenseContext, steps_per_epoch: int, counts: dict):
        """Step 3 of the module docstring, as the training loop's ``before_step``."""
        draw = ctx.rng("reference batches")
        encoded = ctx.encode(reference)
        epochs = s["epochs"]

        def align(model: torch.nn.Module, step: int) -> None:
            epoch = step // steps_per_epoch
            params = [t for t in factors if t.grad is not None]
            rows = draw.sample(range(len(reference)), min(s["reference_batch"], len(reference)))
            batch = ctx.batch(encoded, rows)
            with torch.enable_grad(), ctx.runtime.autocast():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                ref_loss = F.cross_entropy(logits.float(), batch["labels"])
            ref_grads = torch.autograd.grad(ref_loss, params, allow_unused=True)
            norms = [g.norm() for g in ref_grads if g is not None]
            norms = [n for n in norms if n > 0]
            mean_norm = float(torch.stack(norms).mean()) if norms else 0.0
            replace = mean_norm > s["min_ref_grad_norm"] and float(ref_loss.detach()) > s["min_ref_loss"]
            mix = not replace and s["max_raw_grad_ratio"] > 0 and epoch >= s["ga_epoch"]
            ratio = s["max_raw_grad_ratio"] * (epoch - s["ga_epoch"]) / max(1, epochs - s["ga_epoch"])
            counts["replaced" if replace else "mixed" if mix else "kept"] += 1
            if not (replace or mix):
                return
            for param, ref in zip(params, ref_grads):
                grad = param.grad
                if ref is None or not bool(grad.any()) or not bool(ref.any()):
                    continue
                aligned = ((grad * ref).sum().abs() / (ref * ref).sum()) * ref
                param.grad = aligned if replace else (1 - ratio) * aligned + ratio * grad

        return align


def mslr_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The dense layer next to an encoder's output layer (module docstring, step 2): the pooler's
    dense where the head reads a pooler (BERT), else the head's first Linear when it has two
    (RoBERTa, ELECTRA ``classifier.dense``; DistilBERT ``pre_classifier``; DeBERTa-v2's pooler)."""
    linears = [m for _, head in task_head(model) for m in head.modules() if isinstance(m, torch.nn.Linear)]
    if len(linears) >= 2:
        return linears[-2]
    base_pooler = pooler(model)
    if base_pooler is not None and isinstance(getattr(base_pooler, "dense", None), torch.nn.Linear):
        return base_pooler.dense
    raise UsageError(f"muscle_lora: no dense layer before the output layer of {type(model).__name__} for MSLR "
                     "(--set muscle_lora.mslr=false trains without it)")


class TwoLayerHead(torch.nn.Module):
    """A decoder's ``score`` weight as ``out·(dense + ΔW)``: the reference's two-layer LLM head,
    ``dense`` and ``out`` frozen at PyTorch's default Linear init, MSLR's ``ΔW`` on ``dense``."""

    def __init__(self, score: torch.nn.Linear, multiscale: tuple, generator: torch.Generator):
        super().__init__()
        hidden, labels = score.in_features, score.out_features
        # nn.Linear's default init, seeded: U(±1/√fan_in), both layers' fan_in = hidden
        self.register_buffer("out", kaiming_uniform((labels, hidden), generator))
        self.dense = torch.nn.Linear(hidden, hidden, bias=False)
        with torch.no_grad():
            self.dense.weight.copy_(kaiming_uniform((hidden, hidden), generator))
        self.dense.weight.requires_grad_(False)
        parametrize_tensor(self.dense, "weight", MultiScale(self.dense, *multiscale, generator=generator))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return (self.out @ self.dense.weight).to(original.dtype)
