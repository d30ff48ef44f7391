"""Leaderboard plots, drawn with matplotlib and byte-for-byte reproducible from the records.

* :func:`asr_vs_cacc_figure`: small multiples, one panel per leaderboard table (data set ×
  attack). Each defense sits at its mean CACC (x) and mean ASR (y) with the seeds' std as error
  bars; the clean reference model (★) and the undefended backdoored model (✕) are reference
  marks; the clean model's ASR is drawn as a dashed floor, and the ideal corner (CACC at least,
  ASR at most the clean model's) is shaded. Axes are zoomed to each panel's data.
* :func:`cost_figure`: per data set, each defense's mean cost per phase (the defense itself and
  the evaluation of its model; the attack, shared by every defense of a scenario, as a bar of its
  own): wall seconds and peak host RSS, plus GPU seconds and peak GPU memory when recorded.

Reproducibility: figures are drawn on the Agg canvas without pyplot (no global backend is set),
under matplotlib's default style plus :data:`STYLE`: the DejaVu Sans font bundled with
matplotlib, SVG text drawn as paths, a fixed ``svg.hashsalt``, and no date, creator or software
metadata. The same records and the same matplotlib version give the same bytes.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import defaultdict
from collections.abc import Iterator

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..base.metrics import mean_std
from ..base.record_schema import ARROWS, better

STYLE = {
    "font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "legend.fontsize": 8, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.color": "#e6e6e6", "grid.linewidth": 0.6, "axes.axisbelow": True,
    "svg.fonttype": "path", "svg.hashsalt": "bdbench",
}
DPI = 120  # PNG resolution
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
          "#7f7f7f"]
MARKERS = ["o", "s", "D", "^", "v", "P", "h", "<", ">", "p"]
CLEAN_MARK = {"marker": "*", "ms": 11, "color": "#111111", "ls": "none", "label": "clean model (reference)"}
BACKDOORED_MARK = {"marker": "X", "ms": 8, "color": "#8a8a8a", "ls": "none", "label": "backdoored (no defense)"}
IDEAL_COLOR = "#2ca02c"
COST_METRICS = [("wall_s", "wall time", "s"), ("peak_rss_mb", "peak RSS", "MB"), ("gpu_s", "GPU time", "s"),
                ("peak_gpu_mb", "peak GPU memory", "MB")]
PHASE_COLORS = {"defense": "#1f77b4", "evaluation": "#ff7f0e", "attack": "#8a8a8a"}


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """matplotlib's defaults (whatever the user's matplotlibrc says) plus STYLE, restored after."""
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update(STYLE)
        yield


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _empty(title: str) -> Figure:
    fig = _new_figure(4, 1.2)
    fig.text(0.5, 0.5, f"{title}: no finished cells", ha="center", va="center")
    return fig


def _styles(order: list[str], labels: list[str]) -> dict[str, tuple[str, str]]:
    """A colour and a marker per defense label, fixed by its place in ``order`` (then by name)."""
    ranked = [label for label in order if label in labels] + sorted(set(labels) - set(order))
    return {label: (COLORS[i % len(COLORS)], MARKERS[i % len(MARKERS)]) for i, label in enumerate(ranked)}


def _limits(values: list[float], minimum_span: float) -> tuple[float, float]:
    low, high = min(values), max(values)
    span = max(high - low, minimum_span)
    pad = 0.08 * span
    return low - pad, high + pad


def asr_vs_cacc_figure(tables: list[dict], order: list[str]) -> Figure:
    """One panel per table of :func:`benchmark.reporting.tables.build_tables`; ``order`` fixes colours."""
    with _style():
        tables = [t for t in tables if t["defenses"]]
        if not tables:
            return _empty("ASR against CACC")
        per_dataset = defaultdict(int)
        for t in tables:
            per_dataset[t["dataset"]] += 1
        ncols = min(4, max(per_dataset.values()))
        nrows = math.ceil(len(tables) / ncols)
        fig = _new_figure(3.15 * ncols + 0.5, 2.75 * nrows + 0.9)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        styles = _styles(order, [row.label for t in tables for row in t["defenses"]])
        handles: dict[str, object] = {}
        for ax, table in zip(axes, tables):
            _asr_panel(ax, table, styles, handles)
        for ax in axes[len(tables):]:
            ax.set_visible(False)
        fig.suptitle("ASR against CACC per data set × attack: mean ± std over seeds (ideal corner shaded)",
                     fontsize=10)
        for i, ax in enumerate(axes[:len(tables)]):
            if i % ncols == 0:
                ax.set_ylabel(f"ASR {ARROWS[better('asr')]} (attack success rate)")
            if i + ncols >= len(tables):
                ax.set_xlabel(f"CACC {ARROWS[better('cacc')]} (clean test accuracy)")
        labels = [CLEAN_MARK["label"], BACKDOORED_MARK["label"], "clean model's ASR (floor)"]
        labels += [label for label in styles if label in handles]
        fig.legend([handles[label] for label in labels if label in handles], [lb for lb in labels if lb in handles],
                   loc="outside lower center", ncols=min(6, len(labels)), frameon=False)
        return fig


def _asr_panel(ax, table: dict, styles: dict, handles: dict) -> None:
    clean, backdoored = table["refs"]
    cc, ca = clean.stats["cacc"], clean.stats["asr"]
    bc, ba = backdoored.stats["cacc"], backdoored.stats["asr"]
    xs, ys = [], []
    for row in table["defenses"]:
        c, a = row.stats["cacc"], row.stats["asr"]
        if c.empty or a.empty:
            continue
        color, marker = styles[row.label]
        handles[row.label] = ax.errorbar(c.mean, a.mean, xerr=c.std if c.n > 1 else None,
                                         yerr=a.std if a.n > 1 else None, fmt=marker, ms=5, color=color,
                                         mec="white", mew=0.5, ecolor=color, elinewidth=0.8, capsize=2, zorder=3)
        xs += [c.mean - (c.std if c.n > 1 else 0), c.mean + (c.std if c.n > 1 else 0)]
        ys += [a.mean - (a.std if a.n > 1 else 0), a.mean + (a.std if a.n > 1 else 0)]
    for stat_c, stat_a, mark in ((cc, ca, CLEAN_MARK), (bc, ba, BACKDOORED_MARK)):
        if not stat_c.empty and not stat_a.empty:
            (handles[mark["label"]],) = ax.plot(stat_c.mean, stat_a.mean, zorder=4, mec="white", mew=0.5,
                                                **{k: v for k, v in mark.items() if k != "label"})
            xs.append(stat_c.mean)
            ys.append(stat_a.mean)
    x0, x1 = _limits(xs, 0.02)
    y0, y1 = _limits(ys, 0.1)
    if not cc.empty and not ca.empty:  # room for the ideal corner beyond the clean model
        x1 = max(x1, cc.mean + 0.15 * (x1 - x0))
        y0 = min(y0, ca.mean - 0.12 * (y1 - y0))
        ax.fill_between([cc.mean, x1], y0, ca.mean, color=IDEAL_COLOR, alpha=0.13, lw=0, zorder=1)
        ax.text(x1, y0, "ideal ", ha="right", va="bottom", color=IDEAL_COLOR, fontsize=7, zorder=2)
        handles["clean model's ASR (floor)"] = ax.axhline(ca.mean, ls="--", lw=0.7, color="#777777", zorder=2)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_title(table["title"])


def _phase_values(records: list[dict], phase: str, key: str) -> list[float]:
    if phase == "defense":
        values = [r.get(key) for r in records]
    elif phase == "evaluation":
        values = [(r.get("eval_cost") or {}).get(key) for r in records]
    else:  # the attack: once per scenario
        values = [(r.get("attack_cost") or {}).get(key) for r in {r["scenario_id"]: r for r in records}.values()]
    return [v for v in values if v is not None]


def cost_figure(records: list[dict], order: list[str]) -> Figure:
    """Mean cost per phase of each defense, one row of panels per data set (std as error bars)."""
    from .tables import by_defense

    with _style():
        if not records:
            return _empty("Cost per defense and phase")
        label_of = {id(r): label for label, rows in by_defense(records).items() for r in rows}
        metrics = [m for m in COST_METRICS if any(_phase_values(records, p, m[0]) for p in PHASE_COLORS)]
        datasets = sorted({r["dataset"] for r in records})
        labels = [label for label in order if label in label_of.values()]
        labels += sorted(set(label_of.values()) - set(labels))
        rows = ["attack (once per scenario)", *labels]
        fig = _new_figure(3.3 * len(metrics) + 1.6, (0.2 * len(rows) + 0.75) * len(datasets) + 0.7)
        axes = fig.subplots(len(datasets), len(metrics), squeeze=False)
        for i, dataset in enumerate(datasets):
            drecords = [r for r in records if r["dataset"] == dataset]
            for j, (key, name, unit) in enumerate(metrics):
                _cost_panel(axes[i][j], drecords, label_of, labels, key)
                axes[i][j].set_title(f"{dataset} · {name} ({unit})")
                axes[i][j].set_yticks(range(len(rows)), rows if j == 0 else [""] * len(rows))
                axes[i][j].invert_yaxis()
        handles = [Patch(color=color, label=f"{phase} phase")
                   for phase, color in PHASE_COLORS.items()]
        fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
        fig.suptitle("Cost per defense and phase: mean ± std over cells (attacks and seeds)", fontsize=10)
        return fig


def _cost_panel(ax, records: list[dict], label_of: dict, labels: list[str], key: str) -> None:
    bars = []  # (y, height offset, phase, values)
    bars.append((0, 0.0, "attack", _phase_values(records, "attack", key)))
    for y, label in enumerate(labels, start=1):
        rows = [r for r in records if label_of[id(r)] == label]
        bars.append((y, -0.2, "defense", _phase_values(rows, "defense", key)))
        bars.append((y, 0.2, "evaluation", _phase_values(rows, "evaluation", key)))
    longest = max((mean_std(v)[0] for *_, v in bars if v), default=1.0) or 1.0
    for y, offset, phase, values in bars:
        if not values:
            continue
        mean, std = mean_std(values)
        height = 0.55 if phase == "attack" else 0.38
        ax.barh(y + offset, mean, height=height, xerr=std if len(values) > 1 else None, color=PHASE_COLORS[phase],
                error_kw={"elinewidth": 0.6, "capsize": 1.5, "ecolor": "#333333"})
        text = f"{mean:.0f}" if mean >= 10 else f"{mean:.1f}"
        ax.text(mean + std + 0.015 * longest, y + offset, text, va="center", fontsize=6, color="#333333")
    ax.set_xlim(0, longest * 1.22)
    ax.grid(axis="y", visible=False)


def figure_bytes(fig: Figure) -> dict[str, bytes]:
    """The figure as SVG and PNG bytes with no date, creator or software recorded."""
    out = {}
    with _style():
        for fmt, metadata in (("svg", {"Date": None, "Creator": None}), ("png", {"Software": None})):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
            out[fmt] = buffer.getvalue()
    return out
