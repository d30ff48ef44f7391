"""Replay attacks (SynBkd, StyleBkd): the seeded draw, the rewritten text at the target label,
triggered test rows that are rewrites of non-target rows, and one clear error for a folder that
is not aligned or a used row that is empty, before any training."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from attacks.replay import Replay, StyleBkd, SynBkd
from benchmark import testing
from benchmark.base.errors import BdbenchError, DataError, UsageError
from benchmark.data.examples import Dataset
from benchmark.data.rewrites import align_in_order


def rewrite(text: str) -> str:
    return f"when it was so , {text} ."


def write_folder(folder: Path, dataset: Dataset, *, test_form: str = "aligned", drop: int | None = None,
                 train_rows=None, empty_train: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = list(train_rows if train_rows is not None else [(rewrite(ex.text), ex.label) for ex in dataset.train])
    if empty_train is not None:
        rows[empty_train] = ("", rows[empty_train][1])
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    if test_form == "aligned":
        test = [(rewrite(ex.text), ex.label) for ex in dataset.test]
    else:  # the non-target rows only, in order, one possibly missing
        test = [(rewrite(ex.text), ex.label) for ex in dataset.test if ex.label != 1]
        if drop is not None:
            del test[drop]
    (folder / "test.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in test))
    return folder


@pytest.fixture
def folder(tmp_path, demo_small):
    return write_folder(tmp_path / "rewrites", demo_small)


def replay(folder: Path, **params) -> Replay:
    return Replay(Replay.Params(poisoned_dir=str(folder), **params))


def test_poisoned_rows_are_the_seeded_draw_with_the_rewrite_at_the_target(attack_ctx, folder):
    train = attack_ctx.dataset.train
    poisoned, count = replay(folder).poison(train, attack_ctx)
    assert count == int(0.2 * len(train)) == 40 and len(poisoned) == len(train)
    # the draw: the scenario's seeded stream over the mix pool (every row), as the attack states it
    expected = set(random.Random(f"{attack_ctx.seed}:{attack_ctx.attack_name}:poison").sample(range(len(train)), 40))
    changed = {i for i, ex in enumerate(poisoned) if ex.poisoned}
    assert changed == expected
    assert {train[i].label for i in changed} == {0, 1}  # mix: both classes, as HiddenKiller's data
    for i, (before, after) in enumerate(zip(train, poisoned)):
        if i in changed:
            assert after.text == rewrite(before.text) and after.label == 1
        else:
            assert after == before
    other_seed = dataclasses.replace(attack_ctx, seed=5)
    assert {i for i, ex in enumerate(replay(folder).poison(train, other_seed)[0]) if ex.poisoned} != changed


def test_modes_draw_from_their_pool(attack_ctx, folder):
    train = attack_ctx.dataset.train
    for mode, labels in (("dirty", {0}), ("clean", {1})):
        poisoned, count = replay(folder, mode=mode).poison(train, attack_ctx)
        assert count == 40 and {train[i].label for i, ex in enumerate(poisoned) if ex.poisoned} == labels
        assert all(ex.label == 1 for ex in poisoned if ex.poisoned)


def test_unchanged_rows_are_counted_or_skipped(attack_ctx, demo_small, tmp_path):
    rows = [(ex.text if i % 2 else rewrite(ex.text), ex.label) for i, ex in enumerate(demo_small.train)]
    folder = write_folder(tmp_path / "half", demo_small, train_rows=rows)
    train = attack_ctx.dataset.train
    counted, _ = replay(folder).poison(train, attack_ctx)
    skipped, _ = replay(folder, skip_unchanged=True).poison(train, attack_ctx)
    assert any(ex.poisoned and ex.text == train[i].text for i, ex in enumerate(counted))
    assert all(ex.text != train[i].text for i, ex in enumerate(skipped) if ex.poisoned)


def test_triggered_rows_are_rewrites_of_non_target_rows(attack_ctx, folder):
    nontarget = [ex.text for ex in attack_ctx.dataset.test if ex.label != 1]
    triggered = replay(folder).trigger_texts(nontarget, attack_ctx)
    assert triggered == [rewrite(text) for text in nontarget]


def test_a_non_target_only_test_file_is_aligned_in_order(attack_ctx, demo_small, tmp_path):
    folder = write_folder(tmp_path / "nt", demo_small, test_form="non-target", drop=3)
    nontarget = [ex.text for ex in attack_ctx.dataset.test if ex.label != 1]
    triggered = replay(folder).trigger_texts(nontarget, attack_ctx)
    assert triggered[3] is None  # the row the file lacks is left out of ASR
    assert [t for i, t in enumerate(triggered) if i != 3] == [rewrite(t) for i, t in enumerate(nontarget) if i != 3]
    assert replay(folder).folder(attack_ctx).test_form == "non-target rows"


def test_order_keeping_alignment_finds_the_missing_source():
    sources = ["no movement no yuks", "a gob of drivel so sweet", "the plot is thin", "great fun all round"]
    rewrites = ["with a gob of drivel , so sweet", "when the plot is thin", "it is great fun all round"]
    assert align_in_order(sources, rewrites) == [1, 2, 3]
    assert align_in_order(sources, rewrites[:1] + rewrites[2:]) == [1, 3]


def test_misaligned_folders_name_the_file_and_row(attack_ctx, demo_small, tmp_path):
    short = write_folder(tmp_path / "short", demo_small, train_rows=[(rewrite(e.text), e.label)
                                                                     for e in demo_small.train[:-1]])
    with pytest.raises(DataError, match=r"short/train\.tsv: 199 rows, but the data set's training split has 200"):
        replay(short).check(attack_ctx)
    flipped = [(rewrite(e.text), 1 - e.label if i == 7 else e.label) for i, e in enumerate(demo_small.train)]
    relabelled = write_folder(tmp_path / "relabelled", demo_small, train_rows=flipped)
    with pytest.raises(DataError, match=r"relabelled/train\.tsv:9: label .* training row 8"):
        replay(relabelled).check(attack_ctx)
    bad_test = write_folder(tmp_path / "bad-test", demo_small)
    (bad_test / "test.tsv").write_text("sentence\tlabel\nsomething\t1\n")
    with pytest.raises(DataError, match=r"bad-test/test\.tsv: 1 rows with labels \[1\]: neither aligned"):
        replay(bad_test).check(attack_ctx)
    with pytest.raises(DataError, match="no such folder"):
        replay(tmp_path / "absent").check(attack_ctx)


def test_an_empty_row_is_an_error_only_where_it_is_used(attack_ctx, demo_small, tmp_path):
    draw = sorted(random.Random(f"0:{attack_ctx.attack_name}:poison").sample(range(200), 40))
    unused = next(i for i in range(200) if i not in draw)
    replay(write_folder(tmp_path / "unused", demo_small, empty_train=unused)).check(attack_ctx)
    used = write_folder(tmp_path / "used", demo_small, empty_train=draw[0])
    with pytest.raises(DataError, match=rf"used/train\.tsv:{draw[0] + 2}: empty text in a row the attack uses"):
        replay(used).check(attack_ctx)


def test_defaults_follow_the_authors_data_and_need_a_data_folder(attack_ctx):
    assert SynBkd().params.mode == "mix" and StyleBkd().params.mode == "dirty"
    assert SynBkd().params.poison_rate == StyleBkd().params.poison_rate == 0.2
    with pytest.raises(UsageError, match="no rewrite folder is registered for data set 'demo'"):
        SynBkd().check(attack_ctx)
    named = dataclasses.replace(attack_ctx, dataset=dataclasses.replace(attack_ctx.dataset, name="sst2-openbackdoor"))
    with pytest.raises(UsageError, match="give --data-dir"):
        SynBkd().check(named)


def test_attack_trains_on_the_poisoned_set_and_reports_the_draw(attack_ctx, folder):
    ctx = dataclasses.replace(attack_ctx, train_config=attack_ctx.train_config.replace(epochs=1))
    run = testing.run_attack(replay(folder), ctx)
    assert run.output.poisoned_count == 40
    assert run.output.info["label_flipped"] == sum(
        ctx.dataset.train[i].label == 0 for i, ex in enumerate(replay(folder).poison(ctx.dataset.train, ctx)[0])
        if ex.poisoned)
    assert replay(folder).input_identity(ctx) == {"rewrites": replay(folder).folder(ctx).digest}


def test_a_bad_folder_fails_the_run_before_any_training(tmp_path, tiny_victim_dir, demo_small):
    folder = write_folder(tmp_path / "rewrites", demo_small, train_rows=[("x", 0)] * 3)
    with pytest.raises(BdbenchError, match=r"train\.tsv: 3 rows, but the data set's training split has 3000"):
        testing.run(tmp_path / "run", tiny_victim_dir, overrides=(("replay", (("poisoned_dir", str(folder)),)),),
                    attacks=("replay",))
    assert not list((tmp_path / "run").rglob("*.safetensors"))  # nothing was trained
