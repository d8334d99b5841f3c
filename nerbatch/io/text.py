"""Plain text: one sentence a line, words split on whitespace (blank lines are skipped)."""

from __future__ import annotations

from typing import Iterator

from ..record import Sentence
from .base import ReadOptions, decoded_lines
from .jsonl import split_text


def read_text(path: str, options: ReadOptions = ReadOptions()) -> Iterator[Sentence]:
    """Each non-blank line is one sentence of one document (the file)."""
    index = 0
    for lineno, line, error in decoded_lines(path, options):
        if error is not None:
            yield Sentence(tokens=[], doc_id="0", path=path, line=lineno, source=line, error=error)
            continue
        if not line.strip():
            continue
        tokens, spans = split_text(line)
        yield Sentence(tokens=tokens, doc_id="0", index=index, path=path, line=lineno, text=line, spans=spans)
        index += 1
