"""Fine-mixing and E-PUR: mixing the backdoored weights with the pre-trained ones (methods.md B4).

Zhang, Lyu, Ma, Wang, Sun, "Fine-mixing: Mitigating Backdoors in Fine-tuned Language Models",
Findings of EMNLP 2022, https://arxiv.org/abs/2210.09545. No public code; the abstract fixes the
two steps, the details below are our reading (methods.md B4 marks them [recalled]).

Fine-mixing (``mix=True``):
1. Mix: θ_Mix = θ_Pre + m ⊙ (θ_B − θ_Pre), with m a seeded Bernoulli(ρ) mask over every
   coordinate of every parameter that has a pre-trained counterpart (embeddings, encoder, pooler).
   ρ is the share of θ_B's coordinates kept ("reserve ratio"). The task head has no pre-trained
   counterpart and is kept from θ_B. The mask for every ρ comes from the same uniform draws U
   (m = U < ρ), so a larger ρ keeps a superset of a smaller ρ's coordinates.
2. Fine-tune θ_Mix on the clean data with the shared recipe (methods.md E2).

Choosing ρ (the paper's rule is unknown; our reading): with ``rho`` unset, walk ``rho_grid`` in
increasing order (most purification first), mix and fine-tune, and stop at the first ρ whose clean
dev accuracy after fine-tuning is within ``tolerance`` of the backdoored model's own clean dev
accuracy, i.e. the smallest reserve ratio that does not cost clean accuracy. If none qualifies,
the ρ with the best dev accuracy is returned. Only clean dev data is used. Note that a weak θ_B
(low clean accuracy) makes the first grid point qualify at once. Default grid
{0.1, 0.2, 0.3, 0.5, 0.7} (methods.md B4); ``rho=0.5`` reproduces the fixed setting a later paper
used.

E-PUR (``e_pur=True``; alone with ``mix=False``): every word-piece embedding's drift
δ_i = ‖E_B[i] − E_Pre[i]‖₂ is divided by a frequency normaliser g(f_i), f_i being the token's
count in the defender's clean data (special tokens included); the ``e_pur_top`` highest scores
have their rows reset to E_Pre before fine-tuning. Our reading of the paper's log-frequency
relation (drift of a normally fine-tuned word grows like log f): g(f) = log(2 + f) ("log"), so an
unseen token (f = 0) still divides by log 2; "sqrt" (√(1 + f)) and "none" are alternatives. N = 200
is our reading of "on the order of hundreds". A trigger word moves far yet is rare in clean data,
so it scores high (methods.md A3: this removes EP almost by construction).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Literal

import torch

from benchmark import (
    Defense,
    DefenseContext,
    DefenseOutput,
    PluginError,
    Sizes,
    Workload,
    clone_model,
    eval_work,
    hparam,
    task_head,
    train_work,
    word_embeddings,
)


class FineMixing(Defense):
    name = "fine_mixing"
    version = "1"
    requires = frozenset({"clean_data", "clean_dev", "pretrained_weights"})

    @dataclasses.dataclass(frozen=True)
    class Params:
        rho: float | None = hparam(None, range="[0, 1]")  # kept share of θ_B; None = choose from rho_grid on clean dev
        rho_grid: tuple[float, ...] = hparam((0.1, 0.2, 0.3, 0.5, 0.7), range="[0, 1]", nonempty=True)  # methods.md B4 sweep
        tolerance: float = hparam(0.02, range="[0, )")  # ρ rule: dev acc ≥ dev acc of θ_B − tolerance (our reading)
        mask_seed: int = 0  # mixed with the scenario seed; methods.md: report ≥ 3 mask seeds
        mix: bool = True  # False: no mixing (E-PUR alone when e_pur, else plain FT)
        e_pur: bool = False  # reset the top-scored word embeddings to pre-trained (report both ways)
        e_pur_top: int = hparam(200, range="[0, )")  # N tokens reset (our reading: "hundreds")
        e_pur_normaliser: Literal["log", "sqrt", "none"] = "log"  # g(f): log(2+f), sqrt(1+f), 1
        lr: float | None = hparam(None, range="(0, )")  # None: the shared defense recipe's lr (Budget.defense_training)
        epochs: int | None = hparam(None, range="[1, )")  # None: the shared defense recipe's epochs

    def workload(self, sizes: Sizes) -> Workload:
        """Without a fixed ρ, at most one fine-tuning run and one dev evaluation per grid value (the
        walk stops at the first ρ whose dev accuracy holds: a bound), after the backdoored model's
        own dev accuracy."""
        p = self.params
        epochs = p.epochs if p.epochs is not None else sizes.defense_epochs
        if not p.mix:
            return train_work(sizes, "clean", epochs)
        tries = 1 if p.rho is not None else len(p.rho_grid)
        note = "" if tries == 1 else f"at most {tries} grid values (the walk stops early)"
        return (Workload(note=note) + eval_work(sizes, "dev")
                + (train_work(sizes, "clean", epochs) + eval_work(sizes, "dev")).scaled(tries))

    def purify(self, model, ctx: DefenseContext):
        p = self.params
        grid = sorted(p.rho_grid) if p.rho is None else [p.rho]
        if not grid or any(not 0 <= r <= 1 for r in grid) or p.tolerance < 0 or p.e_pur_top < 0:
            raise PluginError(f"{self.name}: ρ values must lie in [0, 1] (grid non-empty), tolerance >= 0, "
                              f"e_pur_top >= 0; got {p}")
        pretrained = ctx.pretrained_model()
        info: dict = {"mix": p.mix, "e_pur": p.e_pur}
        dev = ctx.encode(ctx.clean_dev)
        reference = ctx.accuracy(model, dev) if p.mix else None  # θ_B's own, before any change
        if p.e_pur:
            tokens, scores = e_pur_select(model, pretrained, ctx.encode(ctx.clean_data).input_ids,
                                          p.e_pur_top, p.e_pur_normaliser)
            e_pur_reset(model, pretrained, tokens)
            names = ctx.tokenizer.convert_ids_to_tokens(tokens[:20])
            info.update(e_pur_reset=len(tokens),
                        e_pur_top_tokens=[[n, round(s, 4)] for n, s in zip(names, scores[:20])])
        if not p.mix:
            ctx.finetune(model, ctx.clean_data, lr=p.lr, epochs=p.epochs)
            return DefenseOutput(model, info=info)

        # -- walk the grid (increasing ρ), mixing and fine-tuning, until dev accuracy holds
        seed = ctx.seed * 1_000_003 + p.mask_seed
        tried, best = [], None
        for rho in grid:
            candidate = clone_model(model)
            kept = mix_weights(candidate, pretrained, rho, seed)
            ctx.finetune(candidate, ctx.clean_data, lr=p.lr, epochs=p.epochs)
            acc = ctx.accuracy(candidate, dev)
            tried.append({"rho": rho, "kept_share": round(kept, 4), "dev_acc": round(acc, 4)})
            if best is None or acc > best[1]:
                best = (rho, acc, candidate)
            if p.rho is not None or acc >= reference - p.tolerance:
                best = (rho, acc, candidate)
                break
        info.update(rho=best[0], dev_acc=round(best[1], 4), dev_acc_backdoored=round(reference, 4),
                    rho_selected=p.rho is None, tried=tried, mask_seed=p.mask_seed)
        return DefenseOutput(best[2], info=info)


# --------------------------------------------------------------------------- mixing

def _head_ids(model) -> set[int]:
    """The task head's parameters (outside the base model), which have no pre-trained counterpart."""
    return {id(q) for _, module in task_head(model) for q in module.parameters()}


@torch.no_grad()
def mix_weights(model, pretrained, rho: float, seed: int) -> float:
    """θ ← θ_Pre + m ⊙ (θ − θ_Pre) in place, m ~ Bernoulli(ρ) from seeded uniforms (the head is
    kept). Returns the share of mixable coordinates kept from ``model``."""
    generator = torch.Generator().manual_seed(seed)
    reference = dict(pretrained.named_parameters())
    head = _head_ids(model)
    kept = total = 0
    for name, param in model.named_parameters():
        if id(param) in head:
            continue
        source = reference.get(name)
        if source is None or source.shape != param.shape:
            raise PluginError(f"fine_mixing: parameter {name!r} has no pre-trained counterpart of shape "
                              f"{tuple(param.shape)}; is the victim the model these weights come from?")
        mask = torch.rand(param.shape, generator=generator) < rho  # same draws for every ρ
        param.copy_(torch.where(mask.to(param.device), param, source.to(param.device, param.dtype)))
        kept += int(mask.sum())
        total += mask.numel()
    return kept / max(total, 1)


# --------------------------------------------------------------------------- E-PUR

def _normaliser(kind: str, counts: torch.Tensor) -> torch.Tensor:
    if kind == "log":
        return torch.log(counts + 2.0)
    if kind == "sqrt":
        return torch.sqrt(counts + 1.0)
    if kind == "none":
        return torch.ones_like(counts)
    raise PluginError(f"fine_mixing: unknown e_pur_normaliser {kind!r}")


@torch.no_grad()
def e_pur_select(model, pretrained, token_ids, top: int, normaliser: str) -> tuple[list[int], list[float]]:
    """The ``top`` word pieces by drift / g(frequency in ``token_ids``), best first, with scores."""
    e_b = word_embeddings(model).weight.detach().float().cpu()
    e_p = word_embeddings(pretrained).weight.detach().float().cpu()
    drift = (e_b - e_p).norm(dim=1)
    counts = torch.zeros(len(drift))
    for token, count in Counter(t for ids in token_ids for t in ids).items():
        counts[token] = count
    scores = drift / _normaliser(normaliser, counts)
    top = min(top, len(scores))
    values, indices = torch.topk(scores, top)
    keep = [(int(i), float(v)) for i, v in zip(indices, values) if v > 0 and math.isfinite(float(v))]
    return [i for i, _ in keep], [v for _, v in keep]


@torch.no_grad()
def e_pur_reset(model, pretrained, tokens: list[int]) -> None:
    """Reset the embedding rows of ``tokens`` to their pre-trained values."""
    if not tokens:
        return
    weight = word_embeddings(model).weight
    source = word_embeddings(pretrained).weight
    index = torch.tensor(tokens, dtype=torch.long)
    weight[index.to(weight.device)] = source[index.to(source.device)].to(weight.device, weight.dtype)
