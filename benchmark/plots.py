"""Dependency-free SVG plots for the leaderboard (deterministic text output)."""

from __future__ import annotations

import html
from collections import defaultdict

from .metrics import mean_std

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22"]


def _color(labels: list[str]) -> dict[str, str]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(labels))}


def asr_vs_cacc_svg(records: list[dict], width: int = 640, height: int = 440) -> str:
    """One point per (defense, data set × attack): mean CACC (x) against mean ASR (y)."""
    points = defaultdict(list)
    for r in records:
        points[(r["defense_label"], r["dataset"], r["attack_label"])].append(r)
    colors = _color(list({k[0] for k in points}))
    left, right, top, bottom = 60, 170, 30, 50
    pw, ph = width - left - right, height - top - bottom
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='sans-serif' "
           "font-size='11'>", f"<text x='{left}' y='18' font-size='13'>ASR vs CACC per defense (mean over seeds)</text>",
           f"<rect x='{left}' y='{top}' width='{pw}' height='{ph}' fill='none' stroke='#444'/>"]
    for tick in range(0, 11, 2):
        v = tick / 10
        x, y = left + v * pw, top + (1 - v) * ph
        out.append(f"<text x='{x:.1f}' y='{top + ph + 15}' text-anchor='middle'>{v:.1f}</text>")
        out.append(f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end'>{v:.1f}</text>")
    out.append(f"<text x='{left + pw / 2}' y='{height - 12}' text-anchor='middle'>CACC ↑</text>")
    out.append(f"<text x='16' y='{top + ph / 2}' transform='rotate(-90 16 {top + ph / 2})' "
               "text-anchor='middle'>ASR ↓</text>")
    for (label, dataset, attack), rows in sorted(points.items()):
        cacc, _ = mean_std([r["cacc"] for r in rows])
        asr, _ = mean_std([r["asr"] for r in rows])
        x, y = left + cacc * pw, top + (1 - asr) * ph
        title = html.escape(f"{label} · {dataset} · {attack}: CACC {cacc:.3f}, ASR {asr:.3f}")
        out.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='5' fill='{colors[label]}' fill-opacity='0.8'>"
                   f"<title>{title}</title></circle>")
    for i, label in enumerate(sorted(colors)):
        y = top + 10 + i * 16
        out.append(f"<circle cx='{left + pw + 15}' cy='{y}' r='5' fill='{colors[label]}'/>")
        out.append(f"<text x='{left + pw + 25}' y='{y + 4}'>{html.escape(label)}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def cost_svg(records: list[dict], width: int = 640) -> str:
    """Mean wall seconds of each defense's own phase (horizontal bars)."""
    by_defense = defaultdict(list)
    for r in records:
        by_defense[r["defense_label"]].append(r["wall_s"])
    rows = sorted(((mean_std(v)[0], k) for k, v in by_defense.items()), key=lambda t: (-t[0], t[1]))
    left, bar_h, top = 150, 18, 30
    height = top + len(rows) * (bar_h + 6) + 30
    longest = max((v for v, _ in rows), default=1.0) or 1.0
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='sans-serif' "
           "font-size='11'>", "<text x='10' y='18' font-size='13'>Defense cost: mean wall seconds per cell</text>"]
    for i, (value, label) in enumerate(rows):
        y = top + i * (bar_h + 6)
        w = (width - left - 70) * value / longest
        out.append(f"<text x='{left - 6}' y='{y + 13}' text-anchor='end'>{html.escape(label)}</text>")
        out.append(f"<rect x='{left}' y='{y}' width='{w:.1f}' height='{bar_h}' fill='#1f77b4'/>")
        out.append(f"<text x='{left + w + 4:.1f}' y='{y + 13}'>{value:.1f} s</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
