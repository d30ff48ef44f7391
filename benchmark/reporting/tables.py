"""Leaderboard tables: pure views of ``records.jsonl``; they never compute a metric.

:func:`benchmark.reporting.writers.render_leaderboard` writes these views as files. One table per
data set × victim × attack
(× configuration, where one scenario ran with several budgets or attack settings): the clean
reference model and the undefended backdoored model first, then one row per defense with
mean ± std over seeds. An overall ranking orders defenses by mean DER (one ranking per defense
kind when records carry ``defense_kind``).

The four kinds of defense (``docs/defense-kinds.md``) get their own sections: where one scenario
holds several kinds, each kind has its own table with the columns it needs — FRR, FAR, AUROC,
dev FRR and CACC over all clean inputs for input detection (:data:`KIND_COLUMNS`), filter recall,
filter FPR and kept samples for training-data filtering — and its own ranking: model
purification, training-data filtering and robust training by mean DER, input detection by mean AUROC (threshold-free;
FRR and FAR beside it) (:data:`RANKING_BY`).

Besides the recorded metrics, the tables show what the records already hold about each cell:

* **ASR−clean**: ``asr − asr_clean`` per seed, the ASR above the clean reference model's on the
  same triggered inputs (the floor a perfect defense reaches);
* the **auxiliary models** a defense returned (``aux``: NAD's and MBTSAD's teacher) with their
  CACC and ASR;
* the **intermediate choices** a defense reported (``defense_info``, :data:`INFO_FIELDS`):
  fine-pruning's prune ratio and pruned model, Fine-mixing's ρ, E-PUR's reset rows, NAD's β.

Columns that no record of a table fills (GPU columns on a CPU run) are left out. The output
depends only on the records (no clock, no machine), so re-rendering is byte-for-byte stable.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..base.hashing import stable_hash
from ..base.metrics import mean_std
from ..base.record_schema import ARROWS, better
from ..base.requirements import kind_label, requirements_text


@dataclass(frozen=True)
class Column:
    """One numeric column of a table: where its value comes from and how it is shown."""

    key: str  # the metric's name in leaderboard.csv
    label: str  # its name in headings
    get: Callable[[dict], float | None]  # the value of one record (one seed)
    better: str | None = None  # "higher", "lower" (benchmark.base.record_schema), or None (not ranked, no best value marked)
    digits: int = 3
    group: str = "metric"  # metric, kind (a defense kind's), extra (attack-specific rate), aux (auxiliary model), cost
    help: str = ""  # what the column means, shown in the page's legend and tooltips

    @property
    def heading(self) -> str:
        """The label with an arrow saying which direction is better (none on cost columns)."""
        return self.label if self.better is None or self.group == "cost" else f"{self.label} {ARROWS[self.better]}"


def _field(key: str) -> Callable[[dict], float | None]:
    return lambda r: r.get(key)


def _minus(key: str, floor: str) -> Callable[[dict], float | None]:
    return lambda r: None if r.get(key) is None or r.get(floor) is None else r[key] - r[floor]


def _aux(name: str, metric: str) -> Callable[[dict], float | None]:
    return lambda r: ((r.get("aux") or {}).get(name) or {}).get(metric)


def _recorded(key: str, label: str, **shown) -> Column:
    """The column of the record key ``key``, its direction as the schema declares it."""
    return Column(key, label, _field(key), better(key), **shown)


METRICS = [
    _recorded("cacc", "CACC", help="accuracy on the clean test split"),
    _recorded("asr", "ASR",
              help="attack success rate: share of triggered non-target test samples classified as the target"),
    Column("asr_minus_clean", "ASR−clean", _minus("asr", "asr_clean"), better("asr"),
           help="ASR minus the clean reference model's ASR on the same triggered inputs, per seed: "
                "0 is the floor a perfect defense reaches"),
    _recorded("delta_cacc", "ΔCACC", help="CACC lost: backdoored − defended"),
    _recorded("delta_asr", "ΔASR", help="ASR removed: backdoored − defended"),
    _recorded("der", "DER",
              help="defense effectiveness rate: [max(0, ΔASR) − max(0, ΔCACC) + 1] / 2; 0.5 is no change"),
]
COSTS = [
    _recorded("wall_s", "wall s", digits=1, group="cost", help="wall-clock seconds of the defense phase"),
    _recorded("cpu_s", "CPU s", digits=1, group="cost", help="process CPU seconds of the defense phase (all threads)"),
    _recorded("gpu_s", "GPU s", digits=1, group="cost", help="CUDA time of the defense phase, seconds"),
    _recorded("peak_rss_mb", "peak RSS MB", digits=0, group="cost",
              help="peak resident host memory of the defense phase, MB"),
    _recorded("peak_gpu_mb", "peak GPU MB", digits=0, group="cost",
              help="peak CUDA memory allocated in the defense phase, MB"),
]
# The reference rows read the scenario's own figures: (record key per column key) for the clean
# model and for the undefended backdoored model; extras ``<name>_rate`` read ``<name>_rate_before``.
CLEAN_REFERENCE = {"cacc": _field("cacc_clean"), "asr": _field("asr_clean"),
                   "asr_minus_clean": _minus("asr_clean", "asr_clean")}
BACKDOORED_REFERENCE = {"cacc": _field("cacc_before"), "asr": _field("asr_before"),
                        "asr_minus_clean": _minus("asr_before", "asr_clean")}

INFO_FIELDS = (  # defense_info keys shown beside a defense: (key, label, format, per seed?, meaning)
    ("prune_ratio", "pruned", "{:.0%}", True, "share of its candidate FFN neurons fine-pruning pruned (scope joint: every layer's)"),
    ("dev_acc_pruned", "pruned dev acc", "{:.3f}", False,
     "clean dev accuracy of the pruned model before fine-tuning"),
    ("rho", "ρ", "{:g}", True, "Fine-mixing's reserve ratio: share of backdoored weights kept"),
    ("e_pur_reset", "E-PUR reset", "{} rows", True, "embedding rows E-PUR reset to the pre-trained ones"),
    ("beta", "β", "{:.0f}", False, "NAD's attention-loss weight"),
)
KIND_COLUMNS = {  # the columns a kind adds to its tables, by kind label
    "input detection": [
        _recorded("frr", "FRR", group="kind", help="share of clean test inputs flagged"),
        _recorded("far", "FAR", group="kind", help="share of triggered test inputs missed"),
        _recorded("auroc", "AUROC", group="kind",
                  help="area under the ROC curve of the detector's score, triggered against clean test inputs "
                       "(threshold-free)"),
        _recorded("dev_frr", "dev FRR", group="kind",
                  help="share of the detector's clean calibration inputs flagged at its threshold (its target: frr)"),
        _recorded("cacc_all", "CACC all", group="kind",
                  help="accuracy over all clean test inputs, each rejection an error (CACC: over accepted inputs)"),
    ],
    "training-data filtering": [
        _recorded("filter_recall", "filter recall", group="kind",
                  help="share of poisoned training samples the filter removed"),
        _recorded("filter_fpr", "filter FPR", group="kind", help="share of clean training samples the filter removed"),
        _recorded("kept", "kept", digits=0, group="kind", help="training samples kept (the victim is retrained on them)"),
    ],
}


@dataclass(frozen=True)
class Stat:
    """Mean and sample std of one column over the seeds that have a value (``n`` of them)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat:
        clean = [v for v in values if v is not None and not math.isnan(v)]
        mean, std = mean_std(clean)
        return cls(mean, std, len(clean))

    @property
    def empty(self) -> bool:
        return self.n == 0

    def text(self, digits: int = 3, sep: str = " ± ") -> str:
        """``0.870 ± 0.014`` (Markdown, LaTeX); the mean alone for one seed; ``""`` for none."""
        if self.empty:
            return ""
        return f"{self.mean:.{digits}f}" if self.n < 2 else f"{self.mean:.{digits}f}{sep}{self.std:.{digits}f}"


@dataclass
class TableRow:
    """One row of a table: a reference model or a defense, averaged over seeds."""

    label: str
    kind: str  # "clean", "backdoored" or "defense"
    stats: dict[str, Stat]  # per column key
    seeds: int
    requires: tuple[str, ...] = ()
    version: str = ""
    params: dict = field(default_factory=dict)
    baseline: bool = False  # the identity defense: shown, never marked best
    details: list[tuple[str, str]] = field(default_factory=list)  # (short, long) from defense_info


def latest_ok(records: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """The last record of each cell, split into ok and failed (a later ok supersedes a failure)."""
    last: dict[str, dict] = {}
    for record in records:
        last[record.get("cell_id", str(len(last)))] = record
    ok = [r for r in last.values() if r.get("status") == "ok"]
    failed = [r for r in last.values() if r.get("status") != "ok"]
    return ok, failed


def _config_key(record: dict, *fields: str) -> str:
    return stable_hash([record.get(f) for f in fields], 8)


def row_label(record: dict, labels_seen: dict[str, set[str]]) -> str:
    """The defense label, suffixed with a parameter hash when one label ran with several
    parameter sets or versions (so that they are never averaged together as seeds)."""
    label = record["defense_label"]
    if len(labels_seen.get(label, ())) > 1:
        return f"{label} [{_config_key(record, 'defense_params', 'defense_version')}]"
    return label


def by_defense(records: list[dict]) -> dict[str, list[dict]]:
    """Records grouped by :func:`row_label`."""
    params_seen: dict[str, set[str]] = defaultdict(set)
    for r in records:
        params_seen[r["defense_label"]].add(_config_key(r, "defense_params", "defense_version"))
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[row_label(r, params_seen)].append(r)
    return groups


def _der_order(item: tuple[str, list[dict]]) -> tuple[float, str]:
    der = Stat.of(r.get("der") for r in item[1]).mean
    return (math.inf if math.isnan(der) else -der, item[0])


def _seed_values(values: list, fmt: str) -> str:
    texts = [fmt.format(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else "/".join(texts)


def info_details(records: list[dict]) -> list[tuple[str, str]]:
    """The :data:`INFO_FIELDS` a defense reported, as (short text, longer text) pairs. Values that
    differ between seeds are listed per seed (in seed order) or averaged, per field."""
    infos = [r.get("defense_info") or {} for r in sorted(records, key=lambda r: r.get("seed", 0))]
    details = []
    for key, label, fmt, per_seed, meaning in INFO_FIELDS:
        values = [i[key] for i in infos if isinstance(i.get(key), (int, float)) and not isinstance(i[key], bool)]
        if not values:
            continue
        if per_seed:
            text = _seed_values(values, fmt)
        else:
            stat = Stat.of(values)
            text = fmt.format(stat.mean) + ("" if stat.n < 2 else "±" + fmt.format(stat.std))
        details.append((f"{label} {text}", f"{meaning}{' (per seed)' if per_seed and '/' in text else ''}"))
    tried = [i["tried"] for i in infos if isinstance(i.get("tried"), list)]
    if tried:  # Fine-mixing's ρ search: the dev accuracy of every mixed model it tried
        steps = ["; ".join(", ".join(f"{k} {v}" for k, v in t.items()) for t in seed_tried) for seed_tried in tried]
        details.append(("", "tried per seed: " + " | ".join(steps)))
    top = [i["e_pur_top_tokens"][:3] for i in infos if isinstance(i.get("e_pur_top_tokens"), list)]
    if top:
        details.append(("", "largest E-PUR scores per seed: " + " | ".join(
            ", ".join(f"{t[0]} {t[1]}" for t in seed_top if isinstance(t, list) and len(t) == 2) for seed_top in top)))
    return details


def record_kind_label(record: dict) -> str:
    """The record's defense kind as shown ("" for records that do not say)."""
    return kind_label(record.get("defense_kind") or "")


def _columns(rows: list[dict]) -> list[Column]:
    extras = sorted({k for r in rows for k in r if k.endswith("_rate") and r[k] is not None})
    aux = sorted({name for r in rows for name in (r.get("aux") or {})})
    columns = list(METRICS)
    for kind in sorted({record_kind_label(r) for r in rows}):
        columns += KIND_COLUMNS.get(kind, [])
    columns += [_recorded(e, e.replace("_", " "), group="extra",
                          help=f"the attack's {e.replace('_', ' ')} after the defense") for e in extras]
    for name in aux:
        columns += [Column(f"{name}_{m}", f"{name} {m.upper()}", _aux(name, m), group="aux",
                           help=f"{m.upper()} of the defense's intermediate {name} model") for m in ("cacc", "asr")]
    return columns + COSTS


def _reference_row(label: str, kind: str, refs: list[dict], columns: list[Column]) -> TableRow:
    getters = dict(CLEAN_REFERENCE if kind == "clean" else BACKDOORED_REFERENCE)
    if kind == "backdoored":
        getters.update({c.key: _field(f"{c.key}_before") for c in columns if c.group == "extra"})
    stats = {c.key: Stat.of(getters[c.key](r) for r in refs) if c.key in getters else Stat.of([])
             for c in columns}
    return TableRow(label, kind, stats, len(refs))


def _defense_row(label: str, drows: list[dict], columns: list[Column]) -> TableRow:
    first = drows[0]
    return TableRow(label, "defense", {c.key: Stat.of(c.get(r) for r in drows) for c in columns}, len(drows),
               tuple(first.get("requires", [])), str(first.get("defense_version", "")),
               first.get("defense_params") or {}, first.get("defense") == "none", info_details(drows))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def build_tables(records: list[dict]) -> list[dict]:
    """One table per (dataset, victim, attack label, attack parameters, budget). Each is a dict:
    ``heading``, ``title`` (the heading less what every table shares), ``anchor``, ``dataset``, ``victim``, ``attack``, ``columns`` (those with data),
    ``refs`` and ``defenses`` (:class:`TableRow`), ``notes`` (intermediate models, one line per defense),
    and the Markdown view: ``headers``, ``rows`` (strings), ``csv_rows``. Rows average over seeds only."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], r["victim"], r["attack_label"],
                _config_key(r, "attack_params", "attack_version", "budget"), record_kind_label(r))].append(r)
    configs_per_scenario = defaultdict(set)
    kinds_per_scenario = defaultdict(set)
    victims = {r["victim"] for r in records}
    for dataset, victim, attack, key, kind in groups:
        configs_per_scenario[(dataset, victim, attack)].add(key)
        kinds_per_scenario[(dataset, victim, attack, key)].add(kind)
    tables = []
    for (dataset, victim, attack, key, kind), rows in sorted(groups.items()):
        columns = _columns(rows)
        refs = list({r["scenario_id"]: r for r in rows}.values())  # one per seed
        ref_rows = [_reference_row("clean model (reference)", "clean", refs, columns),
                    _reference_row("backdoored (no defense)", "backdoored", refs, columns)]
        groups_by_label = by_defense(rows)
        defense_rows = [_defense_row(label, drows, columns) for label, drows in sorted(groups_by_label.items(),
                                                                                       key=_der_order)]
        shown = [c for c in columns if any(not row.stats[c.key].empty for row in ref_rows + defense_rows)]
        heading = f"{dataset} · {attack} · {victim}"
        short = [dataset, attack] + ([victim] if len(victims) > 1 else [])
        if len(configs_per_scenario[(dataset, victim, attack)]) > 1:
            heading += f" · config {key}"
            short.append(f"config {key}")
        if len(kinds_per_scenario[(dataset, victim, attack, key)]) > 1:  # one section per kind of defense
            heading += f" · {kind or 'defenses'}"
            short.append(kind or "defenses")
        table = {"heading": heading, "title": " · ".join(short), "anchor": "t-" + slug(" ".join(short)),
                 "dataset": dataset, "victim": victim,
                 "attack": attack, "columns": shown, "refs": ref_rows, "defenses": defense_rows,
                 "notes": _stealth_note(refs) + _isolation_note(groups_by_label) + _notes(defense_rows, columns)}
        table.update(_markdown_view(table))
        table["csv_rows"] = _csv_rows(table, columns, groups_by_label)
        tables.append(table)
    return tables


def _isolation_note(groups: dict[str, list[dict]]) -> list[str]:
    """The defenses of a table whose cells did not all run in the sandbox (``isolation``)."""
    outside = {label: sorted({r.get("isolation") or "not recorded" for r in rows if r.get("isolation") != "sandbox"})
               for label, rows in sorted(groups.items())}
    outside = {label: modes for label, modes in outside.items() if modes and label != "none"}
    if not outside:
        return []
    modes = sorted({m for ms in outside.values() for m in ms})
    if len(outside) == len([label for label in groups if label != "none"]):
        return [f"every defense here ran under {' / '.join(modes)} isolation, not the sandbox"]
    named = ", ".join(f"{label} ({'/'.join(ms)})" for label, ms in outside.items())
    return [f"not in the sandbox: {named}"]


def _stealth_note(refs: list[dict]) -> list[str]:
    """The scenario's stealthiness figures (``attack_stealth``, mean over seeds), when its records have them."""
    figures = [r["attack_stealth"] for r in refs if isinstance(r.get("attack_stealth"), dict)
               and (r["attack_stealth"].get("pairs") or 0) > 0]
    if not figures:
        return []

    def mean(key: str) -> float:
        return sum(f[key] for f in figures) / len(figures)

    note = (f"triggered test texts against their sources: {mean('changed_share'):.3f} changed, "
            f"{mean('edit_words_mean'):.1f} words edited on average ({mean('edit_share_mean'):.0%} of the source's)")
    lms = {f.get("lm") for f in figures}
    if len(lms) == 1 and None not in lms and all(isinstance(f.get("ppl_increase"), (int, float)) for f in figures):
        note += (f"; perplexity under {lms.pop()} {mean('ppl_clean_mean'):.1f} → {mean('ppl_poisoned_mean'):.1f} "
                 f"(ΔPPL {mean('ppl_increase'):+.1f})")
    return [note]


def _notes(rows: list[TableRow], columns: list[Column]) -> list[str]:
    """Per defense, its intermediate models and choices (Markdown note under the table)."""
    aux_names = sorted({c.key.rsplit("_", 1)[0] for c in columns if c.group == "aux"})
    notes = []
    for row in rows:
        parts = []
        for name in aux_names:
            cacc, asr = row.stats[f"{name}_cacc"], row.stats[f"{name}_asr"]
            if not cacc.empty or not asr.empty:
                parts.append(f"{name} CACC {cacc.text(sep='±')}, ASR {asr.text(sep='±')}")
        parts += [short for short, _ in row.details if short]
        if parts:
            notes.append(f"{row.label}: {'; '.join(parts)}")
    return notes


def _markdown_view(table: dict) -> dict:
    columns = [c for c in table["columns"] if c.group != "aux"]
    headers = ["defense", "requires", *[c.heading for c in columns], "seeds", "version"]
    body = []
    for row in table["refs"] + table["defenses"]:
        requires = requirements_text(row.requires) if row.kind == "defense" else "—"
        body.append([row.label, requires, *[row.stats[c.key].text(c.digits) for c in columns], str(row.seeds),
                     row.version])
    return {"headers": headers, "rows": body}


def _csv_rows(table: dict, columns: list[Column], groups: dict[str, list[dict]]) -> list[dict]:
    out = []
    for row in table["defenses"]:
        stats = dict(row.stats)
        for key, *_ in INFO_FIELDS:
            values = [(r.get("defense_info") or {}).get(key) for r in groups[row.label]]
            if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                stats[f"info.{key}"] = Stat.of(v for v in values if not isinstance(v, bool))
        for key, stat in stats.items():
            if key.startswith("info.") or any(c.key == key for c in columns):
                out.append({"dataset": table["dataset"], "victim": table["victim"], "attack": table["attack"],
                            "defense": row.label, "requires": requirements_text(row.requires), "metric": key,
                            "mean": _num(stat.mean), "std": _num(stat.std), "seeds": row.seeds})
    return out


def _num(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6g}"


RANKING_COLUMNS = ["der", "cacc", "asr", "asr_minus_clean", "wall_s"]  # keys: means over every cell of a defense
RANKING_BY = {"input detection": "auroc"}  # kind label → the key it is ranked by (higher first); others: der
RANKING_EXTRA = {  # kind label → columns its ranking adds after the first
    "input detection": ["frr", "far"],
    "training-data filtering": ["filter_recall", "filter_fpr"],
}


def ranking_columns(kind: str = "") -> list[Column]:
    """The columns of a kind's ranking, its ranking criterion first: each a table column's mean."""
    columns = {c.key: c for c in METRICS + COSTS + [c for cs in KIND_COLUMNS.values() for c in cs]}
    first = RANKING_BY.get(kind, "der")
    keys = [first, *RANKING_EXTRA.get(kind, []), *[k for k in RANKING_COLUMNS if k != first]]
    return [dataclasses.replace(columns[k], label=f"mean {columns[k].label}",
                                help=f"mean over every cell of the defense: {columns[k].help}") for k in keys]


def ranking_criterion(kind: str = "") -> str:
    return ranking_columns(kind)[0].label


def ranking_rows(records: list[dict], kind: str = "") -> list[TableRow]:
    """One row per defense over every table, ordered by the kind's criterion (mean DER; mean AUROC
    for input detection) (stats hold means; ``seeds`` the cells)."""
    columns = ranking_columns(kind)
    key = columns[0].key

    def order(item):
        value = Stat.of(r.get(key) for r in item[1]).mean
        return (math.inf if math.isnan(value) else -value, item[0])

    rows = []
    for label, drows in sorted(by_defense(records).items(), key=order):
        first = drows[0]
        stats = {c.key: Stat.of(c.get(r) for r in drows) for c in columns}
        rows.append(TableRow(label, "defense", stats, len(drows), tuple(first.get("requires", [])),
                        str(first.get("defense_version", "")), first.get("defense_params") or {},
                        first.get("defense") == "none"))
    return rows


def build_rankings(records: list[dict]) -> list[tuple[str, list[TableRow]]]:
    """One ranking per defense kind (``defense_kind``; a single one when no record says)."""
    kinds: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        kinds[r.get("defense_kind") or ""].append(r)
    labelled = [(kind_label(kind), rows) for kind, rows in sorted(kinds.items())]
    return [(label, ranking_rows(rows, label)) for label, rows in labelled]


def ranking_table(rows: list[TableRow], kind: str = "") -> tuple[list[str], list[list[str]]]:
    """A ranking as Markdown headers and rows."""
    columns = ranking_columns(kind)
    headers = ["rank", "defense", "requires", *[c.heading for c in columns], "cells"]
    body = [[str(rank), row.label, requirements_text(row.requires),
             *[_mean(row.stats[c.key], c.digits) for c in columns], str(row.seeds)]
            for rank, row in enumerate(rows, start=1)]
    return headers, body


def _mean(stat: Stat, digits: int) -> str:
    return "" if stat.empty else f"{stat.mean:.{digits}f}"


