"""The machine's measured matrix-multiply peak, and a training run's share of it.

:func:`matmul_peak_gflops` times a loop of 2048×2048 products in the given dtype (bf16 where the
runtime trains in bf16, else fp32) at torch's current thread count, on the machine at hand, and
returns the best of a few rounds in GFLOP/s. :func:`training_flops` counts what fine-tuning a
transformer costs by the usual rule: 6 FLOP per non-embedding parameter per real (non-padding)
token, forward 2 and backward 4; attention's own products (∝ length²) are left out, so the share
is a slight under-estimate for long inputs. The share of peak is the ratio of the two rates.
"""

from __future__ import annotations

import functools
import time

import torch


@functools.cache
def _peak(dtype: torch.dtype, threads: int, size: int, device: str) -> float:
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: kernels chosen, pages touched
    best = 0.0
    reps = 4
    for _ in range(3):
        if device != "cpu":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        if device != "cpu":
            torch.cuda.synchronize(device)
        best = max(best, 2 * size**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def matmul_peak_gflops(dtype: torch.dtype = torch.bfloat16, size: int = 2048,
                       device: torch.device | str = "cpu") -> float:
    """Best measured GFLOP/s of ``size``² products in ``dtype`` (cached per dtype and thread count)."""
    return _peak(dtype, torch.get_num_threads(), size, str(torch.device(device)))


def non_embedding_parameters(model: torch.nn.Module) -> int:
    """Parameters outside ``nn.Embedding`` modules (word, position and token-type tables)."""
    embedding = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in embedding)


def training_flops(model: torch.nn.Module, tokens: int) -> float:
    """6 × non-embedding parameters × real tokens (see the module docstring)."""
    return 6.0 * non_embedding_parameters(model) * tokens


def share_of_peak(flops: float, seconds: float, peak_gflops: float) -> float:
    """The achieved rate as a share of the peak (0..1, or above 1 if the peak was under-measured)."""
    return flops / seconds / 1e9 / peak_gflops
