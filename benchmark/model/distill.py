"""Distillation losses between transformer encoders, shared by NAD and MBTSAD.

All losses take the student's and the teacher's internals from
:func:`~benchmark.model.architecture.forward_internals` (both at once: :func:`forward_pair`) and the
batch's ``attention_mask`` (1 = real token), mask padding everywhere, and average over the
chosen layers. Layers are numbered 1..L (encoder layers; ``hidden_states[0]``, the embedding
output, is layer 0 and is never used by default).

* :func:`attention_map_loss` — self-attention maps (post-softmax, B×heads×T×T): MSE over valid
  query/key pairs averaged over heads (TinyBERT style), or row-wise KL(teacher ‖ student).
* :func:`hidden_state_loss` — MSE between hidden states at valid positions.
* :func:`activation_attention_loss` — NAD's activation attention a[pos] = Σ_k |H[pos,k]|^p,
  padding zeroed, L2-normalised over positions, then MSE (Li et al. 2021, adapted).

Pitfall: in train mode, the attention maps HF returns are taken after attention dropout, so
some entries are exactly zero; the KL distance then explodes. Run the teacher in eval mode and,
for the KL distance, the student's attention dropout off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from .architecture import forward_internals


def forward_pair(student: torch.nn.Module, teacher: torch.nn.Module, batch: dict, *, attentions: bool = True,
                 hidden_states: bool = True):
    """The student's and the frozen teacher's :func:`forward_internals` on one batch, the teacher
    without gradients: ``(student_out, teacher_out)``; ``teacher_out`` is None (the teacher not
    run) when neither internal is asked for."""
    out_s = forward_internals(student, batch, attentions=attentions, hidden_states=hidden_states)
    if not (attentions or hidden_states):
        return out_s, None
    with torch.no_grad():
        out_t = forward_internals(teacher, batch, attentions=attentions, hidden_states=hidden_states)
    return out_s, out_t


def attention_map_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], mask: torch.Tensor,
                       layers: Sequence[int], distance: Literal["mse", "kl"] = "mse") -> torch.Tensor:
    """``student``/``teacher``: ``outputs.attentions`` (one B×h×T×T tensor per layer, layer l at l-1)."""
    m = mask.float()
    pair = m[:, None, :, None] * m[:, None, None, :]  # B×1×T×T, valid query × valid key
    heads = student[0].shape[1]
    losses = []
    for layer in layers:
        s, t = student[layer - 1].float(), teacher[layer - 1].float()
        if distance == "mse":
            losses.append(((s - t) ** 2 * pair).sum() / (pair.sum() * heads))
        else:
            row = m[:, None, :]  # valid query rows
            kl = (t * (torch.log(t.clamp_min(1e-12)) - torch.log(s.clamp_min(1e-12))) * pair).sum(-1)
            losses.append((kl * row).sum() / (row.sum() * heads))
    return torch.stack(losses).mean()


def hidden_state_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], mask: torch.Tensor,
                      layers: Sequence[int]) -> torch.Tensor:
    """``student``/``teacher``: ``outputs.hidden_states`` (L+1 tensors B×T×d, index 0 = embeddings)."""
    m = mask.float()[..., None]
    losses = []
    for layer in layers:
        s, t = student[layer].float(), teacher[layer].float()
        losses.append(((s - t) ** 2 * m).sum() / (m.sum() * s.shape[-1]))
    return torch.stack(losses).mean()


def activation_attention(hidden: torch.Tensor, mask: torch.Tensor, p: float = 2.0, eps: float = 1e-8) -> torch.Tensor:
    """NAD's attention of a B×T×d hidden state: B×T, padding zeroed, unit L2 norm per sample."""
    a = hidden.float().abs().pow(p).sum(-1) * mask.float()
    return a / (a.norm(dim=-1, keepdim=True) + eps)


def activation_attention_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], mask: torch.Tensor,
                              layers: Sequence[int], p: float = 2.0) -> torch.Tensor:
    losses = []
    for layer in layers:
        a_s = activation_attention(student[layer], mask, p)
        a_t = activation_attention(teacher[layer], mask, p)
        losses.append(F.mse_loss(a_s, a_t, reduction="sum") / mask.float().sum())
    return torch.stack(losses).mean()
