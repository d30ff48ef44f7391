"""What this machine does per second: its matrix-multiply peak, and a victim's measured seconds per
training token and per evaluation token (the calibration of the cost model,
:mod:`benchmark.harness.estimate`).

:func:`matmul_peak_gflops` times ``size``² products in a dtype (bf16 where the runtime trains in
bf16, else fp32) at torch's current thread count and returns the best of a few rounds in GFLOP/s.
:func:`training_flops` counts fine-tuning by the usual rule: 6 FLOP per non-embedding parameter per
real (non-padding) token, forward 2 and backward 4; attention's own products (∝ length²) are left
out, so a share of peak is a slight under-estimate for long inputs.

:func:`measure_throughput` runs the shared training loop and the shared prediction loop on a few
real batches of the run's own data, on the run's runtime and thread count: the seconds per real
token it measures include padding, the optimiser, dropout and everything else a phase pays, which
a FLOP count alone does not.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import time

import torch

from .encoding import EncodedSet, batch_order
from .runtime import Runtime
from .training import TrainConfig, predict, train
from .victims import clone_model


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


@dataclasses.dataclass(frozen=True)
class Throughput:
    """Measured seconds per real token of a training step and of a prediction pass, and what they
    are as shares of the machine's matmul peak (``train_share``: 6 FLOP per non-embedding
    parameter per token; ``eval_share``: 2)."""

    train_s_per_token: float
    eval_s_per_token: float
    peak_gflops: float
    train_share: float
    eval_share: float
    threads: int

    def as_dict(self) -> dict:
        return {k: (round(v, 9) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


def _sample_batches(data: EncodedSet, batch_size: int, count: int, seed: int) -> list[int]:
    """The indices of ``count`` whole batches of ``data`` as the training loop forms them
    (length-grouped over the whole set, so their padding is a run's), drawn at random."""
    order = batch_order(data.lengths, batch_size, shuffle=True, group_by_length=True, seed=seed)
    picked = random.Random(seed).sample(range(len(order)), min(count, len(order)))
    return [i for k in picked for i in order[k]]


def measure_throughput(model: torch.nn.Module, data: EncodedSet, runtime: Runtime, *, batch_size: int = 32,
                       batches: int = 3, seed: int = 0) -> Throughput:
    """Seconds per real token of the shared training loop and of :func:`predict` on ``batches``
    batches of ``data`` (each pass run once untimed first), on a copy of ``model``."""
    model = clone_model(model)
    indices = _sample_batches(data, batch_size, batches, seed)
    timed = EncodedSet(tuple(data.input_ids[i] for i in indices), tuple(data.labels[i] for i in indices),
                       data.pad_id)
    config = TrainConfig(epochs=1, batch_size=batch_size, warmup_ratio=0.0)
    # each pass once untimed: the first batch of a shape pays for its kernels (a run meets each
    # shape thousands of times), then timed
    train(model, timed, config, runtime, seed=seed)
    start = time.perf_counter()
    stats = train(model, timed, config, runtime, seed=seed)
    train_s = (time.perf_counter() - start) / max(1, stats.tokens)
    predict(model, timed, runtime, batch_size)
    start = time.perf_counter()
    predict(model, timed, runtime, batch_size)
    eval_s = (time.perf_counter() - start) / max(1, timed.num_tokens)
    dtype = torch.bfloat16 if runtime.precision == "bf16" else torch.float32
    peak = matmul_peak_gflops(dtype, device=runtime.device)
    n = non_embedding_parameters(model)
    return Throughput(train_s, eval_s, peak, share_of_peak(6.0 * n, train_s, peak),
                      share_of_peak(2.0 * n, eval_s, peak), torch.get_num_threads())
