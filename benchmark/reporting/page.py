"""``leaderboard.html``: one self-contained page (inline CSS, a small inline script, plots as
data URIs; nothing is fetched to view it) built from :mod:`benchmark.reporting.tables`'s tables.

The header says what was run and what every column means; a contents list leads to the overall
ranking, the plots and one section per table. Clicking a column heading sorts that table's
defense rows (the two reference rows stay on top); the best value of each ranked column among
the defenses is marked (the identity defense ``none`` is a baseline and never marked); values are
``mean±std`` over seeds in one unbroken line. A defense's version and parameters are in the
tooltip of its name. The page is a pure function of the records: no clock, no random ids.
"""

from __future__ import annotations

import base64
import html
import json

from ..base.requirements import badge_order, requirement_label, requirement_meaning
from .tables import Column, Stat, TableRow, ranking_columns, ranking_criterion

CSS = """
:root{--fg:#1d2330;--muted:#5b6472;--line:#e3e6eb;--head:#f3f5f8;--best:#dff3e4;--bestfg:#0d5a22;--accent:#2458b3}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg)}
header,main,footer{max-width:1560px;margin:0 auto;padding:0 24px}
header{padding-top:18px}
h1{font-size:24px;margin:0 0 2px}
h2{font-size:18px;margin:26px 0 6px;padding-top:10px;border-top:1px solid var(--line)}
h3{font-size:13px;margin:0 0 6px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.lede{color:var(--muted);margin:0 0 12px}
.cards{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:14px}
@media (max-width:900px){.cards{grid-template-columns:1fr}}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:#fbfcfd}
dl.kv{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:2px 12px;margin:0;font-size:12.5px}
dl.kv dt{font-weight:600;color:var(--muted);white-space:nowrap}
dl.kv dd{margin:0}
nav.toc ol{list-style:none;display:flex;flex-wrap:wrap;gap:6px;padding:0;margin:14px 0 0}
nav.toc a{display:inline-block;padding:2px 10px;border:1px solid var(--line);border-radius:999px;
  text-decoration:none;color:var(--accent);font-size:13px;background:#fff}
nav.toc a:hover{background:var(--head)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px;font-variant-numeric:tabular-nums;margin:4px 0}
th,td{padding:4px 6px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
thead th{background:var(--head);font-weight:600;cursor:pointer;user-select:none;vertical-align:bottom;
  border-bottom:2px solid #cfd4da;line-height:1.25}
thead th:hover{background:#e8ecf1}
thead th::after{content:"\\2195";color:#aab1ba;font-size:11px;margin-left:2px;visibility:hidden}
thead th:hover::after,thead th:focus::after{visibility:visible}
thead th[aria-sort=ascending]::after{content:"\\25B2";color:var(--accent);visibility:visible}
thead th[aria-sort=descending]::after{content:"\\25BC";color:var(--accent);visibility:visible}
td.n{text-align:right;white-space:nowrap}
th.n{text-align:right}
td.name{white-space:nowrap;font-weight:600}
tr.baseline td.name{color:var(--muted);font-weight:400}
td.req,.reqs{white-space:nowrap}
.reqs{margin-top:2px;font-weight:400}
.pm{color:var(--muted);font-size:11px;font-weight:400}
td.best{background:var(--best);color:var(--bestfg);font-weight:700}
td.best .pm{color:var(--bestfg)}
tbody.ref td{background:#fafbfc;color:var(--muted);font-style:italic}
tbody.ref tr:last-child td{border-bottom:2px solid #cfd4da}
.sep{border-left:1px solid #d5d9de}
.badge{display:inline-block;padding:0 6px;margin-right:3px;border-radius:4px;font-size:11px;line-height:18px;
  font-weight:600;white-space:nowrap;background:#eceef1;color:#4a525e;font-style:normal}
.b-clean{background:#e1ecff;color:#1c4b9c}.b-dev{background:#eee4ff;color:#5a2ca6}
.b-pre-trained{background:#fff0d4;color:#874f00}.b-target{background:#ffe0e0;color:#9e1c1c}
td.details{color:var(--muted);font-size:12px;min-width:13em;max-width:18em}
.note{font-size:12px;color:var(--muted);margin:4px 0}
figure{margin:10px 0 18px}
figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px}
figcaption{color:var(--muted);font-size:12px;margin-top:4px}
pre.err{white-space:pre-wrap;margin:0;font-size:12px}
footer{color:var(--muted);font-size:12px;padding-top:20px;padding-bottom:28px}
"""

SCRIPT = """
(function () {
  function key(row, col) {
    var cell = row.cells[col], s = cell.getAttribute('data-s'), v = cell.getAttribute('data-v');
    if (s !== null) return s.toLowerCase();
    if (v === null) return cell.textContent.trim().toLowerCase();
    return v === '' ? null : parseFloat(v);
  }
  function sortBy(th) {
    var table = th.closest('table'), body = table.tBodies[table.tBodies.length - 1];
    var col = th.cellIndex, now = th.getAttribute('aria-sort');
    var dir = now ? (now === 'ascending' ? 'descending' : 'ascending')
                  : (th.getAttribute('data-better') === 'higher' ? 'descending' : 'ascending');
    table.querySelectorAll('thead th[aria-sort]').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir);
    var rows = Array.prototype.slice.call(body.rows), sign = dir === 'ascending' ? 1 : -1;
    rows.sort(function (a, b) {
      var ka = key(a, col), kb = key(b, col);
      if (ka === null || kb === null) return ka === kb ? a.dataset.i - b.dataset.i : (ka === null ? 1 : -1);
      var c = typeof ka === 'number' ? ka - kb : ka.localeCompare(kb);
      return c ? sign * c : a.dataset.i - b.dataset.i;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll('table.sortable thead th').forEach(function (th) {
    th.tabIndex = 0;
    th.addEventListener('click', function () { sortBy(th); });
    th.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sortBy(th); }
    });
  });
})();
"""

E = html.escape


def _compact(stat: Stat, digits: int) -> str:
    """``0.848<span class=pm>±.005</span>``: the std without its leading zero, never wrapped."""
    if stat.empty:
        return ""
    mean = f"{stat.mean:.{digits}f}"
    if stat.n < 2:
        return mean
    std = f"{stat.std:.{digits}f}"
    std = std[1:] if std.startswith("0.") else std
    return f"{mean}<span class='pm'>±{std}</span>"


def _badges(requires: tuple[str, ...]) -> str:
    if not requires:
        return "<span class='badge b-none' title='needs nothing beyond the backdoored model'>nothing</span>"
    out = []
    for req in sorted(requires, key=badge_order):
        label = requirement_label(req)
        out.append(f"<span class='badge b-{E(label.replace(' ', '-'))}' title='{E(req)}: "
                   f"{E(requirement_meaning(req))}'>{E(label)}</span>")
    return "".join(out)


def _best(rows: list[TableRow], column: Column) -> set[int]:
    """Indexes of the rows holding the best value of a ranked column (ties all marked)."""
    if column.better is None:
        return set()
    values = {i: round(row.stats[column.key].mean, column.digits) for i, row in enumerate(rows)
              if not row.baseline and not row.stats[column.key].empty}
    if len(values) < 2:
        return set()
    best = max(values.values()) if column.better == "higher" else min(values.values())
    return {i for i, v in values.items() if v == best}


def _header_cell(text: str, help_text: str, numeric: bool, better: str | None = None, sep: bool = False) -> str:
    cls = " ".join(c for c in ("n" if numeric else "", "sep" if sep else "") if c)
    attrs = f" class='{cls}'" if cls else ""
    if better:
        attrs += f" data-better='{better}'"
    text = E(text).replace(" ↑", "&nbsp;↑").replace(" ↓", "&nbsp;↓")  # the arrow stays with its name
    return f"<th scope='col'{attrs} title='{E(help_text)}'>{text}</th>"


def _number_cell(stat: Stat, column: Column, best: bool, sep: bool) -> str:
    cls = "n" + (" best" if best else "") + (" sep" if sep else "")
    value = "" if stat.empty else repr(round(stat.mean, 9))
    return f"<td class='{cls}' data-v='{value}'>{_compact(stat, column.digits)}</td>"


def _name_cell(row: TableRow, badges: bool = False) -> str:
    """The row's label (sorted by it); for a defense, its version and parameters as the tooltip and,
    with ``badges``, its requirements beneath the name."""
    if row.kind != "defense":
        return f"<td class='name' data-s='{E(row.label)}'>{E(row.label)}</td>"
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(row.params.items())) or "defaults"
    title = f"{row.label} · version {row.version} · parameters: {params}"
    below = f"<div class='reqs'>{_badges(row.requires)}</div>" if badges else ""
    return f"<td class='name' data-s='{E(row.label)}' title='{E(title)}'>{E(row.label)}{below}</td>"


def _baseline(row: TableRow) -> str:
    return " class='baseline'" if row.baseline else ""


def _separators(columns: list[Column]) -> set[str]:
    """Keys of the first column of each group after the first (a thin rule before it)."""
    seps, group = set(), columns[0].group if columns else None
    for c in columns:
        if c.group != group and not (c.group == "extra" and group == "metric"):
            seps.add(c.key)
        group = c.group
    return seps


def _intermediate(row: TableRow, aux_names: list[str]) -> tuple[str, str]:
    """The intermediate-models cell of a defense row: its HTML and its tooltip."""
    shown, title = [], []
    for name in aux_names:
        cacc, asr = row.stats[f"{name}_cacc"], row.stats[f"{name}_asr"]
        if not cacc.empty or not asr.empty:
            shown.append(f"{E(name)} CACC {_compact(cacc, 3)}, ASR {_compact(asr, 3)}")
            title.append(f"{name}: the defense's intermediate {name} model, CACC {cacc.text()}, ASR {asr.text()}")
    shown += [E(short) for short, _ in row.details if short]
    title += [f"{short}: {long}" if short else long for short, long in row.details]
    return " · ".join(shown), "; ".join(title)


def _table(table: dict) -> str:
    columns = [c for c in table["columns"] if c.group != "aux"]
    defenses: list[TableRow] = table["defenses"]
    aux_names = sorted({c.key.rsplit("_", 1)[0] for c in table["columns"] if c.group == "aux"})
    intermediate = {i: _intermediate(row, aux_names) for i, row in enumerate(defenses)}
    at = None  # the intermediate column goes just before the costs
    if any(text for text, _ in intermediate.values()):
        at = next((j for j, c in enumerate(columns) if c.group == "cost"), len(columns))
    seps = _separators(columns)
    head = [_header_cell("defense · requires", "the defense (hover a name for its version and parameters) and "
                         "what it declared it needs: clean = the defender's clean training data, dev = a clean dev "
                         "split, pre-trained = the victim's pre-trained weights, target = the target label", False)]
    head += [_header_cell(c.heading, c.help, True, c.better, c.key in seps) for c in columns]
    if at is not None:
        head.insert(1 + at, _header_cell("intermediate models", "what the defense trained or chose on the way: "
                                         "teacher models' CACC and ASR, prune ratio, ρ, reset rows, β (hover a cell "
                                         "for details)", False, sep=True))
    head.append(_header_cell("seeds", "seeds averaged", True))
    best = {c.key: _best(defenses, c) for c in columns}

    def cells(row: TableRow, i: int | None) -> str:
        out = [_name_cell(row, badges=True)]
        out += [_number_cell(row.stats[c.key], c, i is not None and i in best[c.key], c.key in seps) for c in columns]
        if at is not None:
            text, title = intermediate.get(i, ("", "")) if i is not None else ("", "")
            out.insert(1 + at, f"<td class='details sep' title='{E(title)}'>{text}</td>")
        out.append(f"<td class='n' data-v='{row.seeds}'>{row.seeds}</td>")
        return "".join(out)

    refs = "".join(f"<tr>{cells(row, None)}</tr>" for row in table["refs"])
    body = "".join(f"<tr data-i='{i}'{_baseline(row)}>{cells(row, i)}</tr>" for i, row in enumerate(defenses))
    return (f"<div class='scroll'><table class='sortable' id='{table['anchor']}-table'><thead><tr>{''.join(head)}"
            f"</tr></thead><tbody class='ref'>{refs}</tbody><tbody>{body}</tbody></table></div>")


def _ranking(rows: list[TableRow], anchor: str, kind: str = "") -> str:
    ranked = ranking_columns(kind)
    head = [_header_cell("rank", f"by {ranking_criterion(kind)}", True), _header_cell("defense", "the defense", False),
            _header_cell("requires", "what the defense declared it needs", False),
            *[_header_cell(c.heading, c.help, True, c.better) for c in ranked],
            _header_cell("cells", "cells averaged (data sets × attacks × seeds)", True)]
    best = {c.key: _best(rows, c) for c in ranked}
    body = []
    for i, row in enumerate(rows):
        means = {c.key: Stat(row.stats[c.key].mean, 0.0, min(row.stats[c.key].n, 1)) for c in ranked}
        body.append(f"<tr data-i='{i}'{_baseline(row)}><td class='n' data-v='{i + 1}'>{i + 1}</td>{_name_cell(row)}"
                    f"<td class='req'>{_badges(row.requires)}</td>"
                    + "".join(_number_cell(means[c.key], c, i in best[c.key], False) for c in ranked)
                    + f"<td class='n' data-v='{row.seeds}'>{row.seeds}</td></tr>")
    return (f"<div class='scroll'><table class='sortable' id='{anchor}-table'><thead><tr>{''.join(head)}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _column_legend(tables: list[dict]) -> str:
    columns, seen = [], set()
    for c in [c for t in tables for c in t["columns"]]:
        if c.key not in seen:
            seen.add(c.key)
            columns.append(c)
    items = [("defense", "hover a name for its version and parameters"),
             ("requires", "badges under a defense's name, what it declared it needs: clean = the defender's clean "
                          "training data · dev = a clean dev split · pre-trained = the victim's pre-trained weights · "
                          "target = the target label")]
    items += [(c.heading, c.help) for c in columns if c.group in ("metric", "extra")]
    if any(c.group == "aux" for c in columns) or any(row.details for t in tables for row in t["defenses"]):
        items.append(("intermediate models", "what a defense trained or chose on the way: its teacher model's CACC "
                      "and ASR (NAD, MBTSAD), fine-pruning's pruned share and the pruned model's dev accuracy, "
                      "Fine-mixing's ρ, E-PUR's reset rows, NAD's β; a/b/c: per seed"))
    items += [(c.heading, c.help) for c in columns if c.group == "cost"]
    items += [("seeds", "seeds averaged"),
              ("±", "std over seeds; green: the best value among the defenses (the no-defense row excluded)")]
    return "".join(f"<dt>{E(term)}</dt><dd>{E(text)}</dd>" for term, text in items)


def _figure(name: str, data: dict[str, bytes], alt: str, caption: str) -> str:
    png = base64.b64encode(data["png"]).decode("ascii")
    return (f"<figure id='fig-{name}'><img src='data:image/png;base64,{png}' alt='{E(alt)}'>"
            f"<figcaption>{E(caption)} Files: <a href='{name}.svg'>{name}.svg</a>, "
            f"<a href='{name}.png'>{name}.png</a>.</figcaption></figure>")


def render_page(summary: list[tuple[str, str]], rankings: list[tuple[str, list[TableRow]]], tables: list[dict],
                failed: list[dict], figures: dict[str, dict[str, bytes]]) -> str:
    """The whole page as one string."""
    run = "".join(f"<dt>{E(term)}</dt><dd>{E(text)}</dd>" for term, text in summary)
    toc = [("ranking", "Overall ranking"), ("plots", "Plots")] + [(t["anchor"], t["title"]) for t in tables]
    if failed:
        toc.append(("failed", f"Failed cells ({len(failed)})"))
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             "<title>bdbench leaderboard</title><link rel='icon' href='data:,'>", f"<style>{CSS}</style></head><body>",
             "<header><h1>bdbench leaderboard</h1>",
             "<p class='lede'>Backdoor defenses for text classifiers, mean ± std over seeds. Click a column heading "
             "to sort; hover a heading for its meaning.</p>",
             f"<div class='cards'><section class='card' id='run'><h3>What was run</h3><dl class='kv'>{run}</dl></section>",
             f"<section class='card' id='columns'><h3>What the columns mean</h3><dl class='kv'>{_column_legend(tables)}"
             "</dl></section></div>",
             "<nav class='toc' aria-label='Contents'><ol>"
             + "".join(f"<li><a href='#{a}'>{E(text)}</a></li>" for a, text in toc) + "</ol></nav></header><main>"]
    if len(rankings) > 1:  # name the criterion of each kind present, and only those
        criteria = "; ".join(f"{kind} by {ranking_criterion(kind)}" for kind, _ in rankings)
        ranking_note = f"one ranking per kind of defense: {criteria}"
    else:
        ranking_note = f"ordered by {ranking_criterion(rankings[0][0] if rankings else '')}"
    parts.append("<section id='ranking'><h2>Overall ranking</h2>"
                 f"<p class='note'>Means over every table (data set × attack) and seed, {E(ranking_note)}.</p>")
    for kind, rows in rankings:
        anchor = "ranking" + (f"-{kind.replace(' ', '-')}" if kind else "")
        if kind and len(rankings) > 1:
            parts.append(f"<h3>{E(kind)} <span class='note'>(by {E(ranking_criterion(kind))})</span></h3>")
        parts.append(_ranking(rows, anchor, kind))
    parts.append("</section><section id='plots'><h2>Plots</h2>")
    if "asr_vs_cacc" in figures:
        parts.append(_figure("asr_vs_cacc", figures["asr_vs_cacc"], "ASR against CACC per data set and attack",
                             "Each defense at its mean CACC and ASR with the seeds' std as bars; ★ the clean "
                             "reference model, ✕ the undefended backdoored model; dashed: the clean model's ASR; "
                             "shaded: the ideal corner (at least the clean model's CACC, at most its ASR)."))
    if "cost" in figures:
        parts.append(_figure("cost", figures["cost"], "cost per defense and phase",
                             "Mean cost of each defense's own phase and of the evaluation of its model; the attack "
                             "is built once per scenario and shared by every defense."))
    parts.append("</section>")
    for table in tables:
        parts.append(f"<section id='{table['anchor']}'><h2>{E(table['title'])}</h2>"
                     f"<p class='note'>{E(table['heading'])}: the two reference rows (clean model, undefended "
                     "backdoored model) stay on top; the defense rows sort.</p>")
        parts.append(_table(table) + "</section>")
    if failed:
        rows = "".join(f"<tr><td>{E(str(r.get('dataset', '')))}</td><td>{E(str(r.get('attack_label', '')))}</td>"
                       f"<td>{E(str(r.get('defense_label', '')))}</td><td class='n'>{E(str(r.get('seed', '')))}</td>"
                       f"<td><pre class='err'>{E(str(r.get('error', ''))[:400])}</pre></td></tr>"
                       for r in sorted(failed, key=lambda r: [str(r.get(k, "")) for k in
                                                              ("dataset", "attack_label", "defense_label", "seed")]))
        parts.append("<section id='failed'><h2>Failed cells</h2><div class='scroll'><table><thead><tr><th>dataset</th>"
                     "<th>attack</th><th>defense</th><th>seed</th><th>error</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table></div></section>")
    parts.append("</main><footer>Rendered by <code>bdbench leaderboard</code> from <code>records.jsonl</code> "
                 "in this folder; the same records give the same page, byte for byte.</footer>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"
