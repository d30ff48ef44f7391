"""leaderboard.html in a real browser: headless Chromium driven over the DevTools protocol
(tests/chromium.py). Skipped where no Chromium binary is found."""

import json

import pytest
from chromium import Chromium, find_chromium

from benchmark.reporting.tables import build_tables, latest_ok
from benchmark.reporting.writers import render_leaderboard

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found: install the Debian package "
                                                          "`chromium` (or set BDBENCH_CHROMIUM to a Chrome binary)")

# (defense, requires, CACC, ASR, extra fields): DER order (nad, fine_pruning, finetune, none) differs from
# CACC order (none, finetune, fine_pruning, nad), so a click on CACC visibly reorders the rows
DEFENSES = [("none", [], 0.90, 1.00, {}), ("finetune", ["clean_data"], 0.88, 0.95, {}),
            ("fine_pruning", ["clean_data", "clean_dev"], 0.85, 0.50, {"defense_info": {"prune_ratio": 0.3}}),
            ("nad", ["clean_data"], 0.80, 0.10, {"aux": {"teacher": {"cacc": 0.88, "asr": 0.99}}})]


def synthetic_records() -> list[dict]:
    records = []
    for dataset in ("demo", "toy"):
        for attack in ("badnets", "lwp"):
            for seed in (0, 1):
                scenario = f"{dataset}-{attack}-{seed}"
                for defense, requires, cacc, asr, extra in DEFENSES:
                    cacc, asr = cacc - seed / 100, asr - seed / 200
                    records.append({
                        "cell_id": f"{scenario}-{defense}", "scenario_id": scenario, "status": "ok", "seed": seed,
                        "dataset": dataset, "victim": "tiny", "attack_label": attack, "defense": defense,
                        "defense_label": defense, "defense_version": "1", "defense_params": {}, "requires": requires,
                        "cacc": cacc, "asr": asr, "cacc_before": 0.9, "asr_before": 1.0, "cacc_clean": 0.91,
                        "asr_clean": 0.08, "delta_cacc": 0.9 - cacc, "delta_asr": 1.0 - asr,
                        "der": (max(0, 1.0 - asr) - max(0, 0.9 - cacc) + 1) / 2, "wall_s": 3.0, "cpu_s": 3.0,
                        "gpu_s": None, "peak_gpu_mb": None, "peak_rss_mb": 500.0, "device": "cpu",
                        "eval_cost": {"wall_s": 1.0, "peak_rss_mb": 450.0},
                        "attack_cost": {"wall_s": 9.0, "peak_rss_mb": 700.0}, **extra})
    records.append({"cell_id": "broken", "status": "failed", "dataset": "demo", "attack_label": "badnets",
                    "defense_label": "mbtsad", "seed": 0, "error": "RuntimeError: boom"})
    return records


def column_values(page, table: str, column: int) -> list:
    return page.evaluate(f"Array.from(document.querySelectorAll({json.dumps(table + ' tbody:last-child tr')}))"
                         f".map(r => [r.cells[0].getAttribute('data-s'), r.cells[{column}].getAttribute('data-v')])")


def test_leaderboard_page_in_chromium(tmp_path):
    records = synthetic_records()
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    paths = render_leaderboard(tmp_path)
    tables = build_tables(latest_ok(records)[0])
    with Chromium(CHROMIUM) as browser:
        page = browser.new_page(1400, 900)
        page.goto(paths["html"].resolve().as_uri())

        # every section is there, and the contents list reaches each of them
        sections = page.evaluate("Array.from(document.querySelectorAll('main > section')).map(s => s.id)")
        assert sections == ["ranking", "plots", *[t["anchor"] for t in tables], "failed"]
        assert len(tables) == 4
        targets = page.evaluate("Array.from(document.querySelectorAll('nav.toc a'))"
                                ".map(a => !!document.getElementById(a.getAttribute('href').slice(1)))")
        assert targets == [True] * len(sections)
        # both plots are decoded images of real size
        plots = page.evaluate("Array.from(document.querySelectorAll('#plots figure img'))"
                              ".map(i => [i.closest('figure').id, i.complete && i.naturalWidth > 300])")
        assert plots == [["fig-asr_vs_cacc", True], ["fig-cost", True]]

        # a click on a heading sorts that table's defense rows; a second click reverses them
        table = f"#{tables[0]['anchor']}-table"
        headings = page.evaluate(f"Array.from(document.querySelectorAll('{table} thead th')).map(t => t.textContent)")
        cacc = headings.index("CACC\u00a0↑")
        before = [name for name, _ in column_values(page, table, cacc)]
        assert before == ["nad", "fine_pruning", "finetune", "none"]  # by DER
        page.click(f"{table} thead th:nth-child({cacc + 1})")
        after = column_values(page, table, cacc)
        assert [name for name, _ in after] == ["none", "finetune", "fine_pruning", "nad"]  # better (higher) first
        assert [float(v) for _, v in after] == sorted((float(v) for _, v in after), reverse=True)
        assert page.evaluate(f"document.querySelector('{table} thead th:nth-child({cacc + 1})')"
                             ".getAttribute('aria-sort')") == "descending"
        page.click(f"{table} thead th:nth-child({cacc + 1})")
        assert [name for name, _ in column_values(page, table, cacc)] == ["nad", "fine_pruning", "finetune", "none"]
        refs = page.evaluate(f"Array.from(document.querySelectorAll('{table} tbody.ref tr'))"
                             ".map(r => r.cells[0].textContent)")
        assert refs == ["clean model (reference)", "backdoored (no defense)"]  # reference rows stay on top
        page.click("#ranking-table thead th:nth-child(2)")  # by name
        names = page.evaluate("Array.from(document.querySelectorAll('#ranking-table tbody tr'))"
                              ".map(r => r.cells[1].textContent)")
        assert names == ["fine_pruning", "finetune", "nad", "none"]

        # compact mean±std never wraps, the intermediate models are shown, best values are marked
        heights = page.evaluate(f"Array.from(document.querySelectorAll('{table} td.n')).filter(td => td.textContent)"
                                ".map(td => { const r = document.createRange(); r.selectNodeContents(td);"
                                " return r.getBoundingClientRect().height; })")
        assert len(heights) > 20 and max(heights) < 24  # the text of every number cell is one line high
        details = page.evaluate(f"Array.from(document.querySelectorAll('{table} td.details')).map(d => d.textContent)")
        assert "pruned 30%" in details and "teacher CACC 0.880±.000, ASR 0.990±.000" in details
        assert page.evaluate(f"document.querySelectorAll('{table} td.best').length") > 0

        shot = page.screenshot(tmp_path / "leaderboard.png")
        assert shot.startswith(b"\x89PNG") and len(shot) > 20_000
        assert page.errors() == []
