"""CoNLL columns: one token a line, blank lines between sentences, ``-DOCSTART-`` starts a document.

The writer mirrors the input line for line and appends one predicted-tag column, so
``word POS chunk gold`` becomes ``word POS chunk gold pred`` (what conlleval scores); with
``tag --scores`` a score column follows it (``... gold pred score``). Words of other
inputs are written as they are; one a CoNLL line cannot hold (a space, tab or line break in it, an
empty word, ``-DOCSTART-``) is refused by :func:`writable_as_conll` rather than changed.

Columns are split on tabs when the line has one, else on runs of ASCII spaces: any other
character (NBSP, U+3000, U+2028 ...) is part of a token.

CoNLL-U (``.conllu``, or ``ReadOptions.conllu``): the token is the FORM column (the second),
there is no gold column unless one is named, ``#`` comment lines pass through unchanged, and
multiword-token lines (ID ``1-2``) and empty nodes (ID ``1.1``) are kept in the output (with ``_``
for the tag) but not tagged.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator

from ..core.record import RECORD_DOC, Sentence
from ..errors import InputError
from .base import ReadOptions, Slice, Writer, decoded_batches, sentence_too_long

DOCSTART = "-DOCSTART-"
DOCSTART_SCORE = "1.0000"  # the --scores column of a -DOCSTART- line (its O is certain)
_BLANKS = " \t"  # the only column separators (and what is stripped from line ends)
FAST_PATH = True  # whole sentences split in C calls where nothing is odd (read_conll); tests compare both paths
PASSTHROUGH_RUN = 1024  # lines between two sentences held at most (a block holds 2,048 such runs)
_STR = {str}


def split_columns(line: str) -> list[str]:
    if "\t" in line:
        return line.split("\t")
    cols = line.split(" ")
    return [c for c in cols if c] if "" in cols else cols


def _is_docstart(line: str) -> bool:
    return line.startswith(DOCSTART) and (len(line) == len(DOCSTART) or line[len(DOCSTART)] in _BLANKS)


class Untagged(str):
    """A CoNLL-U line kept in a sentence's ``source`` but not tagged: a ``#`` comment inside the
    sentence, a multiword-token line (``1-2``) or an empty node (``1.1``)."""

    __slots__ = ()


def _multiword_or_empty(token_id: str) -> bool:
    return "-" in token_id or "." in token_id


def read_conll(path: str, options: ReadOptions = ReadOptions(), part: Slice | None = None) -> Iterator[Sentence]:
    """Stream sentences from a CoNLL file; every token line of the input lands in one sentence.

    Under ``on_error="skip"`` a sentence with a bad line is yielded with ``error`` set and no
    tokens (its raw lines in ``source``), and reading goes on with the next sentence. ``part``: the
    sentences of that slice only (cut where a sentence ends), read as in the whole file.
    """
    skip = options.on_error == "skip"
    conllu = options.conllu if options.conllu is not None else path.lower().endswith(".conllu")
    token_column = options.token_column
    tag_column = options.tag_column
    if conllu:  # the defaults name the FORM column and no gold column (CoNLL-U has no NER column)
        token_column = 1 if token_column == 0 else token_column
        tag_column = None if tag_column == -1 else tag_column
    ncols: int | None = part.columns if part is not None else None
    doc = part.docs if part is not None else 0
    index = 0
    prefix: list[str] = []
    tokens: list[str] = []
    tags: list[str] = []
    preds: list[str] = []
    raw: list[str] = []
    error: str | None = None
    start = 0
    has_tags = tag_column is not None
    has_pred = options.pred_column is not None
    limit = options.max_sentence_tokens

    def flush() -> Sentence:
        nonlocal prefix, tokens, tags, preds, raw, index, error
        if error is not None:
            sent = Sentence(tokens=[], doc_id=f"{doc}", path=path, line=start, source=raw, prefix=prefix, error=error)
        else:
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
        prefix, tokens, tags, preds, raw, error = [], [], [], [], [], None
        return sent

    def bad(message: str, lineno: int, hint: str | None = None) -> None:
        nonlocal error
        err = InputError(message, path=path, line=lineno, hint=hint)
        if not skip:
            raise err
        if error is None:
            error = str(err)

    def full(lineno: int) -> bool:
        """The sentence holds ``limit`` lines already, so it is too long: raises, or under skip marks
        it rejected (it keeps its first ``limit`` lines, for the rejects file) and returns True."""
        nonlocal error
        if limit is None or len(raw) < limit:
            return False
        err = sentence_too_long(options, path, lineno, "lines")
        if not skip:
            raise err
        error = error or str(err)
        return True

    def passthrough() -> Iterator[Sentence]:
        """A run of lines between sentences (blank, ``-DOCSTART-``, comments) goes out in empty
        sentences of ``PASSTHROUGH_RUN`` lines (the output is the same), so such a run is never held whole."""
        nonlocal prefix
        if len(prefix) >= PASSTHROUGH_RUN:
            yield Sentence(tokens=[], doc_id=f"{doc}", index=index, path=path, source=[], prefix=prefix)
            prefix = []

    def one(lineno: int, line: str, decode_error: str | None) -> Iterator[Sentence]:
        """The reader's step for one line (every line of a batch that the fast path leaves)."""
        nonlocal start, ncols, doc, index, prefix, error
        stripped = line.rstrip(_BLANKS)
        if not stripped and decode_error is None:
            if raw:
                yield flush()
            prefix.append("")
            yield from passthrough()
            return
        if conllu and stripped.startswith("#"):
            if raw:
                if not full(lineno):
                    raw.append(Untagged(stripped))
            else:
                prefix.append(stripped)
                yield from passthrough()
            return
        if stripped.startswith(DOCSTART) and _is_docstart(stripped):
            if raw:
                yield flush()
            doc += 1
            index = 0
            prefix.append(stripped)
            yield from passthrough()
            return
        if not raw:
            start = lineno
        if limit is not None and len(raw) >= limit and full(lineno):
            return
        raw.append(stripped)
        if decode_error is not None:
            if not skip:  # pragma: no cover - decoded_lines raises already
                raise InputError(decode_error)
            error = error or decode_error
            return
        cols = split_columns(stripped)
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
            bad(
                f"expected {ncols} columns like the first token line, found {len(cols)}",
                lineno,
                "every token line needs the same columns; separate them with spaces or tabs, not both",
            )
            return
        if "" in cols:
            bad("empty column: an empty token or tag, or two tabs in a row", lineno)
            return
        if conllu and _multiword_or_empty(cols[0]):
            raw[-1] = Untagged(stripped)
            return
        try:
            token = cols[token_column]
            tag = cols[tag_column] if has_tags and ncols > 1 else None  # type: ignore[index]
            pred = cols[options.pred_column] if has_pred else None  # type: ignore[index]
        except IndexError:
            raise InputError(
                f"column index out of range for a line of {ncols} columns", path=path, line=lineno
            ) from None
        tokens.append(token)
        if tag is not None:
            tags.append(tag)
        if pred is not None:
            preds.append(pred)

    fast = FAST_PATH and not conllu and (limit is None or limit > 0)
    columns: tuple | None = None
    for first, texts, slow in decoded_batches(path, options, part, until_blank=fast):
        if texts is None:
            for lineno, line, decode_error in slow:
                yield from one(lineno, line, decode_error)
            continue
        n = len(texts)
        i = 0
        while i < n:
            line = texts[i]
            if not line or raw or ncols is None or line.startswith(DOCSTART):
                yield from one(first + i, line, None)
                i += 1
                continue
            try:
                j = texts.index("", i)  # the blank line after this sentence
            except ValueError:
                j = n
            group = texts[i:j]
            # Fast path (measured: 3x faster than a line at a time on CoNLL-2003): a whole sentence whose
            # token lines are single-space separated with nothing odd about them, split in C calls.
            # Anything else (tabs, runs of blanks, -DOCSTART-, other column counts, a sentence
            # longer than the limit or cut by the batch) goes line by line and says what is wrong.
            joined = "\n".join(group)
            lines = j - i
            # the columns of all its lines in one list, a "\n" field between lines: every line has ncols
            # columns exactly when the "\n" fields fall every ncols + 1 fields
            flat = joined.replace("\n", " \n ").split(" ") if (
                j < n and (limit is None or lines <= limit) and "\t" not in joined and "  " not in joined
                and " \n" not in joined and "\n " not in joined and joined[0] != " " and joined[-1] != " "
                and DOCSTART not in joined
            ) else None
            step = ncols + 1
            if columns is None:
                try:  # the columns as offsets into a line's fields (negative ones count from its end)
                    columns = tuple(None if c is None else range(ncols)[c] for c in (
                        token_column, tag_column if has_tags and ncols > 1 else None, options.pred_column if has_pred else None))
                except IndexError:
                    columns = ()  # out of range: line by line, which says so
            if (not columns or flat is None or len(flat) != lines * step - 1
                    or flat[ncols::step].count("\n") != lines - 1):
                for k in range(i, j):
                    yield from one(first + k, texts[k], None)
                i = j
                continue
            start = first + i
            raw = group
            tokens = flat[columns[0] :: step]
            if columns[1] is not None:
                tags = flat[columns[1] :: step]
            if columns[2] is not None:
                preds = flat[columns[2] :: step]
            yield flush()
            i = j
    if raw:
        yield flush()
    if prefix:
        # trailing blank / -DOCSTART- lines: an empty passthrough sentence keeps them
        yield Sentence(tokens=[], doc_id=f"{doc}", index=index, path=path, source=[], prefix=prefix)


def _sep(line: str) -> str:
    return "\t" if "\t" in line else " "


def _passthrough(line: str, scores: bool = False) -> str:
    """A non-token line of the input: blank lines and CoNLL-U comments stay as they are;
    ``-DOCSTART-`` gets an ``O`` column like every token line (and a score of 1 with ``scores``),
    so all non-blank lines have the same columns (conlleval requires it)."""
    if not line:
        return "\n"
    if line.startswith("#"):  # only CoNLL-U comments start a non-token line with "#"
        return f"{line}\n"
    sep = _sep(line)
    return f"{line}{sep}O{sep}{DOCSTART_SCORE}\n" if scores else f"{line}{sep}O\n"


def _untagged(line: str, scores: bool = False) -> str:
    """A CoNLL-U comment inside a sentence stays as it is; multiword/empty-node lines get ``_``
    (twice with ``scores``)."""
    if line.startswith("#"):
        return f"{line}\n"
    sep = _sep(line)
    return f"{line}{sep}_{sep}_\n" if scores else f"{line}{sep}_\n"


def score_text(score: float) -> str:
    """A word's score as the ``--scores`` column writes it: 4 decimals."""
    return f"{score:.4f}"


def document_of(sentence: Sentence) -> str | None:
    """The document a sentence of non-CoNLL input belongs to: its ``doc_id``; a raw-text record
    without one is a document of its own (a text file is one: ``doc_id`` "0"); None for token
    records without a ``doc_id`` (sentences standing alone, all in one run of the output)."""
    if sentence.doc_id is not None:
        return sentence.doc_id
    if sentence.text is not None:
        return f"{RECORD_DOC}{sentence.path}:{sentence.line}"
    return None


_UNWRITABLE = re.compile(r"[ \t\r\n]")
_NAMES = {" ": "a space", "\t": "a tab", "\n": "a line break", "\r": "a line break"}


def conll_problem(sentence: Sentence) -> str | None:
    """Why a sentence of non-CoNLL input cannot be written as ``word [gold] pred`` lines that read
    back to the same words and tags, or None.

    A CoNLL line cannot hold an empty word or one with a space, tab or line break (they split columns
    and lines), a word that starts with a byte-order mark (dropped or refused at a line's start), or
    the word ``-DOCSTART-`` (read back as a document boundary). Any other character, NBSP, U+3000 or
    U+2028 included, is written as it is and read back as part of the word.
    """
    for what, values in (("token", sentence.tokens), ("gold tag", sentence.tags or ())):
        for i, value in enumerate(values, 1):
            if not value:
                return f"{what} {i} is empty"
            bad = _UNWRITABLE.search(value)
            if bad:
                return f"{what} {i} {value!r} holds {_NAMES[bad.group()]}"
            if value[0] == "\ufeff":
                return f"{what} {i} {value!r} starts with a byte-order mark (U+FEFF)"
            if value == DOCSTART and what == "token":
                return f"{what} {i} is {DOCSTART!r}, which CoNLL readers take for a document boundary"
    return None


def conll_refusal(sentence: Sentence) -> InputError | None:
    """The error for a sentence :func:`conll_problem` finds, at the record's file and line, or None.
    Raw CoNLL lines (a CoNLL input) are always written back as they were."""
    if sentence.error is not None or isinstance(sentence.source, list):
        return None
    problem = conll_problem(sentence)
    if problem is None:
        return None
    return InputError(
        f"{problem}: a CoNLL output cannot hold it (columns are split on spaces and tabs)",
        path=sentence.path,
        line=sentence.line,
        hint="write JSONL or Parquet output (--output-format jsonl), or fix the record",
    )


def writable_as_conll(sentences: Iterable[Sentence], *, skip: bool) -> Iterator[Sentence]:
    """Pass the sentences on, refusing those :func:`conll_refusal` finds: the error, or with
    ``skip`` a rejected record (``error`` set, no tokens) that the engine logs as a reject."""
    for sent in sentences:
        err = conll_refusal(sent)
        if err is not None:
            if not skip:
                raise err
            sent = Sentence(tokens=[], doc_id=sent.doc_id, path=sent.path, line=sent.line, source=_json_safe(sent.source),
                            prefix=sent.prefix, pred=[], error=str(err))
        yield sent


def _json_safe(source):
    """The record for the rejects file: as it is if JSON can hold it, else its ``repr``."""
    import json

    try:
        json.dumps(source)
    except (TypeError, ValueError):
        return repr(source)[:2000]
    return source


class ConllWriter(Writer):
    """Input line + one tag column; non-CoNLL input becomes ``word [gold] pred`` lines, a blank line
    between sentences and a ``-DOCSTART-`` line (with the same columns) between documents
    (:func:`document_of`), as in the CoNLL-2003 files. ``scores``: one more column after the tag,
    the word's score (:mod:`nerbatch.core.calibration`: an entity's words carry the entity's score
    when the model is calibrated), 4 decimals."""

    def __init__(self, path: str, scores: bool = False, **kw) -> None:
        self._first = True
        self._doc: str | None = None
        self.scores = scores
        super().__init__(path, **kw)

    def state(self) -> dict:
        return {"first": self._first, "doc": self._doc}

    def restore(self, state: dict) -> None:
        self._first = state.get("first", True)
        self._doc = state.get("doc")

    def write(self, sentence: Sentence) -> None:
        out = self.out
        pred = sentence.pred or []
        if len(pred) != len(sentence.tokens):
            raise AssertionError(f"{sentence.path}:{sentence.line}: {len(sentence.tokens)} tokens, {len(pred)} tags")
        raw = sentence.source if isinstance(sentence.source, list) else None
        parts: list[str] = []
        with_scores = self.scores
        if sentence.error is not None:  # rejected: keep the document structure, drop its lines
            out.write("".join(_passthrough(line, with_scores) for line in sentence.prefix))
            return
        scores = [score_text(s) for s in sentence.scores or [1.0] * len(pred)] if with_scores else None
        if raw is not None:
            parts.extend(_passthrough(line, with_scores) for line in sentence.prefix)
            if scores is None and raw and set(map(type, raw)) <= _STR:
                joined = "\n".join(raw)
                if "\t" not in joined:  # every line space-separated: one C call per line (measured 3x faster)
                    parts.append("\n".join(map(" ".join, zip(raw, pred))))
                    parts.append("\n")
                    self._first = False
                    out.write("".join(parts))
                    return
            tags = iter(pred)
            words = iter(scores or ())
            for line in raw:
                if isinstance(line, Untagged):
                    parts.append(_untagged(line, with_scores))
                elif scores is None:
                    parts.append(f"{line}{_sep(line)}{next(tags)}\n")
                else:
                    sep = _sep(line)
                    parts.append(f"{line}{sep}{next(tags)}{sep}{next(words)}\n")
        else:
            if not sentence.tokens:
                return
            err = conll_refusal(sentence)
            if err is not None:  # (the engine refuses or rejects it before: writable_as_conll)
                raise err
            gold = sentence.tags
            doc = document_of(sentence)
            if not self._first:
                parts.append("\n")
                if doc != self._doc:
                    parts.append(f"{DOCSTART}{' O' if gold else ''} O{' ' + DOCSTART_SCORE if with_scores else ''}\n\n")
            self._doc = doc
            for i, (tok, tag) in enumerate(zip(sentence.tokens, pred)):
                if scores is not None:
                    tag = f"{tag} {scores[i]}"
                parts.append(f"{tok} {gold[i]} {tag}\n" if gold else f"{tok} {tag}\n")
        self._first = False
        out.write("".join(parts))
