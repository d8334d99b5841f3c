"""Turn CoNLL-2003 token lists back into plausible raw text, keeping every gold token's span.

Used by ``benchmarks/raw_text.py`` to measure tokenisers and sentence splitters against gold
tokens. The rules are the usual English typesetting ones (the inverse of Penn-Treebank-style
tokenisation), deliberately simple and independent of any tokeniser under test:

* no space before ``, . ; : ! ? % ) ] }`` and before the clitics ``'s n't 're 've 'll 'd 'm``;
* no space after ``( [ { $``;
* straight double quotes (and single quotes that are not possessive) alternate open/close within
  a sentence: an opening quote sticks to the next token, a closing one to the previous token; a
  quote that ends a sentence closes, one that starts it opens (quotations span sentences);
* a possessive ``'`` (POS tag ``POS``, as in ``players '``) sticks to the previous token.

Everything else keeps one space. ``detokenize`` returns the text and the ``(start, end)`` span of
every token, with ``text[start:end] == token``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", "%", ")", "]", "}", "...", "'s", "n't", "'re", "'ve", "'ll", "'d", "'m"}
NO_SPACE_AFTER = {"(", "[", "{", "$"}
QUOTES = {'"', "'"}


@dataclass
class GoldSentence:
    tokens: list[str]
    tags: list[str]
    pos: list[str]


@dataclass
class GoldDocument:
    sentences: list[GoldSentence]


def read_conll(path: str | Path) -> list[GoldDocument]:
    """CoNLL-2003 ``word POS chunk NER`` file → documents (split at -DOCSTART-) of sentences."""
    docs: list[GoldDocument] = []
    sents: list[GoldSentence] = []
    cur: list[list[str]] = []

    def flush_sentence() -> None:
        if cur:
            sents.append(GoldSentence([c[0] for c in cur], [c[-1] for c in cur], [c[1] if len(c) > 2 else "" for c in cur]))
            cur.clear()

    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\r\n")
            if line.startswith("-DOCSTART-"):
                flush_sentence()
                if sents:
                    docs.append(GoldDocument(list(sents)))
                    sents.clear()
                continue
            if not line.strip():
                flush_sentence()
                continue
            cur.append(line.split())
    flush_sentence()
    if sents:
        docs.append(GoldDocument(list(sents)))
    return docs


def _is_clitic(tok: str) -> bool:
    return tok.lower() in NO_SPACE_BEFORE and tok[0] in "'n"


def detokenize(tokens: list[str], pos: list[str] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """Raw text for ``tokens`` and each token's character span in it."""
    pos = pos or [""] * len(tokens)
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    open_quote = {q: False for q in QUOTES}
    glue_next = False  # the previous token wants no space after it
    for i, tok in enumerate(tokens):
        glue = glue_next or i == 0
        glue_next = False
        if tok in NO_SPACE_BEFORE or _is_clitic(tok):
            glue = glue or i > 0
        elif tok == "'" and pos[i] == "POS":
            glue = True
        elif tok in QUOTES:
            # a quote ending a sentence closes (quotes may span sentences); one starting it opens
            if i == len(tokens) - 1 and i > 0 or (open_quote[tok] and i > 0):  # closing quote: attach to the previous token
                glue = True
                open_quote[tok] = False
            else:  # opening quote: attach to the next token
                open_quote[tok] = True
                glue_next = True
        if tok in NO_SPACE_AFTER:
            glue_next = True
        if not glue:
            parts.append(" ")
            length += 1
        spans.append((length, length + len(tok)))
        parts.append(tok)
        length += len(tok)
    return "".join(parts), spans


def join_sentences(sentences: list[tuple[str, list[tuple[int, int]]]], sep: str = " ") -> tuple[str, list[tuple[int, int]], list[list[tuple[int, int]]]]:
    """Join detokenised sentences into one paragraph: its text, each sentence's span, each token's span."""
    parts: list[str] = []
    sent_spans: list[tuple[int, int]] = []
    tok_spans: list[list[tuple[int, int]]] = []
    offset = 0
    for k, (text, spans) in enumerate(sentences):
        if k:
            parts.append(sep)
            offset += len(sep)
        parts.append(text)
        sent_spans.append((offset, offset + len(text)))
        tok_spans.append([(s + offset, e + offset) for s, e in spans])
        offset += len(text)
    return "".join(parts), sent_spans, tok_spans
