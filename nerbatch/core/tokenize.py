"""Raw text → CoNLL-2003-style tokens with character spans, and sentence splitting.

The model is trained on CoNLL-2003 tokens (Penn-Treebank conventions: ``Finland`` ``.``, ``do``
``n't``, ``(`` ``Espoo`` ``)``, but ``U.S.``, ``e-mail``, ``1996-12-06``, ``3,000`` whole), so raw
text must be cut the same way. Words come from NLTK's ``TreebankWordTokenizer`` (the tokeniser
closest to the CoNLL tokens by measurement: 99.9% token-boundary F1 on detokenised CoNLL-2003
test, see ``benchmarks/raw_text.py``) and sentences from NLTK's Punkt splitter with its built-in
English defaults (no trained model, so nothing is downloaded at run time). A few measured
adjustments sit on top, each explained where it is made.

Every token is ``(token, start, end)`` with ``text[start:end] == token``: tokens are always
slices of the caller's string, never rewritten (curly quotes stay curly in the token even though
they are tokenised as straight ones). nltk is imported on first use only.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterator

Token = tuple[str, int, int]

TOKENIZER = "nltk-treebank"
SPLITTER = "nltk-punkt"
RULES = 1  # revision of the adjustments below; bump it when they change what comes out
LAYOUTS = ("line", "paragraph", "document")

# Longest piece handed to one nltk call. nltk runs each regex under a 5 s wall-clock ReDoS guard
# (nltk.redos) that a megabyte-long line on a loaded machine could trip; pieces this short take
# milliseconds. Pieces are cut at whitespace, so only a "sentence" longer than this is affected.
_MAX_PIECE = 20_000


@dataclass(frozen=True)
class TextSettings:
    """The tokenisation contract recorded with a model (``nerbatch.json``): plain JSON values.

    ``tokenizer``/``splitter``/``rules`` name what cuts the text; ``version`` is the nltk version
    it was recorded with ("" when unknown); ``layout`` is how input text is cut into sentences
    (``line``: one sentence a line; ``paragraph``: blank-line separated paragraphs, each split into
    sentences; ``document``: the whole text split into sentences; None: each format's default,
    ``line`` for text files and ``document`` for JSONL/Parquet text fields). ``tokenizer`` is
    ``"whitespace"`` for text cut at whitespace only (``--tokenizer whitespace``).
    """

    tokenizer: str = TOKENIZER
    splitter: str = SPLITTER
    rules: int = RULES
    version: str = ""
    layout: str | None = "line"

    def __post_init__(self) -> None:
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ValueError(f"unknown text layout {self.layout!r}; expected one of {', '.join(LAYOUTS)}")

    @classmethod
    def current(cls, layout: str | None = "line", words: str = "treebank") -> TextSettings:
        """The settings this installation produces (nltk's version read without importing it);
        ``words`` is the word splitter of :func:`layout_records` (``treebank`` or ``whitespace``)."""
        return cls(tokenizer=TOKENIZER if words == "treebank" else words, version=library_version(), layout=layout)

    @property
    def words(self) -> str:
        """The word splitter to pass to :func:`layout_records` (``ReadOptions.tokenizer``)."""
        return "whitespace" if self.tokenizer == "whitespace" else "treebank"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextSettings:
        """Inverse of :meth:`to_dict`; unknown keys (from a newer nerbatch) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def differences(self, other: TextSettings) -> list[str]:
        """What differs from ``other`` in how text is tokenised (empty: same tokens expected)."""
        out = []
        for name in ("tokenizer", "splitter", "rules", "version", "layout"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b and not (name == "version" and "" in (a, b)):
                out.append(f"{name}: {a!r} vs {b!r}")
        return out


def library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nltk")
    except PackageNotFoundError:
        return ""


# --------------------------------------------------------------------------------------------- #
# Masking: a same-length copy of the text that nltk sees. Spans into it are spans into the text.
# --------------------------------------------------------------------------------------------- #

# Typographic quotes → the ASCII ones of CoNLL (Treebank only knows ASCII quotes: it leaves
# “Nokia” and O’Neil’s whole). One code point each way, so every offset is unchanged.
_QUOTES = str.maketrans(
    {
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u00ab\u00bb\u2033\uff02", '"'),
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2039\u203a\u2032\uff07", "'"),
    }
)
# URLs and e-mail addresses stay whole (Treebank would cut them at ':', '?', '@', ...): they are
# masked as a run of 'x' that nltk sees as one word, then sliced back out of the original text.
_URL = re.compile(
    r"(?<![\w@])(?:(?:https?|ftp)://|www\.)[^\s<>\"'`]+"
    r"|(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
)
_URL_TRAIL = ".,;:!?'\")]}"


def _mask(text: str) -> str:
    masked = text.translate(_QUOTES)
    if "@" not in text and "://" not in text and "www." not in text:
        return masked
    parts = []
    last = 0
    for m in _URL.finditer(masked):
        start, end = m.span()
        while end > start and masked[end - 1] in _URL_TRAIL:
            # keep a closing bracket the URL itself opened (".../Foo_(bar)")
            if masked[end - 1] == ")" and masked.count("(", start, end) >= masked.count(")", start, end):
                break
            end -= 1
        if end - start < 3:
            continue
        parts.append(masked[last:start])
        parts.append("x" * (end - start))
        last = end
    parts.append(masked[last:])
    return "".join(parts)


# --------------------------------------------------------------------------------------------- #
# nltk, loaded on first use
# --------------------------------------------------------------------------------------------- #

_NLTK: dict[str, Any] = {}


def _nltk() -> tuple[Any, Any]:
    if not _NLTK:
        try:
            from nltk.tokenize.punkt import PunktSentenceTokenizer
            from nltk.tokenize.treebank import TreebankWordTokenizer
        except ImportError as exc:  # pragma: no cover - nltk is an install requirement
            raise ImportError("raw-text input needs nltk: pip install nltk") from exc
        words = TreebankWordTokenizer()
        # CoNLL-2003 keeps "cannot" whole (17 times in train, never "can not"); Treebank splits it.
        words.CONTRACTIONS2 = [rx for rx in words.CONTRACTIONS2 if "(can)" not in rx.pattern]
        _NLTK["words"] = words
        _NLTK["sentences"] = PunktSentenceTokenizer()  # untrained: English defaults, no data files
    return _NLTK["words"], _NLTK["sentences"]


_WHITESPACE = re.compile(r"\s")
_UP_TO_LAST_WHITESPACE = re.compile(r".*\s", re.DOTALL)


def _pieces(masked: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Cut ``masked[start:end]`` at whitespace into pieces of about ``_MAX_PIECE`` chars at most.

    A word is never cut: a window without whitespace extends to the next whitespace.
    """
    while end - start > _MAX_PIECE:
        m = _UP_TO_LAST_WHITESPACE.match(masked, start, start + _MAX_PIECE)
        if m and m.end() - 1 > start:
            cut = m.end() - 1
        else:
            m = _WHITESPACE.search(masked, start + _MAX_PIECE, end)
            if m is None:
                break
            cut = m.start()
        yield start, cut
        start = cut
    yield start, end


_FALLBACK = re.compile(r"\w+(?:[-.'’]\w+)*|[^\w\s]")


def _word_spans(masked: str, start: int, end: int) -> list[tuple[int, int]]:
    words, _ = _nltk()
    spans: list[tuple[int, int]] = []
    for a, b in _pieces(masked, start, end):
        piece = masked[a:b]
        try:
            got = [(a + s, a + e) for s, e in words.span_tokenize(piece)]
        except Exception:  # nltk's ReDoS guard timing out, or an alignment failure: stay usable
            got = [(a + m.start(), a + m.end()) for m in _FALLBACK.finditer(piece)]
        spans.extend(got)
    return spans


# Treebank splits a closing single quote but leaves an opening one on its word ("'Hello", "'We");
# CoNLL has the quote as its own token. Clitics ('s 'm 'd 'll 're 've) keep theirs.
_OPEN_QUOTE = re.compile(r"'(?!(?:s|m|d|ll|re|ve)$)(?=\w)", re.IGNORECASE)
# Dashes and the ellipsis character: Treebank splits "--" and "..." but not their one-character
# forms ("x—y", "really…"), which CoNLL text would have as separate tokens.
_SPLIT_CHARS = re.compile("[\u2014\u2015\u2026]")


def _adjust(masked: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in spans:
        tok = masked[s:e]
        if e - s > 1 and tok[0] == "'" and _OPEN_QUOTE.match(tok):
            out.append((s, s + 1))
            s += 1
            tok = tok[1:]
        if e - s > 1 and _SPLIT_CHARS.search(tok):
            last = s
            for m in _SPLIT_CHARS.finditer(masked, s, e):
                if m.start() > last:
                    out.append((last, m.start()))
                out.append(m.span())
                last = m.end()
            if last < e:
                out.append((last, e))
            continue
        out.append((s, e))
    return out


# --------------------------------------------------------------------------------------------- #
# Sentences
# --------------------------------------------------------------------------------------------- #

# "... (Austria) 24.40 5. Korneilus Hole ..." — in flattened ranking lists Punkt ends a sentence
# after the list number "5."; it opens the next item instead (CoNLL starts the sentence there).
# Only after a number, ")" or ":", so "since November 16." still ends its sentence. Measured on
# the paragraph benchmark: sentence precision 82.8% → 95.7% together with the next rule.
_LIST_NUMBER = re.compile(r"[\d):]\s+(\d{1,3}\.)$")
_OPENING = re.compile(r"[\s\"'(\[{]*([^\W\d_])")


def _sentence_spans(masked: str, start: int, end: int) -> list[tuple[int, int]]:
    _, sentences = _nltk()
    raw: list[tuple[int, int]] = []
    for a, b in _pieces(masked, start, end):
        try:
            raw.extend((a + s, a + e) for s, e in sentences.span_tokenize(masked[a:b]))
        except Exception:  # ReDoS guard: keep the piece as one sentence
            raw.append((a, b))
    out: list[tuple[int, int]] = []
    for s, e in raw:
        # Untrained Punkt has no statistics on which abbreviations start sentences, so it breaks
        # after "U.S." in "the U.S. ambassador"; a sentence does not start in lower case. Nor does
        # one start inside a word: Punkt can break "U.S.'Finland" after "U.S.", where no space is
        # (the word would straddle two sentences).
        m = _OPENING.match(masked, s, e)
        inside = out and out[-1][1] == s and not masked[s - 1].isspace() and not masked[s].isspace()
        if out and (inside or (m and masked[m.start(1)].islower())):
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    for k in range(len(out) - 1):
        s, e = out[k]
        m = _LIST_NUMBER.search(masked, s, e)
        if m:
            out[k] = (s, m.start() + 1)
            out[k + 1] = (m.start(1), out[k + 1][1])
    return out


# Inside one line (the ``line`` layout, :func:`tokenize`) a sentence break that Punkt finds only
# takes the period off a word of four or more letters or of lower-case letters ("Finland." "then."):
# what else ends in a period there is mostly an abbreviation, initial or list number that untrained
# Punkt mistakes for a sentence end ("U.S. Treasury", "St. Louis", "1. Svetlana"), and CoNLL keeps
# those whole. Measured on CoNLL-2003 test lines: 99.93% token F1, against 99.07% when every break
# takes its period and 99.91% for one plain Treebank pass over the line. Between sentences of a paragraph
# (:func:`split_sentences`) every break takes its period, as CoNLL does at sentence ends ("U.S" ".").


def _plain_word(word: str) -> bool:
    return word.isalpha() and (len(word) >= 4 or word.islower())


_CLOSERS = {")", "]", "}", '"', "'"}
# a possible sentence end with more text after it: without one, the text is a single sentence
_INNER_END = re.compile(r"[.!?][\"')\]]*\s+\S")


def _final_period(masked: str, words: list[tuple[int, int]], split: bool) -> None:
    """Split (or join) the period of the last word of a sentence that is not the text's last."""
    j = len(words) - 1  # the final period comes before any closing brackets and quotes
    while j > 0 and masked[words[j][0] : words[j][1]] in _CLOSERS:
        j -= 1
    if j < 0:
        return
    a, b = words[j]
    word = masked[a:b]
    if word == "." and j > 0 and words[j - 1][1] == a:  # split already (a Treebank call ended here)
        c, d = words[j - 1]
        if not split and not _plain_word(masked[c:d]):
            words[j - 1 : j + 1] = [(c, b)]
    elif len(word) > 1 and word[-1] == "." and word[-2] != ".":  # as Treebank does at the end
        if split or _plain_word(word[:-1]):
            words[j : j + 1] = [(a, b - 1), (b - 1, b)]


def _split(text: str, masked: str, start: int, end: int, inner_periods: bool) -> list[list[Token]]:
    """Sentences of ``text[start:end]``; ``inner_periods=False`` keeps abbreviation-like words whole.

    Treebank runs once over runs of whole sentences (its per-call cost dominates on short
    sentences); the words are then dealt out to the sentences, and the period of each sentence's
    last word is split as a Treebank call on that sentence alone would (see ``_plain_word``).
    """
    if not inner_periods and not _INNER_END.search(masked, start, end):
        sentences = [(start, end)]
    else:
        sentences = _sentence_spans(masked, start, end)
    out: list[list[Token]] = []
    n = len(sentences)
    i = 0
    while i < n:
        j = i + 1
        while j < n and sentences[j][1] - sentences[i][0] <= _MAX_PIECE:
            j += 1
        words = _adjust(masked, _word_spans(masked, sentences[i][0], sentences[j - 1][1]))
        w = 0
        for k in range(i, j):
            mine = []
            while w < len(words) and (k == j - 1 or words[w][0] < sentences[k + 1][0]):
                mine.append(words[w])
                w += 1
            if k < n - 1:
                _final_period(masked, mine, inner_periods)
            if mine:
                out.append([(text[a:b], a, b) for a, b in mine])
        i = j
    return out


# --------------------------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------------------------- #


def tokenize(text: str) -> list[Token]:
    """CoNLL-style tokens of ``text``, taken as one sentence (or a few on one line), with spans.

    As in CoNLL (and Treebank) the period of the last word is split off (``U.S`` ``.`` at the
    end, ``U.S.`` inside). Sentence breaks inside the text split the period of plain words only
    (see ``_plain_word``): "Finland. Then" gives ``Finland`` ``.`` ``Then``.
    """
    return [tok for sent in _split(text, _mask(text), 0, len(text), False) for tok in sent]


def split_sentences(text: str) -> list[list[Token]]:
    """Sentences of ``text`` (a paragraph or document), each a list of tokens with spans into ``text``.

    Line breaks are plain whitespace here; use :func:`layout_units` for blank-line paragraphs.
    """
    return _split(text, _mask(text), 0, len(text), True)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text`` (sentence splitting alone, no tokens)."""
    return _sentence_spans(_mask(text), 0, len(text))


_LINE = re.compile(r"[^\n]+")
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n\s*")


def layout_units(text: str, layout: str = "line") -> list[list[Token]]:
    """Cut ``text`` into the sentences the tagger sees, under one of :data:`LAYOUTS`.

    ``line``: each non-blank line is one sentence (as CoNLL text is laid out; :func:`tokenize`
    on each line); ``paragraph``: paragraphs are separated by blank lines, the lines of one are
    joined (hard wrapping) and split into sentences; ``document``: the whole text is split into
    sentences, line breaks being plain spaces. Spans are into ``text``; empty units are left out.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown text layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    masked = _mask(text)
    if layout == "document":
        return _split(text, masked, 0, len(text), True)
    out: list[list[Token]] = []
    if layout == "line":
        for m in _LINE.finditer(text):
            unit = [tok for sent in _split(text, masked, m.start(), m.end(), False) for tok in sent]
            if unit:
                out.append(unit)
        return out
    start = 0
    for m in [*_BLANK_LINES.finditer(text), None]:
        end = m.start() if m else len(text)
        out.extend(_split(text, masked, start, end, True))
        if m:
            start = m.end()
    return out


WORD_SPLITTERS = ("treebank", "whitespace")
_WS_WORD = re.compile(r"\S+")


def _whitespace_sentences(text: str, sentences: list[tuple[int, int]]) -> list[list[Token]]:
    out = []
    for a, b in sentences:
        toks = [(m.group(), m.start(), m.end()) for m in _WS_WORD.finditer(text, a, b)]
        if toks:
            out.append(toks)
    return out


def layout_records(text: str, layout: str = "line", words: str = "treebank") -> list[list[list[Token]]]:
    """Like :func:`layout_units`, with the sentences grouped by the unit they come from.

    A unit is a line (``line``), a blank-line separated paragraph (``paragraph``) or the whole text
    (``document``); each is a list of sentences, each a list of tokens with spans into ``text``.
    Units without tokens are left out. ``words="whitespace"`` cuts words at whitespace only (the
    behaviour before tokenisation; sentences still come from the layout and Punkt).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown text layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if words not in WORD_SPLITTERS:
        raise ValueError(f"unknown word splitter {words!r}; expected one of {', '.join(WORD_SPLITTERS)}")
    if layout == "line":
        bounds = [m.span() for m in _LINE.finditer(text)]
    elif layout == "paragraph":
        bounds, start = [], 0
        for m in [*_BLANK_LINES.finditer(text), None]:
            end = m.start() if m else len(text)
            bounds.append((start, end))
            if m:
                start = m.end()
    else:
        bounds = [(0, len(text))]
    masked = _mask(text) if words == "treebank" else text
    out: list[list[list[Token]]] = []
    for a, b in bounds:
        if words == "whitespace":
            spans = [(a, b)] if layout == "line" else _sentence_spans(_mask(text[a:b]), 0, b - a)
            unit = _whitespace_sentences(text, [(a + s, a + e) if layout != "line" else (s, e) for s, e in spans])
        elif layout == "line":
            toks = [tok for sent in _split(text, masked, a, b, False) for tok in sent]
            unit = [toks] if toks else []
        else:
            unit = _split(text, masked, a, b, True)
        if unit:
            out.append(unit)
    return out


def contract(layout: str | None = "line", words: str = "treebank") -> dict[str, Any]:
    """The tokenisation settings to record with a model trained or run on raw text (``nerbatch.json``).

    ``TextSettings.from_dict(contract())`` gives them back; compare with
    :meth:`TextSettings.differences` against ``TextSettings.current(layout)`` at tagging time.
    """
    return TextSettings.current(layout, words).to_dict()
