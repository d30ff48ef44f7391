"""Distillation losses between transformer encoders, shared by NAD and MBTSAD.

All losses take the student's and the teacher's internals from :func:`forward_internals` and the
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

import contextlib
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F


def ensure_eager_attention(model: torch.nn.Module) -> None:
    """Switch ``model`` to the eager attention implementation for good (SDPA returns no maps);
    :func:`eager_attention` switches it for one block only."""
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module) -> Iterator[None]:
    """Eager attention inside the block, the model's own implementation (SDPA, ...) after it."""
    before = getattr(model.config, "_attn_implementation", "eager")
    ensure_eager_attention(model)
    try:
        yield
    finally:
        if getattr(model.config, "_attn_implementation", "eager") != before:
            model.set_attn_implementation(before)


def forward_internals(model: torch.nn.Module, batch: dict, *, attentions: bool = True, hidden_states: bool = True):
    """Forward pass returning logits plus the requested per-layer internals. Attention maps need
    eager attention: the model runs eager for this pass and keeps its own implementation after."""
    with eager_attention(model) if attentions else contextlib.nullcontext():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     output_attentions=attentions, output_hidden_states=hidden_states)


def resolve_layers(layers: Sequence[int] | None, num_layers: int) -> list[int]:
    """``None`` or empty → every encoder layer 1..L; otherwise checked 1-based indices."""
    if not layers:
        return list(range(1, num_layers + 1))
    for layer in layers:
        if not 1 <= layer <= num_layers:
            raise ValueError(f"layer {layer} is outside 1..{num_layers}")
    return list(layers)


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
