"""Where and how tensors run: device and precision, resolved once per run.

:func:`resolve_runtime` also fixes glibc's mmap threshold (:func:`return_freed_memory`): glibc
raises the threshold each time a large block is freed, so that later tensors of a training loop
come from the heap, whose freed holes the process keeps; a fixed threshold maps every large tensor
on its own and gives it back on free, and the resident set stays near what is live.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Literal

import torch

from .errors import UsageError

Precision = Literal["bf16", "fp32"]


MMAP_THRESHOLD = 128 * 1024  # bytes: glibc's initial default, kept fixed


@functools.cache
def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold (module docstring); False where there is no glibc."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, MMAP_THRESHOLD))  # M_MMAP_THRESHOLD; 1 on success
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AMX or AVX-512 BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


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
    """``auto`` picks CUDA when present, and bf16 autocast where the hardware runs it natively."""
    return_freed_memory()
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
