"""Cheaper CPU kernels for the training step, with the same mathematics.

On a CPU, ``torch.nn.functional.dropout`` draws each keep/drop decision with ``bernoulli_`` in
the activation's dtype, then multiplies twice (mask, then 1/(1-p)); inside
``scaled_dot_product_attention`` it does the same on every attention map. Drawing is most of
the cost. :func:`keep_mask` draws 64 random bits per four elements instead (torch's own seeded
generator, so the same seed gives the same masks) and compares 15-bit integers with a threshold:
each element is kept independently with probability ``1 - round(p · 2¹⁵) / 2¹⁵`` (p = 0.1 →
0.899994), the distribution of ``nn.Dropout`` up to p's rounding to 1/32768.

:func:`fast_training` swaps these kernels into a model for the duration of a ``train`` call:

* every ``nn.Dropout`` module becomes a :class:`FastDropout` with the same ``p``;
* a model that uses transformers' attention interface (``config._attn_implementation`` of
  ``sdpa`` or ``eager``) gets :func:`attention_forward`: softmax(q·kᵀ·scale + mask) with the
  fast dropout on the attention weights, then ·v, in the autocast dtype. Without dropout
  (evaluation) it defers to the model's own implementation unchanged.

Everything is restored on exit, so saved models, evaluation and the attention maps that
distillation reads are those of the unmodified model. CUDA keeps torch's fused dropout; nothing
is swapped there.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

ATTENTION_NAME = "bdbench_train"  # the name under which attention_forward is registered with transformers
_BITS = 15  # each keep/drop decision compares a uniform 15-bit integer with round(p · 2**15)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A bool tensor of ``shape``: True (keep) with probability 1 − p, each element independently."""
    n = math.prod(shape)
    # int64 random_() yields 63 uniform bits; each int64 is read as four int16 whose low 15 bits are uniform
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()
    pieces = words.view(torch.int16)[:n].view(shape)
    threshold = round(p * (1 << _BITS))
    return pieces.bitwise_and(0x7FFF) >= threshold


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = keep_mask(x.shape, p, x.device)
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        return x.mul(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``nn.functional.dropout`` with the mask from :func:`keep_mask`."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    return _Dropout.apply(x, p)


class FastDropout(torch.nn.Dropout):
    """``nn.Dropout`` drawing its mask with :func:`keep_mask`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-interface signature; q, k, v: B×heads×T×d; returns B×T×heads×d."""
    if dropout == 0.0 or kwargs.get("output_attentions") or kwargs.get("is_causal"):
        return _fallback(module)(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                 **kwargs)
    if key.shape[1] != query.shape[1]:  # grouped key/value heads
        repeat = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(repeat, dim=1), value.repeat_interleave(repeat, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale  # B×h×Tq×Tk
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # True = attend (transformers' sdpa masks)
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:  # additive
            scores = scores + attention_mask[..., : key.shape[-2]]
    weights = torch.softmax(scores, dim=-1).to(value.dtype)
    weights = _Dropout.apply(weights, dropout)
    out = torch.matmul(weights, value)  # B×h×Tq×d
    return out.transpose(1, 2).contiguous(), None


_FALLBACK: dict[int, str] = {}


def _fallback(module: torch.nn.Module):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = _FALLBACK.get(id(module.config), "sdpa")
    if name == "eager":
        import importlib

        return importlib.import_module(type(module).__module__).eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[name]


def _register_attention() -> bool:
    try:
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    except ImportError:
        return False
    if ATTENTION_NAME not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, attention_forward)
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return True


@contextlib.contextmanager
def fast_training(model: torch.nn.Module, device: torch.device) -> Iterator[None]:
    """Swap in the cheaper kernels for the enclosed block (see the module docstring); CPU only."""
    if device.type != "cpu":
        yield
        return
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                fast = FastDropout(child.p, child.inplace)
                fast.train(child.training)
                setattr(parent, name, fast)
                swapped.append((parent, name, child))
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    switch = (before in ("sdpa", "eager") and hasattr(model, "set_attn_implementation")
              and getattr(model, "_can_set_attn_implementation", lambda: True)()  # DeBERTa-v2: its own attention
              and _register_attention())
    if switch:
        _FALLBACK[id(config)] = before
        model.set_attn_implementation(ATTENTION_NAME)
    try:
        yield
    finally:
        for parent, name, child in swapped:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)
        if switch:
            model.set_attn_implementation(before)
            _FALLBACK.pop(id(config), None)
