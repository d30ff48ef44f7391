"""Weight updates computed at every forward pass, and merged into plain weights at the end.

Some methods train a model whose weights are a function of a few free tensors: LoRA's
``W0 + (alpha/rank)·B·A`` with ``W0`` frozen (methods.md F1), MuScleLoRA's multi-scale update
``W0 + s·R·diag(k)·L`` (F3), Moderate-fitting's reparameterisation, where every ``A`` and the
task head are slices of one tiny generator network's output (F2). This module expresses each as a
``torch.nn.utils.parametrize`` parametrization of the module's ``weight`` (or ``bias``): the
model's own forward pass (training, evaluation, hooks) sees the effective weight, the shared
training loop trains the free tensors (they are the model's only parameters that require
gradients under :func:`trainable_factors`), and :func:`merge_updates` writes the effective weights back as
plain parameters, so the model leaves the method as the plain model it was: nothing of this module
in its class, state dict or store folder. The merge is exact (the forward pass computed the same
tensor), unlike a separate adapter path.

* :class:`LowRank`: ``W0 + scale·B·A``, ``A`` ``[rank, in]`` Kaiming-uniform (a = √5, loralib's and
  peft's init), ``B`` ``[out, rank]`` zero, so step 0 is the base weight.
* :class:`MultiScale`: ``W0 + scale·R·diag(k)·L``, ``L`` ``[n·q, in]`` and ``R`` ``[out, n·q]`` both
  Kaiming-uniform (a = √5), ``k`` the scales, each repeated ``q`` times (MuScleLoRA's MSLR layer).
* :class:`Generated`: a slice of a shared :class:`ParamGenerator`'s output, reshaped; the original
  tensor is ignored (Moderate-fitting).
* A factor's shape follows the module: transformers' ``Conv1D`` (GPT-2) stores its weight as
  ``[in, out]``, so its update is transposed (:func:`linear_shape`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch.nn.utils import parametrize

from ..base.errors import UsageError


def linear_shape(module: torch.nn.Module) -> tuple[int, int, bool]:
    """``(in_features, out_features, transposed)`` of a ``Linear`` or transformers ``Conv1D``."""
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features, False
    if type(module).__name__ == "Conv1D":
        rows, cols = module.weight.shape  # Conv1D: y = x @ W + b, W [in, out]
        return rows, cols, True
    raise UsageError(f"a low-rank update needs a Linear or Conv1D module, not {type(module).__name__}")


def kaiming_uniform(shape: Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch.nn.init.kaiming_uniform_(a=√5)``: U(±1/√fan_in), fan_in = ``shape[1]``, seeded."""
    bound = 1.0 / math.sqrt(shape[1])
    return (torch.rand(tuple(shape), generator=generator) * 2 - 1) * bound


class LowRank(torch.nn.Module):
    """``W0 + scale·B·A`` (module docstring). With ``sources`` (two :class:`Generated`), ``A`` and
    ``B`` are generated instead of free (Moderate-fitting's reparameterised LoRA)."""

    def __init__(self, module: torch.nn.Module, rank: int, scale: float, generator: torch.Generator | None = None,
                 *, sources: tuple[Generated, Generated] | None = None):
        super().__init__()
        fan_in, fan_out, self.transposed = linear_shape(module)
        self.scale = scale
        if sources is None:
            self.A = torch.nn.Parameter(kaiming_uniform((rank, fan_in), generator))
            self.B = torch.nn.Parameter(torch.zeros(fan_out, rank))
        else:
            self.sources = torch.nn.ModuleList(sources)

    def delta(self) -> torch.Tensor:
        a, b = (self.A, self.B) if not hasattr(self, "sources") else (s.value() for s in self.sources)
        update = self.scale * (b @ a)
        return update.t() if self.transposed else update

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original + self.delta().to(original.dtype)


class MultiScale(torch.nn.Module):
    """``W0 + scale·R·diag(k)·L`` (module docstring): ``scales`` the list ``k`` before repetition,
    ``inner_rank`` the repetition ``q``."""

    def __init__(self, module: torch.nn.Module, scales: Sequence[float], inner_rank: int, scale: float,
                 generator: torch.Generator | None = None):
        super().__init__()
        fan_in, fan_out, self.transposed = linear_shape(module)
        width = len(scales) * inner_rank
        self.scale = scale
        self.register_buffer("k", torch.tensor([float(s) for s in scales for _ in range(inner_rank)]))
        self.L = torch.nn.Parameter(kaiming_uniform((width, fan_in), generator))
        self.R = torch.nn.Parameter(kaiming_uniform((fan_out, width), generator))

    def delta(self) -> torch.Tensor:
        update = self.scale * (self.R @ (self.L * self.k[:, None]))
        return update.t() if self.transposed else update

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original + self.delta().to(original.dtype)


class ParamGenerator(torch.nn.Module):
    """A learnt vector ``e`` (``in_dim``) through ``Linear(in_dim → mid_dim) → tanh →
    Linear(mid_dim → size)``, both without bias: one flat vector of ``size`` values, sliced by the
    :class:`Generated` parametrizations that share it. ``e`` is U(0, 1) or zero (``zero_input``:
    the output is then zero, tanh(0) = 0); the Linear layers take PyTorch's default init
    (Kaiming-uniform, a = √5), seeded by ``generator``."""

    def __init__(self, size: int, in_dim: int, mid_dim: int, *, zero_input: bool,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.size = size
        self.embedding = torch.nn.Parameter(torch.zeros(in_dim) if zero_input
                                            else torch.rand(in_dim, generator=generator))
        self.hidden = torch.nn.Parameter(kaiming_uniform((mid_dim, in_dim), generator))
        self.out = torch.nn.Parameter(kaiming_uniform((size, mid_dim), generator))

    def forward(self) -> torch.Tensor:
        return self.out @ torch.tanh(self.hidden @ self.embedding)


class Generated(torch.nn.Module):
    """The tensor ``generator()[start:start + numel]`` reshaped to the original's shape."""

    def __init__(self, source: ParamGenerator, start: int, shape: torch.Size):
        super().__init__()
        self.source = source
        self.start, self.shape = start, tuple(shape)

    def value(self) -> torch.Tensor:
        return self.source()[self.start:self.start + math.prod(self.shape)].view(self.shape)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return self.value().to(original.dtype)


def parametrize_tensor(module: torch.nn.Module, tensor_name: str, parametrization: torch.nn.Module) -> None:
    """Compute ``module.<tensor_name>`` through ``parametrization`` from now on; the original
    tensor stays as a frozen input (``requires_grad`` False) until :func:`merge_updates`."""
    original = getattr(module, tensor_name)
    was_trainable = original.requires_grad
    parametrization.to(original.device)
    parametrize.register_parametrization(module, tensor_name, parametrization, unsafe=True)
    plist = module.parametrizations[tensor_name]
    plist.original.requires_grad_(False)
    plist.original_requires_grad = was_trainable  # restored by merge


def update_factors(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The free tensors of every parametrization in ``model`` that require gradients (each once,
    in module order; a frozen tensor a parametrization holds, such as a parametrized module
    inside it, is not one)."""
    seen, out = set(), []
    for module in model.modules():
        if not parametrize.is_parametrized(module):
            continue
        for plist in module.parametrizations.values():
            for parametrization in plist:  # the parametrizations' own tensors, not `original`
                for param in parametrization.parameters():
                    if param.requires_grad and id(param) not in seen:
                        seen.add(id(param))
                        out.append(param)
    return out


def trainable_factors(model: torch.nn.Module):
    """A ``trainable`` filter for the training loop: the parametrizations' free tensors only."""
    ids = {id(p) for p in update_factors(model)}
    return lambda name, param: id(param) in ids


@torch.no_grad()
def merge_updates(model: torch.nn.Module) -> list[str]:
    """Replace every parametrized tensor in ``model`` by its current effective value, as a plain
    parameter (``leave_parametrized``) that requires gradients as the original did; returns the
    ``module.tensor`` names merged. Outer parametrizations first: one that reads another module's
    parametrized weight (a two-layer head folded into one) takes it with it."""
    merged = []
    while True:
        found = next(((name, module) for name, module in model.named_modules()
                      if parametrize.is_parametrized(module)), None)
        if found is None:
            return merged
        name, module = found
        for tensor_name in list(module.parametrizations.keys()):
            was_trainable = getattr(module.parametrizations[tensor_name], "original_requires_grad", True)
            parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=True)
            getattr(module, tensor_name).requires_grad_(was_trainable)
            merged.append(f"{name}.{tensor_name}" if name else tensor_name)


def modules_named(model: torch.nn.Module, names: Iterable[str]) -> list[tuple[str, torch.nn.Module]]:
    """Every module of ``model`` whose dotted name is one of ``names`` or ends with ``.<name>``
    (peft's matching of target modules), in module order."""
    wanted = tuple(names)
    return [(n, m) for n, m in model.named_modules()
            if any(n == w or n.endswith("." + w) for w in wanted)]


@torch.no_grad()
def spectral_ratios(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[float]:
    """``σ_max(W_after − W_before) / σ_max(W_before)`` of every matrix named in ``before`` that
    changed (RoRA's diagnostic of an update's size, methods.md F1; the caller leaves out tensors
    whose update is not a low-rank one, such as a task head trained in full)."""
    out = []
    for name, w0 in before.items():
        delta = after[name].detach().float().cpu() - w0.float().cpu()
        if torch.any(delta):
            out.append(float(torch.linalg.matrix_norm(delta, ord=2) / torch.linalg.matrix_norm(w0.float().cpu(), ord=2)))
    return out
