"""Provenance for records: versions, git revision, platform and processor."""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from pathlib import Path

from .version import __version__

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout's root when run from one


@functools.cache
def git_revision() -> str | None:
    """The checkout's commit (``+dirty`` with uncommitted changes to tracked files), or None
    where bdbench does not run from a checkout (an installed wheel has no revision to name)."""
    root = PROJECT_ROOT
    if not (root / "pyproject.toml").is_file() or not (root / ".git").exists():
        return None
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def git_diff_digest() -> str | None:
    """SHA-256 of ``git diff HEAD`` (the uncommitted changes to tracked files) when the checkout is
    dirty, else None: it tells apart two ``+dirty`` records of one revision, never rewritten later."""
    revision = git_revision()
    if revision is None or not revision.endswith("+dirty"):
        return None
    try:
        diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=PROJECT_ROOT, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return hashlib.sha256(diff.stdout).hexdigest() if diff.returncode == 0 else None


@functools.cache
def library_versions() -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


@functools.cache
def _cpuinfo() -> str:
    """``/proc/cpuinfo`` (Linux), or "" where there is none."""
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return ""


@functools.cache
def processor() -> str | None:
    """The CPU's model name, so that CPU seconds from different machines are not read as one.

    ``platform.processor()`` gives only the architecture on Linux; ``/proc/cpuinfo`` names the model.
    None where neither says more than the architecture.
    """
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip() or None
    name = platform.processor()
    return name if name and name != platform.machine() else None


# The CPU features that choose the bf16 and fp32 matmul kernels (oneDNN's AMX, AVX-512 BF16, AVX-512,
# AVX2 paths): two machines that differ in these can train different weights from the same seed,
# whatever their model names say (results/README.md, "Reproducibility across machines").
KERNEL_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")


def kernel_flags(cpuinfo: str) -> str | None:
    """Of :data:`KERNEL_FLAGS`, those the first ``flags`` line of a ``/proc/cpuinfo`` text lists,
    space-separated in that order; None without such a line."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return " ".join(flag for flag in KERNEL_FLAGS if flag in present)
    return None


def processor_kernels() -> str | None:
    """:func:`kernel_flags` of this machine (Linux), else None."""
    return kernel_flags(_cpuinfo())


def provenance(config_hash: str, precision: str, device: str) -> dict:
    out = {"bdbench_version": __version__, "git_revision": git_revision(), "libraries": library_versions(),
           "platform": platform.platform(), "processor": processor(), "config_hash": config_hash,
           "precision": precision, "device_type": device}
    kernels = processor_kernels()
    if kernels is not None:
        out["processor_kernels"] = kernels
    diff = git_diff_digest()
    if diff is not None:
        out["git_diff_sha256"] = diff
    return out
