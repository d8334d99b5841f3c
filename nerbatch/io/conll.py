"""CoNLL columns: one token a line, blank lines between sentences, ``-DOCSTART-`` starts a document.

The writer mirrors the input line for line and appends one predicted-tag column, so
``word POS chunk gold`` becomes ``word POS chunk gold pred`` (what conlleval scores).
"""

from __future__ import annotations

from typing import Iterator

from ..errors import InputError
from ..record import Sentence
from .base import ReadOptions, Writer, decoded_lines

DOCSTART = "-DOCSTART-"


def _split(line: str) -> list[str]:
    return line.split("\t") if "\t" in line else line.split()


def read_conll(path: str, options: ReadOptions = ReadOptions()) -> Iterator[Sentence]:
    """Stream sentences from a CoNLL file; every token line of the input lands in one sentence."""
    ncols: int | None = None
    doc = 0
    index = 0
    prefix: list[str] = []
    tokens: list[str] = []
    tags: list[str] = []
    preds: list[str] = []
    raw: list[str] = []
    start = 0
    has_tags = options.tag_column is not None
    has_pred = options.pred_column is not None

    def flush() -> Sentence:
        nonlocal prefix, tokens, tags, preds, raw, index
        sent = Sentence(
            tokens=tokens,
            tags=tags if has_tags and ncols and ncols > 1 else None,
            doc_id=f"{doc}",
            index=index,
            path=path,
            line=start,
            source=raw,
            prefix=prefix,
            pred=preds if has_pred else None,
        )
        index += 1
        prefix, tokens, tags, preds, raw = [], [], [], [], []
        return sent

    for lineno, line in decoded_lines(path, options):
        stripped = line.rstrip()
        if not stripped:
            if tokens:
                yield flush()
            prefix.append("")
            continue
        if stripped.startswith(DOCSTART) and (len(stripped) == len(DOCSTART) or stripped[len(DOCSTART)].isspace()):
            if tokens:
                yield flush()
            doc += 1
            index = 0
            prefix.append(stripped)
            continue
        cols = _split(stripped)
        if ncols is None:
            ncols = len(cols)
            if has_pred and ncols < 3:
                raise InputError(
                    f"expected at least 3 columns (word ... gold pred), found {ncols}",
                    path=path,
                    line=lineno,
                    hint="evaluate needs the output of `nerbatch tag` on a file with gold tags",
                )
        elif len(cols) != ncols:
            raise InputError(
                f"expected {ncols} columns like the first token line, found {len(cols)}",
                path=path,
                line=lineno,
                hint="every token line needs the same columns; separate them with spaces or tabs, not both",
            )
        if any(not c for c in cols):
            raise InputError("empty column (two tabs in a row?)", path=path, line=lineno)
        if not tokens:
            start = lineno
        try:
            tokens.append(cols[options.token_column])
            if has_tags and ncols > 1:
                tags.append(cols[options.tag_column])  # type: ignore[index]
            if has_pred:
                preds.append(cols[options.pred_column])  # type: ignore[index]
        except IndexError:
            raise InputError(
                f"column index out of range for a line of {ncols} columns", path=path, line=lineno
            ) from None
        raw.append(stripped)
    if tokens:
        yield flush()
    if prefix:
        # trailing blank / -DOCSTART- lines: an empty passthrough sentence keeps them
        yield Sentence(tokens=[], doc_id=f"{doc}", index=index, path=path, source=[], prefix=prefix)


class ConllWriter(Writer):
    """Input line + one tag column; non-CoNLL input becomes ``word [gold] pred`` lines."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._last_doc: str | None = None
        self._first = True

    def write(self, sentence: Sentence) -> None:
        out = self.out
        pred = sentence.pred or []
        if len(pred) != len(sentence.tokens):
            raise AssertionError(f"{sentence.path}:{sentence.line}: {len(sentence.tokens)} tokens, {len(pred)} tags")
        raw = sentence.source if isinstance(sentence.source, list) else None
        parts: list[str] = []
        if raw is not None:
            parts.extend(line + "\n" for line in sentence.prefix)
            for line, tag in zip(raw, pred):
                parts.append(f"{line}{chr(9) if chr(9) in line else ' '}{tag}\n")
        else:
            if not sentence.tokens:
                return
            if not self._first:
                parts.append("\n")
            gold = sentence.tags
            for i, (tok, tag) in enumerate(zip(sentence.tokens, pred)):
                tok = tok if tok.strip() and not any(c.isspace() for c in tok) else "_"
                parts.append(f"{tok} {gold[i]} {tag}\n" if gold else f"{tok} {tag}\n")
        self._first = False
        out.write("".join(parts))
