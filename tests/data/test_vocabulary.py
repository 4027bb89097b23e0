"""A text set's vocabulary: ids by frequency after the special tokens, encoding and decoding,
its record, and the checks on a malformed word list."""

from __future__ import annotations

import hashlib

import pytest
import torch

from benchmark.data.vocabulary import Vocabulary


def test_vocabulary_order_specials_and_codes():
    vocabulary = Vocabulary.build([["b", "a", "c", "a", "<unk>"], ["c", "b", "a", "<unk>", "d"]], "here")
    # a: 3, then b and c (2 each, alphabetical), then d; <unk> is id 1, not a second entry
    assert vocabulary.words == ("<pad>", "<unk>", "<s>", "</s>", "a", "b", "c", "d")
    assert len(vocabulary) == 8 and "a" in vocabulary and "z" not in vocabulary
    assert vocabulary.encode(["a", "d", "<unk>", "zebra"]) == [4, 7, 1, 1]
    assert vocabulary.decode([2, 4, 5, 3, 0]) == ["<s>", "a", "b", "</s>", "<pad>"]
    assert vocabulary.decode(torch.tensor([6, 7])) == ["c", "d"]
    with pytest.raises(ValueError, match="out of range"):
        vocabulary.decode([8])
    record = vocabulary.to_dict()
    assert record == {"size": 8, "special": {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3},
                      "sha256": hashlib.sha256("\n".join(vocabulary.words).encode()).hexdigest(), "built_from": "here"}
    assert Vocabulary.build([["d", "c", "b", "a", "a", "c", "b", "a"]], "here") == vocabulary  # order-free
    with pytest.raises(ValueError, match="starts with"):
        Vocabulary(("a", "<pad>", "<unk>", "<s>", "</s>"))
    with pytest.raises(ValueError, match="twice"):
        Vocabulary(("<pad>", "<unk>", "<s>", "</s>", "a", "a"))
