"""The token ids of text data: the special tokens, a text set's :class:`Vocabulary` and the
:class:`SequenceShape` a sequence model is built for. Models and metrics need these, not the
corpus readers of :mod:`.text`.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Sequence

import torch

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
_SHOWN = 5  # words named in an error, at most (here and in the corpus readers of .text)


class SequenceShape(NamedTuple):
    """What a sequence model needs to know of its data (a text set's ``Dataset.shape``): the
    longest sentence ``max_length`` in tokens (``<s>`` and ``</s>`` included; x is [N, max_length])
    and the vocabulary size."""

    max_length: int
    vocab_size: int


@dataclass(frozen=True)
class Vocabulary:
    """Token ids of a text set: ``words[i]`` is the token of id i.

    Ids 0-3 are ``<pad>``, ``<unk>``, ``<s>`` (start, prepended, never predicted) and ``</s>``
    (end, appended, predicted); then the training split's words by decreasing frequency, ties
    in alphabetical order. ``source`` says what it was built from (for run records).
    """

    words: tuple[str, ...]
    source: str = ""
    index: dict[str, int] = field(init=False, repr=False, compare=False)  # word -> id

    def __post_init__(self) -> None:
        if tuple(self.words[:4]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary starts with {SPECIAL_TOKENS}, got {tuple(self.words[:4])}")
        index = {word: i for i, word in enumerate(self.words)}
        if len(index) != len(self.words):
            twice = [w for w, n in Counter(self.words).items() if n > 1]
            raise ValueError(f"words occur twice in the vocabulary: {twice[:_SHOWN]}")
        object.__setattr__(self, "index", index)

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], source: str = "") -> Vocabulary:
        """The vocabulary of ``sentences`` (the training split): words by decreasing count, ties
        alphabetical; ``<unk>`` in the corpus is id 1."""
        counts = Counter(itertools.chain.from_iterable(sentences))
        counts.pop(UNK, None)
        return cls(SPECIAL_TOKENS + tuple(sorted(counts, key=lambda w: (-counts[w], w))), source)

    def sequence_shape(self, max_length: int) -> SequenceShape:
        """The shape of sentences of up to ``max_length`` tokens over this vocabulary."""
        return SequenceShape(max_length, len(self))

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def encode(self, words: Iterable[str]) -> list[int]:
        """The id of each word (``<unk>``'s, 1, for a word not in the vocabulary); adds no
        ``<s>`` / ``</s>``."""
        get = self.index.get
        return [get(w, UNK_ID) for w in words]

    def decode(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        """The word of each id (``<pad>``, ``<s>`` and ``</s>`` included: strip them as needed)."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        out = []
        for i in values:
            if not 0 <= int(i) < len(self.words):
                raise ValueError(f"token id {i} out of range 0..{len(self.words) - 1}")
            out.append(self.words[int(i)])
        return out

    def sha256(self) -> str:
        """SHA-256 of the word list, one word per line in id order (UTF-8)."""
        return hashlib.sha256("\n".join(self.words).encode()).hexdigest()

    def to_dict(self) -> dict[str, object]:
        return {"size": len(self), "special": {w: i for i, w in enumerate(SPECIAL_TOKENS)},
                "sha256": self.sha256(), "built_from": self.source}
