import json

from benchmark.leaderboard import build_ranking, build_tables, render_leaderboard


def record(defense, seed, cacc, asr, **extra):
    base = {"cell_id": f"{defense}-{seed}", "scenario_id": f"s{seed}", "status": "ok", "dataset": "demo",
            "victim": "v", "attack_label": "badnets", "defense_label": defense, "defense_version": "1",
            "requires": ["clean_data"] if defense != "none" else [], "seed": seed, "cacc": cacc, "asr": asr,
            "cacc_before": 0.9, "asr_before": 1.0, "cacc_clean": 0.92, "asr_clean": 0.05,
            "delta_cacc": 0.9 - cacc, "delta_asr": 1.0 - asr, "der": (max(0, 1.0 - asr) - max(0, 0.9 - cacc) + 1) / 2,
            "wall_s": 10.0 + seed, "cpu_s": 20.0, "gpu_s": None, "peak_gpu_mb": None, "peak_rss_mb": 900.0}
    base.update(extra)
    return base


RECORDS = [record("none", 0, 0.9, 1.0), record("none", 1, 0.9, 1.0), record("finetune", 0, 0.88, 0.4),
           record("finetune", 1, 0.86, 0.2),
           {"cell_id": "x", "status": "failed", "dataset": "demo", "attack_label": "badnets", "defense_label": "nad",
            "seed": 0, "error": "RuntimeError: boom"}]


def test_tables_have_reference_rows_and_mean_std():
    [table] = build_tables([r for r in RECORDS if r["status"] == "ok"])
    rows = {row[0]: row for row in table["rows"]}
    assert rows["clean model (reference)"][2] == "0.920 ± 0.000"
    assert rows["backdoored (no defense)"][3] == "1.000 ± 0.000"
    assert rows["finetune"][2] == "0.870 ± 0.014" and rows["finetune"][3] == "0.300 ± 0.141"
    assert rows["finetune"][1] == "clean_data" and rows["none"][1] == "nothing"
    assert table["rows"][2][0] == "finetune"  # defenses ordered by DER
    headers, ranking = build_ranking([r for r in RECORDS if r["status"] == "ok"])
    assert [r[1] for r in ranking] == ["finetune", "none"]


def test_render_is_byte_stable_and_lists_failures(tmp_path):
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    paths = render_leaderboard(tmp_path, latex=True)
    first = {k: p.read_bytes() for k, p in paths.items()}
    paths = render_leaderboard(tmp_path, latex=True)
    assert {k: p.read_bytes() for k, p in paths.items()} == first
    md = first["md"].decode()
    assert "## Failed cells" in md and "RuntimeError: boom" in md
    assert "| finetune " in md and "ASR ↓" in md
    assert first["asr_vs_cacc"].startswith(b"<svg") and b"finetune" in first["cost"]
    assert "demo,v,badnets,finetune,clean_data,cacc,0.87,0.0141421,2" in first["csv"].decode()


def test_different_parameters_under_one_label_are_not_averaged_as_seeds():
    plain = record("fine_mixing", 0, 0.85, 0.5, defense_params={"e_pur": False})
    epur = dict(record("fine_mixing", 0, 0.85, 0.1, defense_params={"e_pur": True}), cell_id="other")
    small_budget = dict(record("none", 0, 0.8, 1.0), cell_id="b", budget={"train_limit": 100})
    tables = build_tables([plain, epur, record("none", 0, 0.9, 1.0), small_budget])
    assert len(tables) == 2 and all("config" in t["heading"] for t in tables)
    labels = [row[0] for t in tables for row in t["rows"][2:]]
    assert sum(label.startswith("fine_mixing [") for label in labels) == 2
