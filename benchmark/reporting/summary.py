"""What a run was, read from its records: the leaderboard's header (cells, data sets, budgets,
versions, revisions, device, scenarios built more than once, when it finished)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from ..base.hashing import stable_hash


def budget_text(budget: dict) -> str:
    """A budget as one line: subsets, clean share, lengths, and the two training recipes."""
    def limit(key):
        return "all" if budget.get(key) is None else str(budget[key])

    parts = [f"train {limit('train_limit')}", f"dev {limit('dev_limit')}", f"test {limit('test_limit')}"]
    if budget.get("clean_fraction") is not None:
        parts.append(f"defender's clean data {budget['clean_fraction']:.0%} of train")
    if budget.get("max_length") is not None:
        parts.append(f"max length {budget['max_length']}")
    for key, name in (("victim_training", "victim"), ("defense_training", "defense")):
        recipe = budget.get(key) or {}
        if recipe:
            micro = recipe.get("max_batch_tokens")
            parts.append(f"{name} training lr {recipe.get('lr')}, {recipe.get('epochs')} epochs, "
                         f"batch {recipe.get('batch_size')}"
                         + (f" (micro-batches of at most {micro} tokens)" if micro is not None else ""))
    known = {"train_limit", "dev_limit", "test_limit", "clean_fraction", "max_length", "victim_training",
             "defense_training"}
    parts += [f"{k} {budget[k]}" for k in sorted(budget) if k not in known]
    return " · ".join(parts)


def _short_revision(revision: str | None) -> str:
    """A commit as the header names it (10 digits, ``+dirty`` kept); "" where the record names
    none (bdbench ran from an installed wheel, not from a checkout)."""
    revision = revision or ""
    return revision[:10] + ("+dirty" if "dirty" in revision else "")


def _joined(values: Iterable) -> str:
    return ", ".join(str(v) for v in sorted({v for v in values if v not in (None, "")}, key=str))


SCENARIO_FIELDS = ("cacc_clean", "asr_clean", "cacc_before", "asr_before")  # one value per build of a scenario


def scenario_rebuilds(ok: list[dict]) -> list[str]:
    """Scenarios (``scenario_id``) whose records disagree about the models before any defense:
    the scenario was built more than once (its artifacts were not kept) and the builds did not
    reproduce, as on another processor. One line each, naming the fields that differ, with each
    value's count of records; the weights' digests (``scenario_weights``) where records name them."""
    by_scenario: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        if r.get("scenario_id"):
            by_scenario[r["scenario_id"]].append(r)
    lines = []
    for rows in by_scenario.values():
        values = {key: [r.get(key) for r in rows] for key in SCENARIO_FIELDS}
        for model in ("clean", "backdoored"):
            values[f"{model} weights"] = [((r.get("scenario_weights") or {}).get(model) or "")[:12] or None
                                          for r in rows]
        differing = []
        for key, seen in values.items():
            counts = Counter(v for v in seen if v is not None)
            if len(counts) > 1:
                shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in sorted(counts))
                differing.append(f"{key} {shown} ({' / '.join(str(counts[v]) for v in sorted(counts))} records)")
        if differing:
            first = rows[0]
            lines.append(f"{first['dataset']} · {first['attack_label']} · seed {first['seed']}: "
                         + ", ".join(differing))
    return sorted(lines)


def run_summary(ok: list[dict], failed: list[dict]) -> list[tuple[str, str]]:
    """What was run, read from the records: (term, text) pairs for the page's and Markdown's header."""
    records = ok + failed
    items = [("cells", f"{len(ok)} ok, {len(failed)} failed")]
    datasets = sorted({r["dataset"] for r in records if r.get("dataset")})
    items += [("data sets", ", ".join(datasets)), ("victim", _joined(r.get("victim") for r in records)),
              ("attacks", _joined(f"{r['attack_label']} v{r.get('attack_version', '?')}" for r in ok)),
              ("defenses", _joined(f"{r['defense_label']} v{r.get('defense_version', '?')}" for r in ok)),
              ("seeds", ", ".join(str(s) for s in sorted({r["seed"] for r in records if r.get("seed") is not None})))]
    for dataset in datasets:
        budgets = {stable_hash(r.get("budget")): r.get("budget") for r in ok if r["dataset"] == dataset}
        for budget in budgets.values():
            if budget:
                items.append((f"budget · {dataset}", budget_text(budget)))
    provenance = [r.get("provenance") or {} for r in ok]
    versions = [f"bdbench {_joined(p.get('bdbench_version') for p in provenance)}"]
    libraries = defaultdict(set)
    for p in provenance:
        for name, version in (p.get("libraries") or {}).items():
            libraries[name].add(version)
    versions += [f"{name} {', '.join(sorted(v))}" for name, v in sorted(libraries.items())]
    items.append(("versions", " · ".join(versions)))
    revisions = _joined(_short_revision(p.get("git_revision")) for p in provenance)
    if revisions:
        items.append(("git revisions", revisions))
    dirty = sum("dirty" in (p.get("git_revision") or "") for p in provenance)
    if dirty:
        items.append(("uncommitted code", f"{dirty} of {len(provenance)} records come from a working tree with "
                                          "uncommitted changes (a +dirty revision, whose code cannot be checked out)"))
    isolations = defaultdict(int)
    for r in ok:
        isolations[r.get("isolation") or "not recorded"] += 1
    if isolations:
        weaker = "" if set(isolations) == {"sandbox"} else (
            "; rows outside the sandbox are marked: their defenses could read files they did not declare "
            "(docs/threat-model.md)")
        items.append(("isolation", ", ".join(f"{mode} ({n} records)" for mode, n in sorted(isolations.items()))
                      + weaker))
    device = [_joined(r.get("device") for r in ok) or "unknown"]
    precision = _joined(p.get("precision") for p in provenance)
    if precision:
        device.append(f"precision {precision}")
    if not any(r.get("gpu_s") is not None or r.get("peak_gpu_mb") is not None for r in ok):
        device.append("no GPU figures in these records: GPU columns left out")
    platform = _joined(p.get("platform") for p in provenance)
    if platform:
        device.append(platform)
    processors = _joined(p.get("processor") and (f"{p['processor']} ({p['processor_kernels']})"
                                                 if p.get("processor_kernels") else p["processor"])
                         for p in provenance)
    if processors:
        unnamed = sum(1 for p in provenance if not p.get("processor"))  # written before the field existed
        if unnamed:
            processors += f" (no processor recorded for {unnamed} of {len(ok)} records)"
        device.append(processors)
    items.append(("device", " · ".join(device)))
    rebuilds = scenario_rebuilds(ok)
    if rebuilds:
        items.append(("scenario builds", f"{len(rebuilds)} scenario(s) built more than once with different "
                      f"results; each record's Δ and DER are against its own build: {'; '.join(rebuilds)}"))
    finished = sorted(r["finished_at"] for r in ok if r.get("finished_at"))
    if finished:
        items.append(("finished", f"{finished[0]} – {finished[-1]} (records' finished_at)"))
    return items


