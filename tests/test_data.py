from collections import Counter

import pytest

from benchmark.data import (
    DatasetSpec,
    Example,
    balanced_subset,
    carve_dev,
    clean_subset,
    load_dataset,
    read_tsv,
)
from benchmark.demo import make_demo
from benchmark.errors import DataError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_tsv_reader_keeps_quotes_and_tabs_split_from_the_right(tmp_path):
    write(tmp_path / "a.tsv", 'sentence\tlabel\n"quoted start\t1\nplain text\t0\n')
    assert read_tsv(tmp_path / "a.tsv") == [Example('"quoted start', 1), Example("plain text", 0)]


@pytest.mark.parametrize("content, message", [
    ("text\tlabel\nno tab here\n", r"a.tsv:2: expected 'text<TAB>label'"),
    ("text\tlabel\nhello\tpositive\n", r"a.tsv:2: label 'positive' is not an integer"),
    ("oops\n", r"a.tsv:1: expected the header"),
    ("text\tlabel\n \t1\n", r"a.tsv:2: empty text"),
])
def test_malformed_tsv_names_file_and_line(tmp_path, content, message):
    write(tmp_path / "a.tsv", content)
    with pytest.raises(DataError, match=message):
        read_tsv(tmp_path / "a.tsv")


def test_uniform_layout_and_empty_split(tmp_path):
    spec = DatasetSpec("toy")
    for split in ("train", "dev", "test"):
        write(tmp_path / "toy" / f"{split}.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")
    dataset = load_dataset(spec, tmp_path)
    assert len(dataset.train) == 2 and dataset.source.startswith("dir:")
    write(tmp_path / "toy" / "test.tsv", "sentence\tlabel\n")
    with pytest.raises(DataError, match=r"toy/test\): the split is empty"):
        load_dataset(spec, tmp_path)


def test_label_out_of_range_is_an_error(tmp_path):
    for split in ("train", "dev", "test"):
        write(tmp_path / "toy" / f"{split}.tsv", "sentence\tlabel\ngood\t3\n")
    with pytest.raises(DataError, match=r"toy/train\.tsv:2: label 3 is out of range, expected 0\.\.1"):
        load_dataset(DatasetSpec("toy"), tmp_path)


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    for split in ("train", "dev", "test"):
        write(tmp_path / "toy" / f"{split}.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")
    (tmp_path / "toy" / "dev.tsv").write_bytes(b"sentence\tlabel\ngood\t1\ncaf\xe9\t0\n")
    with pytest.raises(DataError, match=r"toy/dev\.tsv:3: not UTF-8 text"):
        load_dataset(DatasetSpec("toy"), tmp_path)


def test_a_missing_data_folder_is_refused_even_for_generated_data(tmp_path, monkeypatch):
    from benchmark.data import check_data_dir

    with pytest.raises(DataError, match=r"--data-dir .*nope: no such folder"):
        check_data_dir(tmp_path / "nope")
    monkeypatch.setenv("BDBENCH_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"BDBENCH_DATA .*nope: no such folder"):
        check_data_dir(None)
    assert check_data_dir(tmp_path) == tmp_path


def test_openbackdoor_layouts(tmp_path):
    for split in ("train", "dev", "test"):
        write(tmp_path / "SentimentAnalysis" / "SST-2" / f"{split}.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")
    sst = load_dataset(DatasetSpec("sst2-openbackdoor", openbackdoor_dir="SentimentAnalysis/SST-2"), tmp_path)
    assert sst.source.startswith("openbackdoor:") and len(sst.dev) == 2
    texts = "\n".join(f"review {i}" for i in range(20)) + "\n"
    labels = "\n".join(str(i % 2) for i in range(20)) + "\n"
    for split in ("train", "test"):
        write(tmp_path / "datasets" / "SentimentAnalysis" / "imdb" / f"{split}.txt", texts)
        write(tmp_path / "datasets" / "SentimentAnalysis" / "imdb" / f"{split}_labels.txt", labels)
    imdb = load_dataset(DatasetSpec("imdb", openbackdoor_dir="SentimentAnalysis/imdb", openbackdoor_format="txt"),
                        tmp_path)
    assert imdb.dev_carved and len(imdb.dev) == 2 and len(imdb.train) == 18


def test_missing_dataset_error_says_what_was_tried(tmp_path):
    with pytest.raises(DataError, match=r"data set 'toy' not found. Tried: .*toy/train.tsv.*--data-dir"):
        load_dataset(DatasetSpec("toy"), tmp_path)


def test_carved_dev_is_seeded_and_balanced():
    train = [Example(f"t{i}", i % 2) for i in range(100)]
    rest, dev = carve_dev(train, 0.1, seed=0)
    assert (rest, dev) == carve_dev(train, 0.1, seed=0)
    assert Counter(e.label for e in dev) == {0: 5, 1: 5} and len(rest) == 90
    assert not set(dev) & set(rest)


def test_balanced_subset_and_clean_subset():
    train = [Example(f"t{i}", int(i % 4 == 0)) for i in range(400)]
    subset = balanced_subset(train, 100, seed=3)
    assert Counter(e.label for e in subset) == {0: 50, 1: 50}
    assert subset == balanced_subset(train, 100, seed=3) != balanced_subset(train, 100, seed=4)
    assert clean_subset(train, 0.2, seed=1) == clean_subset(train, 0.2, seed=1)
    assert len(clean_subset(train, 0.2, seed=1)) == 80


def test_demo_is_seeded_balanced_and_free_of_triggers():
    a, b = make_demo(0), make_demo(0)
    assert a == b and len(a.train) == 3000
    assert Counter(e.label for e in a.train) == {0: 1500, 1: 1500}
    words = {w.strip(".,").lower() for e in a.train for w in e.text.split()}
    assert not words & {"cf", "mn", "bb", "tq", "mb"}
