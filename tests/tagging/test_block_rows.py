"""The flat-array rows of a block (:func:`nerbatch.tagging.align.block_rows`, the tagging hot path) are
exactly the rows that :func:`~nerbatch.tagging.align.in_context` and :func:`~nerbatch.tagging.align.features_for`
give sentence by sentence: the same ids, words and positions, in the same order, with and without
document context, for sentences that fit a window and sentences that need several."""

from __future__ import annotations

import random

import pytest

from nerbatch.core.record import Sentence
from nerbatch.tagging.align import (
    Feature,
    PieceCache,
    Specials,
    block_rows,
    features_for,
    in_context,
    rows_of_features,
    word_pieces,
)

WORDS = ["the", "cat", "sat", "on", "mat", "London", "EU", "rejects", "German", "call", "to", "boycott", "British",
         "lamb", ".", ",", "Peter", "Blackburn", "1996-08-22", "\u200b", "xyzzy", "Ünïcödé", "'s"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def by_features(items, core: range, pieces_of, specials, max_length, stride, budget):
    ctx = list(in_context(items, pieces_of, budget))[core.start : core.stop]
    feats, base = [], 0
    for k, (sent, p, lc, rc) in enumerate(ctx):
        for f in features_for(k, p, specials, max_length, stride, lc, rc):
            feats.append(Feature(f.sent, f.input_ids, f.positions, [base + w for w in f.words]))
        base += len(sent.tokens)
    return rows_of_features(feats, specials)


def as_lists(rows, specials):
    import numpy as np

    out = []
    for r in range(len(rows)):
        ids, mask = rows.matrix(np.array([r]), specials, 0)
        _, pos, words = rows.take(np.array([r]))
        out.append((ids[0][mask[0].astype(bool)].tolist(), pos.tolist(), words.tolist()))
    return out


def random_items(rng: random.Random, n: int) -> list[Sentence]:
    items, doc = [], 0
    for i in range(n):
        if rng.random() < 0.15:
            doc += 1
        length = rng.choice([0, 1, 3, 8, 20, 45])
        items.append(Sentence(tokens=[rng.choice(WORDS) for _ in range(length)], doc_id=str(doc), index=i))
    return items


@pytest.mark.parametrize("seed", range(12))
def test_block_rows_equal_the_sentence_by_sentence_rows(tokenizer, seed):
    rng = random.Random(seed)
    specials = Specials.of(tokenizer)

    def pieces_of(batch):
        return word_pieces(tokenizer, batch)

    cache = PieceCache(pieces_of, limit=rng.choice([5, 10_000]))  # a small limit empties it between blocks
    for _ in range(3):
        items = random_items(rng, rng.randint(1, 40))
        a = rng.randint(0, len(items) - 1)
        core = range(a, rng.randint(a + 1, len(items)))
        max_length = rng.choice([8, 16, 32, 64])
        stride = rng.choice([None, 3, 5])
        budget = rng.choice([0, max_length - len(specials)])
        got = block_rows(items, core, cache, specials, max_length, stride, budget)
        want = by_features(items, core, pieces_of, specials, max_length, stride, budget)
        assert as_lists(got, specials) == as_lists(want, specials)


def test_piece_cache_gives_the_pieces_of_the_running_text(tokenizer):
    """Every word, first in its sentence or not, gets the pieces the whole-sentence encoding gives it."""
    import numpy as np

    sentences = [["London", "calls"], ["the", "London", "\u200b", "EU"], [], ["Ünïcödé"], ["calls", "calls", "xyzzy"]]
    cache = PieceCache(lambda batch: word_pieces(tokenizer, batch))
    ids, counts = cache.flat(sentences)
    want = [p for sent in word_pieces(tokenizer, sentences) for p in sent]
    assert counts.tolist() == [len(p) for p in want]
    assert ids.tolist() == [t for p in want for t in p]
    assert isinstance(ids, np.ndarray)
