from helpers import load_script

SCRIPT = "ablation_table.py"


def record(attack, label, seed, asr, cacc=0.85, floor=0.1, teacher_asr=None, status="ok"):
    aux = {"teacher": {"asr": teacher_asr, "cacc": 0.86}} if teacher_asr is not None else {}
    return {"cell_id": f"{attack}/{label}/{seed}", "attack": attack, "defense_label": label, "seed": seed,
            "status": status, "asr": asr, "cacc": cacc, "asr_clean": floor, "aux": aux}


def row(text, label):
    return next(line for line in text.splitlines() if f"(`{label}`)" in line).split(" | ")


def test_rows_average_seeds_per_attack_and_read_the_teacher():
    tables = load_script(SCRIPT).tables([
        record("badnets", "mbtsad", 0, asr=0.6, teacher_asr=0.9),
        record("badnets", "mbtsad", 1, asr=0.8, teacher_asr=1.0),
        record("ep", "mbtsad", 0, asr=1.0, floor=0.2, teacher_asr=1.0),
    ])
    cells = row(tables, "mbtsad")  # variant, then per attack CACC, ASR, ASR−floor, teacher ASR; seeds
    assert cells[1:5] == ["0.850 ± 0.000", "0.700 ± 0.141", "0.600 ± 0.141", "0.950 ± 0.071"]
    assert cells[5:9] == ["0.850", "1.000", "0.800", "1.000"]  # one seed: the mean alone
    assert cells[9].rstrip(" |") == "2"


def test_a_failed_rerun_is_superseded_and_a_missing_variant_stays_empty():
    tables = load_script(SCRIPT).tables([
        record("badnets", "finetune-5e-4", 0, asr=0.3, status="failed"),
        record("badnets", "finetune-5e-4", 0, asr=0.4),
        record("badnets", "none", 0, asr=1.0),
    ])
    assert row(tables, "finetune-5e-4")[2] == "0.400"
    empty = row(tables, "mbtsad-no-la")
    assert empty[1:5] == ["", "", "", ""] and empty[5].rstrip(" |") == "0"
