from collections import Counter

import pytest

from benchmark.base.errors import DataError, UsageError
from benchmark.data.demo import make_demo
from benchmark.data.examples import DatasetSpec, Example
from benchmark.data.reviews import SHAPES, make_reviews
from benchmark.data.sources import indexed, load_dataset, read_tsv_rows, resolve_spec
from benchmark.data.subsets import balanced_subset, carve_dev, clean_subset


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_tsv_reader_keeps_quotes_and_tabs_split_from_the_right(tmp_path):
    write(tmp_path / "a.tsv", 'sentence\tlabel\n"quoted start\t1\nplain text\t0\n')
    assert indexed(read_tsv_rows(tmp_path / "a.tsv")) == [Example('"quoted start', 1), Example("plain text", 0)]


@pytest.mark.parametrize("content, message", [
    ("text\tlabel\nno tab here\n", r"a.tsv:2: expected 'text<TAB>label'"),
    ("text\tlabel\nhello\tpositive\n", r"a.tsv:2: label 'positive' is not an integer"),
    ("oops\n", r"a.tsv:1: expected the header"),
    ("text\tlabel\n \t1\n", r"a.tsv:2: empty text"),
])
def test_malformed_tsv_names_file_and_line(tmp_path, content, message):
    write(tmp_path / "a.tsv", content)
    with pytest.raises(DataError, match=message):
        indexed(read_tsv_rows(tmp_path / "a.tsv"))


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
    from benchmark.data.sources import check_data_dir

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


def test_demo_reviews_are_seeded_balanced_free_of_triggers_and_need_the_structure():
    a = make_reviews(0)
    assert a == make_reviews(0) != make_reviews(1)
    assert (len(a.train), len(a.dev), len(a.test)) == (3000, 400, 1000) and a.name == "demo-reviews"
    assert Counter(e.label for e in a.train) == {0: 1500, 1: 1500}
    assert not {w.strip(".,;").lower() for e in a.train for w in e.text.split()} & {"cf", "mn", "bb", "tq", "mb"}
    assert sum(w for _, w in SHAPES) == pytest.approx(1.0)
    # every opinion word occurs in reviews of both labels: no single word gives the label away
    from benchmark.data.reviews import OPINIONS

    by_word = {w: {e.label for e in a.train if f" {w}" in e.text} for ws in OPINIONS.values() for w in ws}
    assert all(labels == {0, 1} for labels in by_word.values()), by_word
    # a contrast puts the label after "but"; a concession in the main clause
    but = [e for e in a.train if ", but " in e.text]
    assert but and all(any(f" {w}" in e.text.split(", but ")[1] for w in OPINIONS[e.label]) for e in but)


# --------------------------------------------------------------------------- your own data

def own(folder, **files):
    """A data folder holding ``files`` (name -> content)."""
    for name, content in files.items():
        write(folder / name, content)
    return folder


def load_own(name, text_field=None, label_field=None):
    return load_dataset(resolve_spec(str(name), {}, text_field, label_field))


def test_a_folder_resolves_by_its_name_and_maps_string_labels_in_sorted_order(tmp_path):
    rows = "sentence\tlabel\n" + "".join(f"text {i}\t{label}\n" for i in range(4) for label in ("pos", "neg", "mid"))
    own(tmp_path / "reviews", **{"train.tsv": rows, "dev.tsv": rows, "test.tsv": rows})
    dataset = load_own(tmp_path / "reviews")
    assert (dataset.name, dataset.source, dataset.num_labels) == ("reviews", "dir:reviews", 3)
    assert dataset.label_names == ("mid", "neg", "pos") and not dataset.dev_carved
    assert dataset.train[:3] == (Example("text 0", 2), Example("text 0", 1), Example("text 0", 0))


def test_integer_labels_are_the_classes_unless_they_are_not_0_to_k(tmp_path):
    own(tmp_path / "ints", **{s: "sentence\tlabel\na\t0\nb\t1\nc\t2\n" for s in ("train.tsv", "dev.tsv", "test.tsv")})
    dataset = load_own(tmp_path / "ints")
    assert dataset.num_labels == 3 and dataset.label_names == () and [e.label for e in dataset.test] == [0, 1, 2]
    own(tmp_path / "stars", **{s: "sentence\tlabel\na\t10\nb\t2\nc\t1\n" for s in ("train.tsv", "dev.tsv", "test.tsv")})
    stars = load_own(tmp_path / "stars")
    assert stars.label_names == ("1", "2", "10") and [e.label for e in stars.test] == [2, 1, 0]


def test_named_columns_of_a_wider_file_and_a_label_first_file(tmp_path):
    wide = "id\treview\tsentiment\n1\tgreat fun\tpos\n2\tdull\tneg\n"
    own(tmp_path / "wide", **{"train.tsv": wide, "dev.tsv": wide, "test.tsv": wide})
    dataset = load_own(tmp_path / "wide", text_field="review", label_field="sentiment")
    assert [(e.text, e.label) for e in dataset.test] == [("great fun", 1), ("dull", 0)]
    first = "label\ttext\n1\ta text\n0\tplain\n"
    own(tmp_path / "first", **{"train.tsv": first, "dev.tsv": first, "test.tsv": first})
    assert [e.text for e in load_own(tmp_path / "first").test] == ["a text", "plain"]
    tabbed = "label\ttext\n1\ta\tb with a tab\n0\tplain\n"  # a tab inside a text would move the label
    own(tmp_path / "tabbed", **{"train.tsv": tabbed, "dev.tsv": tabbed, "test.tsv": tabbed})
    with pytest.raises(DataError, match=r"tabbed/train.tsv:2: expected 2 tab-separated fields as in the header, found 3"):
        load_own(tmp_path / "tabbed")


def test_a_folder_in_openbackdoors_text_layout(tmp_path):
    texts = "".join(f"review {i}\n" for i in range(40))
    labels = "".join(f"{i % 2}\n" for i in range(40))
    folder = own(tmp_path / "imdb-like", **{"train.txt": texts, "train_labels.txt": labels,
                                            "test.txt": texts, "test_labels.txt": labels})
    dataset = load_own(folder)
    assert dataset.source == "openbackdoor:imdb-like" and dataset.dev_carved and dataset.num_labels == 2


@pytest.mark.parametrize("files, options, message", [
    ({"test.tsv": "sentence\tlabel\na\t1\n"}, {}, r"mine: no train\.tsv \(expected train\.tsv, test\.tsv"),
    ({"train.tsv": "sentence\tlabel\na\t1\nb\t0\n"}, {}, r"mine: no test\.tsv"),
    ({"train.tsv": "sentence\tlabel\na\tpos\nb\tpos\n", "test.tsv": "sentence\tlabel\na\tpos\n"}, {},
     r"mine \(train\): every training label is 'pos'; a classifier needs at least two classes"),
    ({"train.tsv": "sentence\tlabel\na\tpos\nb\tneg\n", "test.tsv": "sentence\tlabel\na\tpos\nb\tmeh\n"}, {},
     r"mine/test\.tsv:3: label 'meh' does not occur in the training split \(its classes: neg, pos\)"),
    ({"train.tsv": "sentence\tlabel\na\t1\n", "test.tsv": "sentence\tlabel\na\t1\n"}, {"text_field": "review"},
     r"mine/train\.tsv:1: no text column 'review' \(--text-field\)\. .*Known: label, sentence"),
    ({"train.tsv": "text\tstars\na\t1\n", "test.tsv": "text\tstars\na\t1\n"}, {},
     r"mine/train\.tsv:1: no label column 'label'; name the label column with --label-field"),
    ({"train.tsv": "id\ttext\tlabel\n1\ta\t1\n2\tb\n", "test.tsv": "id\ttext\tlabel\n1\ta\t1\n"}, {},
     r"mine/train\.tsv:3: expected 3 tab-separated fields as in the header, found 2"),
    ({"train.tsv": "a\tb\tlabel\n1\tx\t1\n", "test.tsv": "a\tb\tlabel\n1\tx\t1\n"}, {},
     r"mine/train\.tsv:1: which column holds the text\? Name it with --text-field"),
    ({"train.txt": "a\nb\n", "train_labels.txt": "0\n1\n", "test.txt": "a\n", "test_labels.txt": "0\n"},
     {"label_field": "y"}, r"mine: --text-field and --label-field name TSV or hub columns"),
])
def test_own_data_errors_name_the_file_and_what_was_expected(tmp_path, files, options, message):
    own(tmp_path / "mine", **files)
    with pytest.raises(DataError, match=message):
        load_own(tmp_path / "mine", **options)


def test_resolution_order_registered_then_hub_then_folder(tmp_path, monkeypatch):
    registered = {"demo": DatasetSpec("demo")}
    (tmp_path / "demo").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_spec("demo", registered) is registered["demo"]  # a registered name wins
    assert resolve_spec("./demo", registered).location == "./demo"
    hub = resolve_spec("hf:nyu-mll/glue:sst2", registered, text_field="sentence")
    assert (hub.name, hub.hub_id, hub.hub_config, hub.num_labels) == ("nyu-mll/glue:sst2", "nyu-mll/glue", "sst2", None)
    with pytest.raises(UsageError, match=r"unknown data set 'dem'\. Did you mean 'demo'.*a folder path \(\./NAME\)"):
        resolve_spec("dem", registered)
    with pytest.raises(DataError, match=r"data set folder \./nope: no such folder"):
        resolve_spec("./nope", registered)
    with pytest.raises(UsageError, match=r"expected hf:ID or hf:ID:CONFIG"):
        resolve_spec("hf:", registered)


def test_an_offline_hub_data_set_is_one_error_naming_the_id_and_what_was_tried(monkeypatch, tmp_path):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # read at import time; the test process
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # imported them before
    spec = resolve_spec("hf:no-such-owner/no-such-set:plain", {})
    with pytest.raises(DataError) as caught:
        load_dataset(spec)
    message = str(caught.value)
    assert message.startswith("hf:no-such-owner/no-such-set:plain: cannot load 'no-such-owner/no-such-set'")
    assert "datasets.load_dataset('no-such-owner/no-such-set', 'plain')" in message
    assert "only the local cache, since HF_HUB_OFFLINE is set" in message and "--dataset FOLDER" in message


class FakePart:
    """One split of a hub data set, as ``datasets`` gives it: column names, columns by name."""

    def __init__(self, **columns):
        self.columns = columns
        self.column_names = list(columns)

    def __getitem__(self, name):
        return self.columns[name]


def test_hub_columns_and_string_labels_are_mapped_like_files(monkeypatch):
    calls = []

    def fake_load(hub_id, config):
        calls.append((hub_id, config))
        part = FakePart(idx=list(range(6)), review=[f"r{i}" for i in range(6)], stars=["b", "a", "c"] * 2)
        return {"train": part, "validation": part, "test": part}

    monkeypatch.setattr("datasets.load_dataset", fake_load)
    dataset = load_dataset(resolve_spec("hf:someone/reviews:en", {}, "review", "stars"))
    assert calls == [("someone/reviews", "en")]
    assert (dataset.name, dataset.source, dataset.label_names) == ("someone/reviews:en", "hub:someone/reviews/en",
                                                                   ("a", "b", "c"))
    assert [(e.text, e.label) for e in dataset.test[:3]] == [("r0", 1), ("r1", 0), ("r2", 2)]
    with pytest.raises(DataError, match=r"hf:someone/reviews split 'train': no text column 'text' \(--text-field\)"):
        load_dataset(resolve_spec("hf:someone/reviews:en", {}, "text", "stars"))
