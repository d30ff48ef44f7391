"""Where and how tensors run: device and precision, resolved once per run.

**Kernel caches.** On a CPU, bf16 matrix products run through oneDNN, and torch's oneDNN layer
(ideep) and oneDNN itself each keep the kernels they built, keyed by tensor shape (oneDNN keeps
1024 by default). Length-grouped batches give nearly every step new shapes, so both caches fill
with kernels for lengths the loop may never see again: most of a training phase's growth in
resident memory (results/README.md, "Speed and memory", gives the figures).
:func:`bound_kernel_caches` sets both to 16 entries before the first kernel is built
(``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, ``LRU_CACHE_CAPACITY``; values a user has set win): the
kernels of the current batch shape and its neighbours, which the forward and backward passes of
a step and the next length-grouped batches reuse. The numbers do not change: a kernel built again
computes what the cached one did. results/README.md ("Speed and memory") gives the A/B behind the
bound (no cache, 16, 32, 64 and 128 entries).

glibc's allocator is left at its defaults: a fixed mmap threshold (every large tensor mapped on
its own and returned on free) lowers a training phase's peak RSS but slows training, each step's
activations coming from freshly mapped, zero-filled pages; results/README.md ("Speed and
memory") gives the A/B.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from typing import Literal

import torch

from ..base.errors import UsageError

Precision = Literal["bf16", "fp32"]


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AMX or AVX-512 BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


# Entries of oneDNN's primitive cache and of ideep's LRU cache; see the module docstring and
# results/README.md ("Speed and memory") for the A/B behind these values.
KERNEL_CACHES = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16", "LRU_CACHE_CAPACITY": "16"}


def bound_kernel_caches() -> None:
    """Set the kernel-cache capacities of :data:`KERNEL_CACHES` for this process and the
    processes it starts, unless already set. Both libraries read them when they build their
    first kernel, so this must run before any matrix product; later calls change nothing."""
    for name, value in KERNEL_CACHES.items():
        os.environ.setdefault(name, value)


@dataclasses.dataclass(frozen=True)
class Runtime:
    """The device and precision every phase of a run uses."""

    device: torch.device
    precision: Precision

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return "cpu"

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def resolve_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """``auto`` picks CUDA when present, and bf16 autocast where the hardware runs it natively.
    Also bounds the CPU kernel caches (:func:`bound_kernel_caches`)."""
    bound_kernel_caches()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no CUDA device")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
    dev = torch.device(device)
    if precision == "auto":
        if dev.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        else:
            precision = "bf16" if cpu_has_bf16() else "fp32"
    if precision not in ("bf16", "fp32"):
        raise UsageError(f"--precision must be auto, bf16 or fp32, got {precision!r}")
    return Runtime(dev, precision)  # type: ignore[arg-type]
