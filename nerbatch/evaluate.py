"""Scoring files that carry gold and predicted tags (or tagging gold files first), as dicts.

Default numbers follow the CoNLL shared-task scorer (conlleval, IOB1 chunk rules); ``strict``
gives seqeval's strict IOB2 mode. See ``nerbatch.scoring`` for the counting itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Iterable

from .errors import InputError
from .io import ReadOptions, input_format, read
from .io.base import AtomicOutput
from .io.conll import DOCSTART
from .record import Sentence
from .scoring import Scorer, format_report


def add_sentence(scorer: Scorer, sent: Sentence, docstart: str | None = None) -> None:
    """Score one sentence (if it has gold tags).

    Like conlleval on a tagged CoNLL file, ``-DOCSTART-`` lines count as ``O``/``O`` tokens (they
    change accuracy and the token count, never P/R/F1): ``docstart="tagged"`` reads their last two
    columns (a file written by ``tag``); ``"input"`` takes their last column as gold and ``O`` as the
    prediction the CoNLL writer appends; None ignores them.
    """
    if docstart is not None:
        for line in sent.prefix:
            if not line.startswith(DOCSTART):
                continue
            cols = line.split()
            if docstart == "tagged" and len(cols) >= 3:
                scorer.add([cols[-2]], [cols[-1]], sentence=False)
            elif docstart == "input" and len(cols) >= 2:
                scorer.add([cols[-1]], ["O"], sentence=False)
    if sent.tokens and sent.tags is not None:
        scorer.add(sent.tags, sent.pred or [])


def score_sentences(sentences: Iterable[Sentence], scorer: Scorer, docstart: str | None = None) -> Iterable[Sentence]:
    """Pass sentences through, adding each one's gold and predicted tags to ``scorer``."""
    for sent in sentences:
        if sent.tokens and sent.tags is None:
            raise InputError("no gold tags to evaluate against", path=sent.path, line=sent.line)
        try:
            add_sentence(scorer, sent, docstart)
        except ValueError as exc:
            raise InputError(str(exc), path=sent.path, line=sent.line) from None
        yield sent


def evaluation_options(fmt: str, options: ReadOptions = ReadOptions()) -> ReadOptions:
    """Read options for tagged files: CoNLL ``... gold pred``; JSONL/Parquet ``tags`` + ``pred_tags``."""
    if fmt == "conll":
        return replace(options, tag_column=-2 if options.tag_column in (-1, None) else options.tag_column, pred_column=-1)
    return replace(options, pred_column=-1)


def evaluate_files(
    paths: list[str],
    *,
    strict: bool = False,
    fmt: str | None = None,
    options: ReadOptions = ReadOptions(),
) -> dict:
    """Score files that already hold gold and predicted tags; streams, so any size works."""
    scorer = Scorer(strict=strict)
    for path in paths:
        f = input_format(path, fmt)
        for _ in score_sentences(read(path, f, evaluation_options(f, options)), scorer, "tagged" if f == "conll" else None):
            pass
    result = scorer.result()
    result["files"] = list(paths)
    return result


def evaluate_model(
    model: str,
    paths: list[str],
    *,
    strict: bool = False,
    fmt: str | None = None,
    options: ReadOptions = ReadOptions(),
    tagger_options=None,
) -> dict:
    """Tag gold files with ``model`` (nothing is written) and score the predictions."""
    from .tagger import Tagger, TaggerOptions

    tagger = Tagger(model, tagger_options or TaggerOptions())
    scorer = Scorer(strict=strict)
    for path in paths:
        f = input_format(path, fmt)
        for _ in score_sentences(tagger.tag(read(path, f, options)), scorer, "input" if f == "conll" else None):
            pass
    result = scorer.result()
    result["files"] = list(paths)
    result["model"] = model
    return result


def write_report(result: dict, *, text_path: str | None = None, json_path: str | None = None) -> None:
    """Write the text and/or JSON report atomically."""
    for path, body in ((text_path, lambda: format_report(result) + "\n"), (json_path, lambda: json.dumps(result, indent=2) + "\n")):
        if path:
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            out = AtomicOutput(path)
            out.write(body())
            out.commit()
