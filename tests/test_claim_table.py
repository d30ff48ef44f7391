from helpers import load_script

SCRIPT = "claim_table.py"


def record(label, seed, asr, cacc=0.85, dataset="sst2", attack="badnets", floor=0.1, teacher_asr=None, status="ok"):
    aux = {"teacher": {"asr": teacher_asr, "cacc": 0.86}} if teacher_asr is not None else {}
    return {"cell_id": f"{dataset}/{attack}/{label}/{seed}", "dataset": dataset, "attack": attack,
            "defense_label": label, "seed": seed, "status": status, "asr": asr, "cacc": cacc,
            "asr_clean": floor, "cacc_clean": 0.9, "aux": aux}


def test_a_row_reads_mbtsad_against_the_floor_the_bound_and_fine_mixing():
    [row] = load_script(SCRIPT).rows([
        record("none", 0, asr=1.0), record("none", 1, asr=1.0),
        record("mbtsad", 0, asr=0.15, floor=0.1, teacher_asr=0.9),
        record("mbtsad", 1, asr=0.35, floor=0.2, teacher_asr=1.0),
        record("fine_mixing", 0, asr=0.2, cacc=0.8), record("fine_mixing", 1, asr=0.4, cacc=0.9),
    ])
    assert row[:3] == ["sst2", "badnets", "2"]
    assert row[4] == "0.150 ± 0.071"  # the floor: the clean model's ASR
    assert row[5] == "0.850 / 1.000"
    assert row[7:11] == ["0.250 ± 0.141", "0.100 ± 0.071", "0.950 ± 0.071", "1/2"]
    assert row[11] == "0.850 / 0.300" and row[12] == ""  # no E-PUR record: empty, not dropped


def test_failed_cells_and_scenarios_without_mbtsad_are_left_out():
    rows = load_script(SCRIPT).rows([
        record("mbtsad", 0, asr=0.9, status="failed"), record("mbtsad", 0, asr=0.1),
        record("none", 0, asr=1.0, attack="ep"),
    ])
    assert [r[1] for r in rows] == ["badnets"] and rows[0][7] == "0.100" and rows[0][10] == "1/1"


def test_every_column_reads_only_the_seeds_mbtsad_has():
    [row] = load_script(SCRIPT).rows([
        record("none", 0, asr=1.0), record("none", 1, asr=0.0),
        record("mbtsad", 0, asr=0.3),
        record("fine_mixing", 0, asr=0.2), record("fine_mixing", 1, asr=0.6),
    ])
    assert row[2] == "1" and row[5] == "0.850 / 1.000" and row[11] == "0.850 / 0.200"
