"""Word pieces of a whole batch in one tokenizer call equal those of each sentence tokenised alone."""

from __future__ import annotations

import pytest

from nerbatch.tagging.align import byte_level, word_pieces

SENTENCES = [
    ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
    [],
    ["\u200b", "Turku", "\u200b", "is", "the", "oldest", "city", "\u00ad"],  # words with no pieces
    ["Peter", "Blackburn"],
    [],
    ["x" * 40, "Ünïcødé", "São", "Paulo", "1996-08-22", "--"],
]


def one_at_a_time(tokenizer, words: list[str]) -> list[list[int]]:
    """The reference: one sentence per call, each piece appended to its word."""
    pieces: list[list[int]] = [[] for _ in words]
    if not words:
        return pieces
    if byte_level(tokenizer):
        words = [w if j == 0 or not w or w[0].isspace() else " " + w for j, w in enumerate(words)]
    enc = tokenizer([words], is_split_into_words=True, add_special_tokens=False)
    for tid, w in zip(enc["input_ids"][0], enc.word_ids(0)):
        if w is not None:
            pieces[w].append(tid)
    return pieces


def byte_level_tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(s) for s in SENTENCES] * 5, vocab_size=300, min_frequency=1, show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer)  # noqa: SLF001 (tokenizers has no public getter)


@pytest.mark.parametrize("kind", ["wordpiece", "byte-level"])
def test_batch_word_pieces_equal_each_sentence_alone(kind, tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model) if kind == "wordpiece" else byte_level_tokenizer()
    assert byte_level(tok) == (kind == "byte-level")
    got = word_pieces(tok, SENTENCES)
    assert got == [one_at_a_time(tok, s) for s in SENTENCES]
    assert [len(p) for p in got] == [len(s) for s in SENTENCES]
    assert any(p == [] for p in got[2]) == (kind == "wordpiece")  # byte-level BPE gives every character bytes
    assert all(all(isinstance(i, int) for i in p) for ws in got for p in ws)
    assert word_pieces(tok, [[], []]) == [[], []]


@pytest.mark.parametrize("split_special", [False, True])
@pytest.mark.parametrize("kind", ["wordpiece", "byte-level"])
def test_a_feeding_workers_raw_tokenizer_gives_the_pieces_of_the_transformers_one(kind, split_special, tiny_model):
    """A feeding worker (nerbatch.tagging.pool) holds the Rust tokenizer alone (RawTokenizer.of, pickled to it):
    the same pieces as the transformers tokenizer it came from, special-token text ("[SEP]") included, split or
    kept as that tokenizer splits it."""
    import pickle

    from transformers import AutoTokenizer

    from nerbatch.tagging.compiled import RawTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model) if kind == "wordpiece" else byte_level_tokenizer()
    tok.split_special_tokens = split_special
    raw = pickle.loads(pickle.dumps(RawTokenizer.of(tok)))
    batch = [*SENTENCES, ["Anna", "[SEP]", "lives", "[CLS]", "in", "[MASK]"]]
    assert word_pieces(raw, batch) == word_pieces(tok, batch)
    assert byte_level(raw) == byte_level(tok) and raw.pad_token_id == tok.pad_token_id
