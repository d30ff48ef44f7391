"""Stealthiness figures: edit sizes in words, the share of changed texts, and the leaderboard's
note for the scenarios whose records carry them."""

from __future__ import annotations

import math

from benchmark.base.stealth import edit_words, stealth_figures
from benchmark.reporting.tables import build_tables


def test_an_insertion_costs_its_words_and_a_rewrite_its_replacements():
    assert edit_words("the film is dull", "the film cf is dull") == 1
    assert edit_words("the film is dull", "I watch this 3D movie the film is dull") == 5
    assert edit_words("the film is dull", "the movie is boring") == 2
    assert edit_words("The Film", "the film") == 0  # lower-cased words
    assert edit_words("a b c", "") == 3


def test_figures_over_pairs():
    figures = stealth_figures([("a b c d", "a b c d"), ("a b c d", "a x c d cf")])
    assert figures == {"pairs": 2, "changed_share": 0.5, "edit_words_mean": 1.0, "edit_share_mean": 0.25}
    empty = stealth_figures([])
    assert empty["pairs"] == 0 and math.isnan(empty["changed_share"])


def record(seed: int, stealth: dict | None) -> dict:
    out = {"dataset": "d", "victim": "v", "attack": "a", "attack_label": "a", "attack_params": {}, "budget": {},
           "defense": "none", "defense_label": "none", "seed": seed, "scenario_id": f"s{seed}", "status": "ok",
           "cacc": 0.9, "asr": 1.0, "cacc_before": 0.9, "asr_before": 1.0, "cacc_clean": 0.9, "asr_clean": 0.1}
    if stealth is not None:
        out["attack_stealth"] = stealth
    return out


def test_the_leaderboard_notes_a_scenarios_figures_only_when_recorded():
    figures = {"pairs": 10, "changed_share": 1.0, "edit_words_mean": 6.0, "edit_share_mean": 0.3}
    (table,) = build_tables([record(0, figures), record(1, {**figures, "edit_words_mean": 8.0})])
    assert table["notes"][0] == ("triggered test texts against their sources: 1.000 changed, 7.0 words edited on "
                                 "average (30% of the source's)")
    (table,) = build_tables([record(0, None)])
    assert not any("triggered test texts" in note for note in table["notes"])
