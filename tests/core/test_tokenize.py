"""nerbatch.core.tokenize: CoNLL-style tokens with character spans, sentence splitting, layouts."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import nerbatch.core.tokenize as nt
from nerbatch.core.tokenize import LAYOUTS, TextSettings, layout_units, sentence_spans, split_sentences, tokenize


def words(text: str) -> list[str]:
    return [t for t, _, _ in tokenize(text)]


# --------------------------------------------------------------------------------------------- #
# Properties over arbitrary text
# --------------------------------------------------------------------------------------------- #

ATOMS = [
    "word", "Finland", "U.S.", "Inc.", "e-mail", "n't", "'s", "don't", "O’Neil’s", "5%", "$", "3,000", "1996-12-06",
    "10:30", "https://example.com/a?b=c", "a@b.co", "www.x.org).", "1.", "...", "--", "—", "…",
    ".", ",", ";", ":", "!", "?", "'", '"', "``", "''", "(", ")", "[", "]", "{", "}", "“", "”", "‘", "’", "«", "»",
    "日本語のテキスト", "中文没有空格", "👩\u200d💻", "👍🏽", "🏳️\u200d🌈", "e\u0301", "\u0301", "n\u0303o",
    "\u00a0", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x85", "\u200b", "\ufeff", "\u3000", "\ud800",
    " ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", " \n \n",
]
texts = st.one_of(
    st.lists(st.sampled_from(ATOMS), max_size=40).map("".join),
    st.lists(st.sampled_from(ATOMS), max_size=20).map(" ".join),
    st.text(max_size=80),
)
FUNCTIONS = {
    "tokenize": lambda t: [tokenize(t)],
    "split_sentences": split_sentences,
    **{f"layout_{layout}": functools.partial(layout_units, layout=layout) for layout in LAYOUTS},
}


def check_units(text: str, units: list[list[tuple[str, int, int]]]) -> None:
    end = 0
    for unit in units:
        for tok, s, e in unit:
            assert text[s:e] == tok, (tok, s, e)
            assert tok and tok.strip() == tok, repr(tok)  # no empty token, no outer whitespace
            assert s >= end, "tokens out of order or overlapping"
            end = e
    # nothing but whitespace is lost
    assert "".join(t for unit in units for t, _, _ in unit) == "".join(text.split())


@pytest.mark.parametrize("name", list(FUNCTIONS))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
def test_spans_round_trip(name, text):
    check_units(text, FUNCTIONS[name](text))


@settings(max_examples=60, deadline=None)
@given(text=texts)
def test_spans_round_trip_across_piece_seams(text):
    """Long texts go to nltk in pieces; tiny pieces put seams everywhere."""
    old = nt._MAX_PIECE
    nt._MAX_PIECE = 12
    try:
        for fn in FUNCTIONS.values():
            check_units(text, fn(text))
    finally:
        nt._MAX_PIECE = old


@settings(max_examples=60, deadline=None)
@given(text=texts)
@example(text="U.S.'Finland")  # Punkt broke it after "U.S.", inside the word: the word straddled two spans
def test_sentence_spans_match_split_sentences(text):
    sentences = split_sentences(text)
    spans = sentence_spans(text)
    assert len(spans) >= len(sentences)
    for sent in sentences:  # every sentence's tokens lie inside one span
        assert any(s <= sent[0][1] and sent[-1][2] <= e for s, e in spans)


def test_one_megabyte_line_is_fast():
    chunk = (
        'Nokia (Espoo), the "mobile" firm, said on Monday it didn\'t see any problem with 5% growth, '
        "3,000 jobs and 1996-12-06 e-mail at https://example.com/a?b=c — 日本語のテキスト👩\u200d💻 "
    )
    text = ""
    while len(text) < 1_000_000:
        text += chunk * 20 + "Then it ended. "
    text = text[:1_000_000] + " " + "xx" * 20_000  # and a 40,000-character word at the end
    start = time.perf_counter()
    toks = tokenize(text)
    took = time.perf_counter() - start
    assert toks[-1] == ("xx" * 20_000, 1_000_001, 1_040_001)  # long words are never cut
    assert len(toks) > 150_000
    assert took < 30, f"{took:.1f}s for 1 MB"  # about 3 s on an idle 2-core AMD EPYC


# --------------------------------------------------------------------------------------------- #
# CoNLL conventions
# --------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Finland.", ["Finland", "."]),
        ('"Nokia" (Espoo)', ['"', "Nokia", '"', "(", "Espoo", ")"]),
        ("don't", ["do", "n't"]),
        ("The U.S. economy", ["The", "U.S.", "economy"]),
        ("the U.S. Treasury said", ["the", "U.S.", "Treasury", "said"]),
        ("Acme Inc. said", ["Acme", "Inc.", "said"]),
        ("an e-mail", ["an", "e-mail"]),
        ("https://example.com/a?b=c", ["https://example.com/a?b=c"]),
        ("5%", ["5", "%"]),
        ("Mary's car", ["Mary", "'s", "car"]),
        ("players' union", ["players", "'", "union"]),
        ("on 1996-12-06 at 10:30", ["on", "1996-12-06", "at", "10:30"]),
        ("3,000 or 1.5 $5", ["3,000", "or", "1.5", "$", "5"]),
        ("I cannot", ["I", "cannot"]),  # CoNLL keeps it whole
        ("mail a.b@c.com, or see (https://x.org/Foo_(bar)).", ["mail", "a.b@c.com", ",", "or", "see", "(", "https://x.org/Foo_(bar)", ")", "."]),
        ("see www.example.com.", ["see", "www.example.com", "."]),
        ("'Hello,' he said.", ["'", "Hello", ",", "'", "he", "said", "."]),
        ("“Nokia” O’Neil’s", ["“", "Nokia", "”", "O’Neil", "’s"]),
        ("x—y really…", ["x", "—", "y", "really", "…"]),
        ("SOCCER - JAPAN GET LUCKY WIN", ["SOCCER", "-", "JAPAN", "GET", "LUCKY", "WIN"]),
        ("in the U.S.", ["in", "the", "U.S", "."]),  # CoNLL splits the sentence-final period, abbreviation or not
        ("He went to Finland. Then he left.", ["He", "went", "to", "Finland", ".", "Then", "he", "left", "."]),
        ("1. Svetlana Gladishiva (Russia) 1:18.81", ["1.", "Svetlana", "Gladishiva", "(", "Russia", ")", "1:18.81"]),
        ("", []),
        (" \t\r\n\u00a0", []),
    ],
)
def test_conll_tokens(text, expected):
    assert words(text) == expected


def test_spans_of_example():
    text = 'He said "Nokia" (Espoo).'
    assert tokenize(text) == [
        ("He", 0, 2), ("said", 3, 7), ('"', 8, 9), ("Nokia", 9, 14), ('"', 14, 15),
        ("(", 16, 17), ("Espoo", 17, 22), (")", 22, 23), (".", 23, 24),
    ]


# --------------------------------------------------------------------------------------------- #
# Sentences and layouts
# --------------------------------------------------------------------------------------------- #


def as_words(units):
    return [[t for t, _, _ in unit] for unit in units]


def test_split_sentences():
    text = "The U.S. ambassador left. She came back on Monday!  Did he?\nYes."
    sents = split_sentences(text)
    assert as_words(sents) == [
        ["The", "U.S.", "ambassador", "left", "."],
        ["She", "came", "back", "on", "Monday", "!"],
        ["Did", "he", "?"],
        ["Yes", "."],
    ]
    assert [text[s[0][1] : s[-1][2]] for s in sents] == [
        "The U.S. ambassador left.", "She came back on Monday!", "Did he?", "Yes.",
    ]


def test_ranked_list_numbers_start_the_next_sentence():
    text = "Results: 1. Anna Ek (Sweden) 24.40 2. Ida Berg (Norway) 24.30 3. Eva Lind (Finland) 24.10"
    assert [s[0][0] for s in split_sentences(text)] == ["Results", "1.", "2.", "3."]


def test_layouts():
    text = "First line. Two\r\nsecond line\r\n\r\nA paragraph\nwrapped here. Next one.\n \n\nLast"
    assert as_words(layout_units(text, "line")) == [
        ["First", "line", ".", "Two"], ["second", "line"], ["A", "paragraph"], ["wrapped", "here", ".", "Next", "one", "."], ["Last"],
    ]
    assert as_words(layout_units(text, "paragraph")) == [
        ["First", "line", "."], ["Two", "second", "line"], ["A", "paragraph", "wrapped", "here", "."], ["Next", "one", "."], ["Last"],
    ]
    assert as_words(layout_units(text, "document")) == [
        ["First", "line", "."], ["Two", "second", "line", "A", "paragraph", "wrapped", "here", "."], ["Next", "one", "."], ["Last"],
    ]
    for layout in LAYOUTS:
        check_units(text, layout_units(text, layout))
    with pytest.raises(ValueError, match="layout"):
        layout_units(text, "page")


def test_layout_records_group_sentences_by_unit():
    text = "First line. Two\r\nsecond line\r\n\r\nA paragraph\nwrapped here. Next one.\n \n\nLast"
    for layout in LAYOUTS:
        records = nt.layout_records(text, layout)
        assert [sent for unit in records for sent in unit] == layout_units(text, layout)
    assert [len(u) for u in nt.layout_records(text, "line")] == [1, 1, 1, 1, 1]
    assert [len(u) for u in nt.layout_records(text, "paragraph")] == [2, 2, 1]
    assert [len(u) for u in nt.layout_records(text, "document")] == [4]
    assert nt.layout_records("  \n\n ", "paragraph") == []
    ws = nt.layout_records("Hi Finland.  Bye (now).\nx", "document", words="whitespace")
    assert [[t for t, _, _ in s] for s in ws[0]] == [["Hi", "Finland."], ["Bye", "(now).", "x"]]
    assert [[t for t, _, _ in s] for u in nt.layout_records("a  b.\nc", "line", "whitespace") for s in u] == [["a", "b."], ["c"]]
    with pytest.raises(ValueError, match="word splitter"):
        nt.layout_records(text, "line", words="spacy")


def test_contract_is_the_settings_to_record():
    data = nt.contract("document")
    assert json.loads(json.dumps(data)) == data
    assert TextSettings.from_dict(data) == TextSettings.current("document")
    assert data["tokenizer"] == nt.TOKENIZER and data["layout"] == "document"


# --------------------------------------------------------------------------------------------- #
# Settings and import cost
# --------------------------------------------------------------------------------------------- #


def test_settings_json_round_trip():
    cur = TextSettings.current("paragraph")
    assert cur.layout == "paragraph" and cur.version
    data = json.loads(json.dumps(cur.to_dict()))
    assert TextSettings.from_dict(data) == cur
    assert TextSettings.from_dict({**data, "future_key": 1}) == cur
    assert cur.differences(cur) == []
    assert TextSettings.from_dict({**data, "version": ""}).differences(cur) == []
    assert cur.differences(TextSettings.from_dict({**data, "rules": 0})) == ["rules: 1 vs 0"]
    with pytest.raises(ValueError, match="layout"):
        TextSettings(layout="page")


def test_nltk_is_imported_lazily():
    code = "import sys, nerbatch.core.tokenize as t; t.TextSettings.current(); assert 'nltk' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
