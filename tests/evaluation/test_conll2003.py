"""Readers and scheme conversion on the real CoNLL-2003 files (skipped where ../shared is absent)."""

from __future__ import annotations

from collections import Counter

import pytest

from nerbatch.core.schemes import conll_chunks, iob1_to_iob2
from nerbatch.evaluation.scoring import Scorer
from nerbatch.io import read

from ..conftest import CONLL2003

pytestmark = pytest.mark.skipif(
    not (CONLL2003 / "train.txt").exists(), reason=f"CoNLL-2003 data not found at {CONLL2003}"
)

# from ../shared/data/conll2003/SOURCE.md
COUNTS = {
    "train.txt": (946, 14041, 203621, {"PER": 6600, "ORG": 6321, "LOC": 7140, "MISC": 3438}),
    "valid.txt": (216, 3250, 51362, {"PER": 1842, "ORG": 1341, "LOC": 1837, "MISC": 922}),
    "test.txt": (231, 3453, 46435, {"PER": 1617, "ORG": 1661, "LOC": 1668, "MISC": 702}),
}
IOB1 = {"train.txt": "eng.train", "valid.txt": "eng.testa", "test.txt": "eng.testb"}


@pytest.mark.parametrize("name", list(COUNTS))
def test_counts_match_the_published_figures(name):
    docs, sents, toks, ents = COUNTS[name]
    sentences = [s for s in read(str(CONLL2003 / name)) if s.tokens]  # .txt is sniffed as CoNLL
    assert len({s.doc_id for s in sentences}) == docs
    assert len(sentences) == sents
    assert sum(len(s.tokens) for s in sentences) == toks
    assert Counter(t for s in sentences for t, _, _ in conll_chunks(s.tags)) == ents


@pytest.mark.parametrize("name", list(COUNTS))
def test_iob1_files_convert_to_the_iob2_files(name):
    iob2 = [s for s in read(str(CONLL2003 / name)) if s.tokens]
    iob1 = [s for s in read(str(CONLL2003 / "iob1" / IOB1[name])) if s.tokens]
    assert len(iob1) == len(iob2)
    for a, b in zip(iob1, iob2):
        assert a.tokens == b.tokens
        assert iob1_to_iob2(a.tags) == b.tags


def test_conlleval_counts_docstart_lines_as_tokens():
    """conlleval on a tagged test file reports 46,666 tokens: 46,435 plus 231 -DOCSTART- lines (SOURCE.md)."""
    from nerbatch.evaluation.evaluate import add_sentence

    scorer = Scorer()
    for s in read(str(CONLL2003 / "test.txt")):
        s.pred = s.tags
        add_sentence(scorer, s, "input")
    res = scorer.result()
    assert res["tokens"] == 46666 and res["sentences"] == 3453
    assert res["overall"]["f1"] == 1.0 and res["overall"]["support"] == 5648
