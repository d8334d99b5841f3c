"""Plain text, cut into CoNLL-style tokens with character spans (:mod:`nerbatch.tokenize`).

``ReadOptions.layout`` says where sentences are: ``line`` (the default for text files: one
sentence a line, blank lines skipped), ``paragraph`` (blank-line separated paragraphs, their
hard-wrapped lines joined, split into sentences) or ``document`` (the whole file split into
sentences). A file is one document (``doc_id`` "0"), so every sentence gets its neighbours as
context. Each sentence keeps the text of its unit (the line, the paragraph or the file, lines
joined by ``\\n``) in ``text`` with its tokens' spans into it; ``part``/``last`` mark the sentences
of one unit, which the JSONL and HTML writers join back into one record.
"""

from __future__ import annotations

from typing import Iterator

from ..record import Sentence
from ..tokenize import layout_records
from .base import ReadOptions, decoded_lines


def unit_sentences(
    text: str, layout: str, words: str, *, doc_id: str | None, index: int, path: str, line: int, source=None
) -> list[Sentence]:
    """The sentences of one unit of raw text (``layout`` as in :func:`nerbatch.tokenize.layout_records`,
    applied to ``text`` as a whole: a line stays one sentence, a paragraph or document is split)."""
    units = layout_records(text, layout, words)
    sentences = [sent for unit in units for sent in unit]
    out = []
    for k, toks in enumerate(sentences):
        first = toks[0][1]
        out.append(
            Sentence(
                tokens=[t for t, _, _ in toks],
                doc_id=doc_id,
                index=index + k,
                path=path,
                line=line + text.count("\n", 0, first),
                source=source,
                text=text,
                spans=[(a, b) for _, a, b in toks],
                part=k,
                last=k == len(sentences) - 1,
            )
        )
    return out


def read_text(path: str, options: ReadOptions = ReadOptions()) -> Iterator[Sentence]:
    """Sentences of a text file under ``options.layout_for("text")``, in order."""
    layout = options.layout_for("text")
    words = options.tokenizer
    index = 0
    lines: list[str] = []
    first_line = 0

    def unit() -> list[Sentence]:
        nonlocal index, lines
        text = "\n".join(lines)
        lines = []
        out = unit_sentences(text, "document", words, doc_id="0", index=index, path=path, line=first_line)
        index += len(out)
        return out

    for lineno, line, error in decoded_lines(path, options):
        if error is not None:
            if lines:
                yield from unit()
            yield Sentence(tokens=[], doc_id="0", path=path, line=lineno, source=line, error=error)
            continue
        if layout == "line":
            if not line.strip():
                continue
            for sent in unit_sentences(line, "line", words, doc_id="0", index=index, path=path, line=lineno):
                yield sent
                index += 1
            continue
        if not line.strip():
            if layout == "paragraph":
                if lines:
                    yield from unit()
                continue
            if not lines:
                continue
        if not lines:
            first_line = lineno
        lines.append(line)
    if lines:
        yield from unit()
