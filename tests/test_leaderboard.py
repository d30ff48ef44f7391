import json

from benchmark.cli.commands import main
from benchmark.reporting.summary import scenario_rebuilds
from benchmark.reporting.tables import build_rankings, build_tables, ranking_rows, ranking_table
from benchmark.reporting.writers import render_leaderboard


def record(defense, seed, cacc, asr, **extra):
    base = {"cell_id": f"{defense}-{seed}", "scenario_id": f"s{seed}", "status": "ok", "dataset": "demo",
            "victim": "v", "attack_label": "badnets", "defense": defense, "defense_label": defense,
            "defense_version": "1", "requires": ["clean_data"] if defense != "none" else [], "seed": seed,
            "cacc": cacc, "asr": asr, "cacc_before": 0.9, "asr_before": 1.0, "cacc_clean": 0.92, "asr_clean": 0.05,
            "delta_cacc": 0.9 - cacc, "delta_asr": 1.0 - asr, "der": (max(0, 1.0 - asr) - max(0, 0.9 - cacc) + 1) / 2,
            "wall_s": 10.0 + seed, "cpu_s": 20.0, "gpu_s": None, "peak_gpu_mb": None, "peak_rss_mb": 900.0,
            "eval_cost": {"wall_s": 2.0, "peak_rss_mb": 800.0},
            "attack_cost": {"wall_s": 30.0, "peak_rss_mb": 1000.0}}
    base.update(extra)
    return base


RECORDS = [record("none", 0, 0.9, 1.0), record("none", 1, 0.9, 1.0), record("finetune", 0, 0.88, 0.4),
           record("finetune", 1, 0.86, 0.2),
           {"cell_id": "x", "status": "failed", "dataset": "demo", "attack_label": "badnets", "defense_label": "nad",
            "seed": 0, "error": "RuntimeError: boom"}]
OK = [r for r in RECORDS if r["status"] == "ok"]


def write_records(folder, records):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_tables_have_reference_rows_and_mean_std():
    [table] = build_tables(OK)
    rows = {row[0]: row for row in table["rows"]}
    assert rows["clean model (reference)"][2] == "0.920 ± 0.000"
    assert rows["backdoored (no defense)"][3] == "1.000 ± 0.000"
    assert rows["finetune"][2] == "0.870 ± 0.014" and rows["finetune"][3] == "0.300 ± 0.141"
    assert rows["finetune"][1] == "clean_data" and rows["none"][1] == "nothing"
    assert table["rows"][2][0] == "finetune"  # defenses ordered by DER
    headers, ranking = ranking_table(ranking_rows(OK))
    assert [r[1] for r in ranking] == ["finetune", "none"]


def test_floor_column_is_asr_above_the_clean_models_per_seed():
    [table] = build_tables(OK)
    floor = table["headers"].index("ASR−clean ↓")
    assert floor == table["headers"].index("ASR ↓") + 1  # beside ASR
    rows = {row[0]: row for row in table["rows"]}
    assert rows["clean model (reference)"][floor] == "0.000 ± 0.000"
    assert rows["backdoored (no defense)"][floor] == "0.950 ± 0.000"
    assert rows["finetune"][floor] == "0.250 ± 0.141"  # (0.4 − 0.05, 0.2 − 0.05)
    headers, ranking = ranking_table(ranking_rows(OK))
    assert ranking[0][headers.index("mean ASR−clean ↓")] == "0.250"


def test_gpu_columns_are_left_out_when_no_record_has_them():
    [cpu] = build_tables(OK)
    assert "GPU s" not in cpu["headers"] and "peak GPU MB" not in cpu["headers"] and "wall s" in cpu["headers"]
    gpu = [dict(r, gpu_s=5.0, peak_gpu_mb=1200.0) for r in OK]
    [table] = build_tables(gpu)
    assert "GPU s" in table["headers"] and "peak GPU MB" in table["headers"]


def test_intermediate_models_and_choices_are_shown(tmp_path):
    nad = [record("nad", s, 0.85, 0.9, aux={"teacher": {"cacc": 0.86 + s / 100, "asr": 0.99}},
                  defense_info={"beta": 1500.0 + s}) for s in (0, 1)]
    mixing = [record("fine_mixing", s, 0.84, 0.3, requires=["clean_data", "clean_dev", "pretrained_weights"],
                     defense_info={"rho": rho, "e_pur_reset": 200,
                                   "tried": [{"rho": 0.1, "dev_acc": 0.6}, {"rho": rho, "dev_acc": 0.8}]})
              for s, rho in ((0, 0.3), (1, 0.5))]
    pruning = [record("fine_pruning", s, 0.88, 1.0, defense_info={"prune_ratio": 0.5, "dev_acc_pruned": 0.8})
               for s in (0, 1)]
    [table] = build_tables(OK + nad + mixing + pruning)
    notes = "\n".join(table["notes"])
    assert "nad: teacher CACC 0.865±0.007, ASR 0.990±0.000; β 1500±1" in notes
    assert "fine_mixing: ρ 0.3/0.5; E-PUR reset 200 rows" in notes
    assert "fine_pruning: pruned 50%; pruned dev acc 0.800±0.000" in notes
    paths = render_leaderboard(write_records(tmp_path, OK + nad + mixing + pruning))
    md, csv, page = (paths[k].read_text(encoding="utf-8") for k in ("md", "csv", "html"))
    assert "Intermediate models and choices:" in md and "* fine_mixing: ρ 0.3/0.5" in md
    assert "demo,v,badnets,nad,clean_data,teacher_cacc,0.865,0.00707107,2" in csv
    assert "demo,v,badnets,fine_mixing,\"clean_data, clean_dev, pretrained_weights\",info.rho,0.4," in csv
    assert "asr_minus_clean" in csv
    assert "ρ 0.3/0.5 · E-PUR reset 200 rows" in page and "teacher CACC 0.865<span class='pm'>±.007</span>" in page
    assert "rho 0.1, dev_acc 0.6" in page  # the models Fine-mixing tried, in the tooltip
    assert "<td class='n best' data-v='0.88'>0.880<span class='pm'>±.000</span></td>" in page  # best CACC


def test_rankings_per_defense_kind():
    records = OK + [dict(record("strip", s, 0.9, 0.5), defense_kind="input_detection") for s in (0, 1)]
    kinds = build_rankings(records)
    assert [kind for kind, _ in kinds] == ["", "input detection"]
    assert [row.label for row in kinds[1][1]] == ["strip"]
    assert [kind for kind, _ in build_rankings(OK)] == [""]


def test_page_is_self_contained_and_describes_the_run(tmp_path):
    records = [dict(r, budget={"train_limit": 100, "clean_fraction": 0.2},
                    provenance={"bdbench_version": "0.1.0", "libraries": {"torch": "2.13.0"}, "precision": "fp32",
                                "processor": "Example CPU 9000" if i else None},
                    device="cpu") for i, r in enumerate(OK)]
    page = render_leaderboard(write_records(tmp_path, records))["html"].read_text(encoding="utf-8")
    for text in ("train 100", "clean data 20% of train", "torch 2.13.0",
                 "precision fp32", "no GPU figures", "What the columns mean", "ASR−clean&nbsp;↓",
                 f"Example CPU 9000 (no processor recorded for 1 of {len(OK)} records)",
                 "<a href='#t-demo-badnets'>", "<section id='t-demo-badnets'>", "data:image/png;base64,",
                 "class='badge b-clean'", "version 1 · parameters"):
        assert text in page, text
    assert "src='http" not in page and "<link rel='stylesheet'" not in page and "GPU s" not in page
    assert "0.870<span class='pm'>±.014</span>" in page  # compact mean±std
    assert "best" not in page.split("<main>")[1].split("<script>")[0]  # one defense beside the baseline: no best


def test_a_scenario_whose_builds_disagree_is_named_in_the_header(tmp_path):
    assert scenario_rebuilds(OK) == []  # every record of a scenario agrees
    digests = {"clean": "c" * 64, "backdoored": "a" * 64}
    rebuilt = dict(record("nad", 1, 0.87, 0.3), cacc_before=0.9005, scenario_weights=dict(digests, backdoored="b" * 64))
    records = [dict(r, scenario_weights=digests) for r in OK] + [rebuilt]
    assert scenario_rebuilds(records) == [
        "demo · badnets · seed 1: cacc_before 0.9, 0.9005 (2 / 1 records), "
        "backdoored weights aaaaaaaaaaaa, bbbbbbbbbbbb (2 / 1 records)"]
    md = render_leaderboard(write_records(tmp_path, records))["md"].read_text(encoding="utf-8")
    assert ("* **scenario builds**: 1 scenario(s) built more than once with different results; each record's Δ "
            "and DER are against its own build: demo · badnets · seed 1: cacc_before 0.9, 0.9005") in md


def test_render_is_byte_identical_in_two_folders_and_lists_failures(tmp_path):
    first = render_leaderboard(write_records(tmp_path / "a", RECORDS), latex=True)
    second = render_leaderboard(write_records(tmp_path / "b", RECORDS), latex=True)
    assert set(first) == set(second) >= {"md", "csv", "html", "asr_vs_cacc", "asr_vs_cacc_png", "cost", "cost_png",
                                         "tex"}
    for key in first:
        assert first[key].read_bytes() == second[key].read_bytes(), key
    data = {k: p.read_bytes() for k, p in first.items()}
    md = data["md"].decode()
    assert "## Failed cells" in md and "RuntimeError: boom" in md
    assert "| finetune " in md and "ASR ↓" in md
    for name in ("asr_vs_cacc", "cost"):
        assert data[name].startswith(b"<?xml") and b"<svg" in data[name] and b"Date" not in data[name]
        assert data[f"{name}_png"].startswith(b"\x89PNG") and b"Software" not in data[f"{name}_png"]
    assert "demo,v,badnets,finetune,clean_data,cacc,0.87,0.0141421,2" in data["csv"].decode()
    assert b"id='failed'" in data["html"] and b"RuntimeError: boom" in data["html"]


def test_different_parameters_under_one_label_are_not_averaged_as_seeds():
    plain = record("fine_mixing", 0, 0.85, 0.5, defense_params={"e_pur": False})
    epur = dict(record("fine_mixing", 0, 0.85, 0.1, defense_params={"e_pur": True}), cell_id="other")
    small_budget = dict(record("none", 0, 0.8, 1.0), cell_id="b", budget={"train_limit": 100})
    tables = build_tables([plain, epur, record("none", 0, 0.9, 1.0), small_budget])
    assert len(tables) == 2 and all("config" in t["heading"] for t in tables)
    assert len({t["anchor"] for t in tables}) == 2
    labels = [row[0] for t in tables for row in t["rows"][2:]]
    assert sum(label.startswith("fine_mixing [") for label in labels) == 2


def test_leaderboard_open_opens_the_page_in_the_browser(tmp_path, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    write_records(tmp_path, OK)
    assert main(["leaderboard", str(tmp_path), "--open"]) == 0
    assert opened == [(tmp_path / "leaderboard.html").resolve().as_uri()]
    assert f"html: {tmp_path / 'leaderboard.html'}" in capsys.readouterr().out


def _write_many(path):
    from benchmark.reporting.writers import write_atomic

    for i in range(200):
        write_atomic(path, f"render {i}\n" * 200)
    return True


def test_concurrent_renders_of_one_folder_never_crash(tmp_path):
    import concurrent.futures
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=spawn) as pool:  # the file writer, hammered
        assert all(pool.map(_write_many, [tmp_path / "leaderboard.md"] * 4))
    write_records(tmp_path, [record("none", s, 0.85, 1.0) for s in (0, 1)]
                  + [record("finetune", s, 0.84, 0.5) for s in (0, 1)])
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=spawn) as pool:  # whole renders side by side
        results = list(pool.map(render_leaderboard, [tmp_path] * 4))
    assert all(r["md"].exists() for r in results)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    expected = (tmp_path / "leaderboard.md").read_bytes()
    render_leaderboard(tmp_path)
    assert (tmp_path / "leaderboard.md").read_bytes() == expected


def test_the_budget_line_names_micro_batches_only_where_a_recipe_sets_them():
    from benchmark.reporting.summary import budget_text

    recipe = {"lr": 2e-5, "epochs": 2, "batch_size": 32}
    plain = budget_text({"victim_training": recipe, "defense_training": recipe})
    assert "micro-batches" not in plain and "victim training lr 2e-05, 2 epochs, batch 32" in plain
    micro = budget_text({"victim_training": dict(recipe, max_batch_tokens=1024), "defense_training": recipe})
    assert "victim training lr 2e-05, 2 epochs, batch 32 (micro-batches of at most 1024 tokens)" in micro
    assert micro.count("micro-batches") == 1


def test_records_of_an_installed_bdbench_render(tmp_path):
    """An installed wheel is no checkout: its records name no git revision (null), and the
    leaderboard renders them, with no revisions line."""
    from benchmark.reporting.summary import run_summary

    unnamed = [dict(r, provenance={"git_revision": None, "bdbench_version": "0.1.0"}) for r in OK]
    assert "git revisions" not in dict(run_summary(unnamed, []))
    mixed = unnamed[:1] + [dict(r, provenance={"git_revision": "0123456789abcdef+dirty"}) for r in OK[1:]]
    assert dict(run_summary(mixed, []))["git revisions"] == "0123456789+dirty"
    write_records(tmp_path, unnamed)
    assert render_leaderboard(tmp_path)["md"].read_text(encoding="utf-8").startswith("# Leaderboard")
