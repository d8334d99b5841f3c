"""Well-formed decoding (nerbatch.tagging.decode): never a forbidden IOB2 transition, argmax where argmax is
already allowed, the best allowed sequence otherwise (checked against brute force)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nerbatch.core.schemes import allowed_transitions, is_well_formed
from nerbatch.tagging.decode import Decoder

from ..conftest import LABELS

DEC = Decoder(LABELS)
ALLOWED, START, _ = allowed_transitions(LABELS)


def _probs(raw: np.ndarray) -> np.ndarray:
    e = np.exp(raw - raw.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


logits = st.integers(1, 12).flatmap(
    lambda n: arrays(np.float64, (n, len(LABELS)), elements=st.floats(-8, 8, allow_nan=False))
)


@settings(max_examples=300, deadline=None)
@given(logits)
def test_viterbi_never_outputs_a_forbidden_transition(raw):
    ids, scores = DEC.decode(_probs(raw))
    assert len(ids) == len(scores) == raw.shape[0]
    assert is_well_formed(ids, ALLOWED, START)
    tags = [LABELS[i] for i in ids]
    for a, b in zip(["O"] + tags, tags):
        if b.startswith("I-"):
            assert a in (f"B-{b[2:]}", b)


@settings(max_examples=300, deadline=None)
@given(logits)
def test_equals_argmax_where_argmax_is_well_formed(raw):
    p = _probs(raw)
    best = p.argmax(-1).tolist()
    ids, scores = DEC.decode(p)
    if is_well_formed(best, ALLOWED, START):
        assert ids == best
        assert scores == [float(p[i, b]) for i, b in enumerate(best)]
    assert Decoder(LABELS, "argmax").decode(p)[0] == best


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 5).flatmap(lambda n: arrays(np.float64, (n, 5), elements=st.floats(-6, 6, allow_nan=False))))
def test_viterbi_finds_the_best_allowed_sequence(raw):
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    dec = Decoder(labels)
    allowed, start, _ = allowed_transitions(labels)
    p = _probs(raw).astype(np.float64)
    ids, _ = dec.decode(p.astype(np.float32))
    best = max(
        (seq for seq in itertools.product(range(5), repeat=len(p)) if is_well_formed(seq, allowed, start)),
        key=lambda seq: sum(np.log(np.maximum(p[i, s], 1e-30)) for i, s in enumerate(seq)),
    )
    logp = np.log(np.maximum(p.astype(np.float32).astype(np.float64), 1e-30))
    assert abs(sum(logp[i, s] for i, s in enumerate(ids)) - sum(logp[i, s] for i, s in enumerate(best))) < 1e-9


def test_the_issue_example_b_loc_then_i_misc():
    # "Helsinki B-LOC / Marathon I-MISC" from the issue: one entity, well formed
    p = np.full((2, len(LABELS)), 0.01, dtype=np.float32)
    p[0, LABELS.index("B-LOC")] = 0.9
    p[1, LABELS.index("I-MISC")] = 0.5
    p[1, LABELS.index("I-LOC")] = 0.3
    ids, scores = DEC.decode(p)
    assert [LABELS[i] for i in ids] == ["B-LOC", "I-LOC"]
    assert scores[1] == np.float32(0.3)


def test_words_without_subwords_get_o_and_leave_the_others_as_they_are():
    p = np.full((3, len(LABELS)), np.nan, dtype=np.float32)
    p[0] = 0.01
    p[0, LABELS.index("B-PER")] = 0.9
    p[2] = 0.01
    p[2, LABELS.index("I-PER")] = 0.9
    ids, scores = DEC.decode(p)
    assert [LABELS[i] for i in ids] == ["B-PER", "O", "I-PER"]  # as without the middle word, which is O
    assert scores[1] == 1.0
    assert DEC.decode(p[[0, 2]])[0] == [ids[0], ids[2]]


def test_a_sentence_may_not_start_inside_an_entity():
    p = np.full((1, len(LABELS)), 0.01, dtype=np.float32)
    p[0, LABELS.index("I-ORG")] = 0.6
    p[0, LABELS.index("B-ORG")] = 0.3
    assert [LABELS[i] for i in DEC.decode(p)[0]] == ["B-ORG"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=0, max_size=8), st.integers(0, 2**32 - 1), st.sampled_from(["viterbi", "argmax"]))
def test_block_decoding_equals_the_per_sentence_decoder(lengths, seed, method):
    """decode_block over sentences laid end to end gives exactly decode's ids and scores per sentence,
    NaN rows (words without subwords) and empty sentences included."""
    rng = np.random.default_rng(seed)
    dec = Decoder(LABELS, method)
    sents = []
    for n in lengths:
        p = _probs(rng.normal(0, 3, (n, len(LABELS))))
        p[rng.random(n) < 0.15] = np.nan
        sents.append(p)
    _block_decodes_as_sentences(dec, sents, lengths)


def _block_decodes_as_sentences(dec: Decoder, sents: list, lengths: list[int]) -> None:
    """decode_block over ``sents`` laid end to end gives each sentence exactly what decode gives it."""
    block = np.concatenate(sents) if sents else np.zeros((0, len(dec.labels)), dtype=np.float32)
    ids, scores = dec.decode_block(block, lengths)
    k = 0
    for p in sents:
        want_ids, want_scores = dec.decode(p)
        assert ids[k : k + len(p)].tolist() == want_ids
        assert scores[k : k + len(p)].tolist() == want_scores
        k += len(p)


def test_round4_rounds_as_python_round():
    """The block's scores are rounded in numpy (round4): the same floats as Python's round(p, 4),
    ties (0.03125 -> 0.0312) and values next to them included."""
    import numpy as np

    from nerbatch.tagging.tagger import round4

    rng = np.random.default_rng(0)
    p = rng.random(200_000).astype(np.float32)
    ties = np.array([k / 32 for k in range(33)] + [0.00005, 0.99995, 0.12345], dtype=np.float32)
    near = np.concatenate([np.nextafter(ties, np.float32(0)), np.nextafter(ties, np.float32(1))])
    for values in (p, ties, near, p.astype(np.float64)):
        assert round4(values) == [round(float(v), 4) for v in values]
    odd = [0.1 + 1e-12, 0.33333333333]  # not float32 values: Python's round itself
    assert round4(odd) == [round(v, 4) for v in odd]


IOBES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
IO = ["O", "PER", "LOC"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=1, max_size=80), st.integers(0, 2**32 - 1),
       st.sampled_from([LABELS, IOBES, ["B-PER", "I-PER", "B-LOC", "I-LOC"], IO]), st.sampled_from([1 << 21, 64, 1]))
def test_many_sentences_at_once_decode_as_one_at_a_time(lengths, seed, labels, cells):
    """Viterbi over many sentences of mixed lengths at once (longest first, ended ones standing still),
    in groups as small as one sentence, gives each sentence the path of the plain one-sentence Viterbi, for
    IOB2, IOBES, a label set without O (where some sentences have no allowed path) and IO labels."""
    import nerbatch.tagging.decode as decode

    rng = np.random.default_rng(seed)
    sents = []
    for n in lengths:
        p = _probs(rng.normal(0, 2, (n, len(labels))))
        p[rng.random(n) < 0.05] = np.nan  # words without subwords: transparent to decoding
        sents.append(p)
    saved, decode.VITERBI_CELLS = decode.VITERBI_CELLS, cells  # (a module bound, restored below)
    try:
        _block_decodes_as_sentences(Decoder(labels), sents, lengths)
    finally:
        decode.VITERBI_CELLS = saved


def _textbook_viterbi(dec: Decoder, p: np.ndarray) -> list[int]:
    """One sentence's best allowed path, the plain way: a labels x labels max at every word, ties to the lower
    label id (as argmax breaks them); a sentence with no allowed path gets its argmax. NaN rows (words
    without subwords) get O and are left out of the path."""
    known = np.flatnonzero(~np.isnan(p[:, 0]))
    out = [dec.outside if dec.outside is not None else 0] * len(p)
    if not len(known):
        return out
    with np.errstate(divide="ignore"):
        logp = np.log(np.maximum(p[known].astype(np.float64), 1e-30))
        trans = np.where(dec.allowed, 0.0, -np.inf)
    score = logp[0] + dec.log_start
    back = []
    for t in range(1, len(known)):
        cand = score[:, None] + trans  # previous label x next label
        back.append(cand.argmax(0))
        score = cand.max(0) + logp[t]
    score = score + dec.log_end
    if not np.isfinite(score.max()):
        path = p[known].argmax(-1).tolist()
    else:
        path = [int(score.argmax())]
        for pointers in reversed(back):
            path.append(int(pointers[path[-1]]))
        path.reverse()
    for i, label in zip(known.tolist(), path):
        out[i] = label
    return out


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=60), st.integers(0, 2**32 - 1),
       st.sampled_from([LABELS, IOBES, ["B-PER", "I-PER", "B-LOC", "I-LOC"], IO, ["O", "I-PER", "B-LOC", "I-LOC", "B-PER"]]),
       st.sampled_from([1 << 19, 64]), st.booleans())
def test_block_viterbi_equals_the_textbook_viterbi(lengths, seed, labels, cells, ties):
    """The block decoder's paths are the textbook Viterbi's, label for label, for IOB2, IOBES, a label set without O,
    IO labels and labels in an odd order, with exact ties (probabilities on a coarse grid, and saturated ones
    that all become log(1e-30)) broken the same way."""
    import nerbatch.tagging.decode as decode

    rng = np.random.default_rng(seed)
    dec = Decoder(labels)
    sents = []
    for n in lengths:
        p = _probs(rng.normal(0, 40 if ties else 2, (n, len(labels))))
        if ties:
            p = np.round(p * 4) / 4  # a coarse grid: many equal probabilities, zeros among them
        p[rng.random(n) < 0.05] = np.nan
        sents.append(p.astype(np.float32))
    saved, decode.VITERBI_CELLS = decode.VITERBI_CELLS, cells
    try:
        ids, _ = dec.decode_block(np.concatenate(sents), lengths)
    finally:
        decode.VITERBI_CELLS = saved
    k = 0
    for p in sents:
        assert ids[k : k + len(p)].tolist() == _textbook_viterbi(dec, p)
        k += len(p)
