"""NAD: Neural Attention Distillation, adapted to transformer encoders (methods.md B3).

Li, Lyu, Koren, Lyu, Li, Ma, "Neural Attention Distillation: Erasing Backdoor Triggers from Deep
Neural Networks", ICLR 2021, https://arxiv.org/abs/2101.05930 (reference code: bboylyg/NAD).

Algorithm:
1. Teacher T = the backdoored model fine-tuned on the clean data with the shared recipe (exactly
   the ``finetune`` baseline, methods.md B1); then frozen (no gradients) and kept in eval mode.
2. Student S = the backdoored model, trained with the shared recipe on
   ``L = CE(S(x), y) + β · mean_{l∈Λ} L_AT^l(S, T)``.
   Variant A (default, NAD-faithful): the activation attention of hidden state H_l,
   a[pos] = Σ_k |H_l[pos,k]|^p (p = 2), padding zeroed, L2-normalised over positions, MSE
   between student and teacher. Variant B (``variant="attention_map"``): MSE between the
   self-attention maps over valid query/key pairs, averaged over heads (TinyBERT style).
   The losses are ``benchmark.model.distill``'s.
3. Return the student; the teacher goes to the harness as ``aux_models["teacher"]`` so that its
   own CACC and ASR are recorded (a teacher that kept the backdoor transfers it back).

β: methods.md asks for β scaled so that the transfer term is about equal to CE at step 0. With
``beta=None`` (default) the plugin does exactly that: before training it measures, over the clean
data in eval mode, the student's CE (ce_0) and the transfer loss (at_0), and sets β = ce_0 / at_0.
What we measured (MiniLM-L6 backdoored on 2000 SST-2 samples, 400 clean samples, mean length 25
word-pieces): ce_0 = 0.090 and at_0 = 4.3e-5 under BadNets (β ≈ 2.1e3), ce_0 = 0.039 and
at_0 = 2.6e-5 under EP (β ≈ 1.5e3), inside methods.md's 10²–10⁴ grid. After LayerNorm the
activation attention is flat but not degenerate: the per-token energy Σ_k H² varies by 15–30%
(coefficient of variation, least in the middle layers) and ‖â − uniform‖² is 0.02–0.10 per
sentence over layers 1–6. Student and teacher (one FT apart) differ far less than that, so the
un-scaled term would vanish beside CE. The figures of each run are in the
record (``defense_info``: ce_step0, at_step0, beta). A fixed ``beta`` overrides the calibration
(methods.md grid: 10²–10⁴ for variant A, 1–100 for variant B).

Defaults and departures: CNN hyper-parameters (SGD, lr 0.1, 20 epochs, β = 500–5000) are not
transferable to BERT (methods.md B3 pitfall); the shared defense recipe (AdamW, lr 2e-5, 3
epochs, batch 32) is used for teacher and student alike. Layers Λ: every encoder layer by default
(the reference uses the three residual groups of a WRN). The last student checkpoint is returned
(selecting on clean dev would need ``clean_dev``; NAD needs only ``clean_data``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F

from benchmark import (
    Defense,
    DefenseContext,
    DefenseOutput,
    PluginError,
    Sizes,
    Workload,
    activation_attention_loss,
    attention_map_loss,
    eval_work,
    forward_internals,
    forward_pair,
    hparam,
    resolve_layers,
    train_work,
)


class NAD(Defense):
    name = "nad"
    version = "1"
    requires = frozenset({"clean_data"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        beta: float | None = hparam(None, range="[0, )")  # None: β = CE/L_AT at step 0 (methods.md B3); else fixed (A: 1e2–1e4)
        variant: Literal["activation", "attention_map"] = "activation"  # methods.md B3 variant A (default) or B
        layers: tuple[int, ...] = hparam((), range="[1, )")  # 1-based encoder layers Λ; empty = all (methods.md B3 default)
        p: float = hparam(2.0, range="(0, )")  # exponent of the activation attention (NAD reference code: p = 2)
        teacher_lr: float | None = hparam(None, range="(0, )")  # None: the shared defense recipe's lr (Budget.defense_training), teacher = FT baseline
        teacher_epochs: int | None = hparam(None, range="[1, )")  # None: the shared defense recipe's epochs; methods.md says 3–5
        lr: float | None = hparam(None, range="(0, )")  # student lr; None: the shared defense recipe's
        epochs: int | None = hparam(None, range="[1, )")  # student epochs; None: the shared recipe's (3)

    def workload(self, sizes: Sizes) -> Workload:
        """The teacher's fine-tuning, then the student's, with the frozen teacher's forward pass at
        every student step."""
        p = self.params
        teacher = p.teacher_epochs if p.teacher_epochs is not None else sizes.defense_epochs
        student = p.epochs if p.epochs is not None else sizes.defense_epochs
        return (train_work(sizes, "clean", teacher) + train_work(sizes, "clean", student)
                + eval_work(sizes, "clean", student))

    def purify(self, model, ctx: DefenseContext):
        p = self.params
        if p.beta is not None and p.beta < 0:
            raise PluginError(f"{self.name}: beta must be >= 0, got {p.beta}")
        layers = resolve_layers(p.layers, model.config.num_hidden_layers, self.name)

        # -- 1. the teacher: FT on the clean data, then frozen in eval mode
        teacher = ctx.train_teacher(model, ctx.clean_data, lr=p.teacher_lr, epochs=p.teacher_epochs)

        def transfer(student_out, teacher_out, mask) -> torch.Tensor:
            if p.variant == "activation":
                return activation_attention_loss(student_out.hidden_states, teacher_out.hidden_states, mask,
                                                 layers, p.p)
            return attention_map_loss(student_out.attentions, teacher_out.attentions, mask, layers, "mse")

        def internals(net, batch):
            return forward_internals(net, batch, attentions=p.variant == "attention_map",
                                     hidden_states=p.variant == "activation")

        def pair(student, batch):
            return forward_pair(student, teacher, batch, attentions=p.variant == "attention_map",
                                hidden_states=p.variant == "activation")

        # -- β: measured magnitudes at step 0 (student = backdoored model, both in eval mode)
        ce0, at0 = _step0_losses(model, teacher, ctx, internals, transfer)
        if p.beta is not None:
            beta = p.beta
        elif at0 > 0 and math.isfinite(ce0 / at0):
            beta = ce0 / at0
        else:
            raise PluginError(f"{self.name}: the transfer loss is {at0} at step 0 (teacher equals student?); "
                              "set beta explicitly")

        # -- 2. the student: CE + β · attention transfer against the frozen teacher
        def loss(student, batch):
            out_s, out_t = pair(student, batch)
            ce = F.cross_entropy(out_s.logits.float(), batch["labels"])
            return ce + beta * transfer(out_s, out_t, batch["attention_mask"])

        stats = ctx.finetune(model, ctx.clean_data, loss_fn=loss, lr=p.lr, epochs=p.epochs)
        info = {"variant": p.variant, "layers": layers, "beta": beta, "beta_calibrated": p.beta is None,
                "ce_step0": ce0, "at_step0": at0, "weighted_at_step0": beta * at0,
                "final_loss": stats.final_loss}
        return DefenseOutput(model, aux_models={"teacher": teacher}, info=info)


def _step0_losses(student, teacher, ctx: DefenseContext, internals, transfer) -> tuple[float, float]:
    """Mean CE of the student and mean transfer loss, over the clean data, both nets in eval mode
    (the teacher is frozen in eval mode already)."""
    def losses(student, batch) -> tuple[float, float, int]:
        out_s, out_t = internals(student, batch), internals(teacher, batch)
        n = len(batch["labels"])
        return (float(F.cross_entropy(out_s.logits.float(), batch["labels"])) * n,
                float(transfer(out_s, out_t, batch["attention_mask"])) * n, n)

    ce_sum = at_sum = 0.0
    count = 0
    for ce, at, n in ctx.evaluate(student, ctx.clean_data, losses, batch_size=ctx.train_config.batch_size):
        ce_sum += ce
        at_sum += at
        count += n
    return ce_sum / count, at_sum / count
