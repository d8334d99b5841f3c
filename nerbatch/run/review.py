"""``tag --min-score S`` and ``--review PATH``: entities scored below S become ``O`` before they are written,
and the dropped and borderline ones go to a file for a person to check, in a form ``nerbatch train`` reads.

Both engines apply it to the tagged sentences on their way to the writer, where the writer runs (the local
process, or each Ray worker: its review lines travel to the driver, which writes the file in input order)
(:func:`nerbatch.core.calibration.apply_min_score`: the output stays well-formed IOB2/IOBES).

A review row is one sentence that has a dropped or a borderline entity (kept, less than
:data:`~nerbatch.core.calibration.REVIEW_MARGIN` above S), in the span-annotated JSONL that
``train --train`` takes as gold (:mod:`nerbatch.core.spans`)::

    {"text": "Aino Virtanen moved to Turku .",
     "entities": [{"char_start": 0, "char_end": 13, "label": "PER", "text": "Aino Virtanen", "score": 0.41, "status": "dropped"},
                  {"char_start": 23, "char_end": 28, "label": "LOC", "text": "Turku", "score": 0.97, "status": "kept"}],
     "file": "news.conll", "line": 12}

``text`` is the sentence's words joined by spaces (raw-text input: the sentence's stretch of the
text), ``entities`` every entity the model predicted there, the dropped ones included, so a row as
written says the predictions are right: the reviewer deletes the wrong entities, fixes types and
offsets, adds missed ones, and the corrected file trains as it is (``file``/``line`` say where the
sentence came from). The file covers the sentences tagged in this run and appears, atomically, when
the run ends (not after a failed or interrupted one).
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator

from ..core.calibration import apply_min_score
from ..core.record import Sentence, token_offsets
from ..io.base import AtomicOutput

__all__ = ["Thresholds", "review_row"]


def review_row(sentence: Sentence, judged) -> dict:
    """The review row of one sentence (see the module docstring); ``judged``: its entities, as
    :func:`~nerbatch.core.calibration.apply_min_score` returns them."""
    if sentence.text is not None and sentence.spans:
        first = sentence.spans[0][0]
        text = sentence.text[first : sentence.spans[-1][1]]
        spans = [(a - first, b - first) for a, b in sentence.spans]
    else:
        text, spans = " ".join(sentence.tokens), token_offsets(sentence.tokens)
    entities = []
    for e in judged:
        a, b = spans[e.start][0], spans[e.end - 1][1]
        entities.append({"char_start": a, "char_end": b, "label": e.label, "text": text[a:b], "score": e.score,
                         "status": e.status})
    return {"text": text, "entities": entities, "file": sentence.path, "line": sentence.line}


class Thresholds:
    """``--min-score`` (and ``--review``) for one run: :meth:`apply` to each file's tagged sentences,
    then :meth:`commit` (or :meth:`abort`) once. ``dropped`` counts the entities turned into ``O``."""

    def __init__(self, min_score: float, review: str | None = None, keep_lines: bool = False) -> None:
        self.min_score = min_score
        self.review = AtomicOutput(review) if review else None
        self.lines: list[str] | None = [] if keep_lines else None  # review lines held (a Ray worker's, for the driver)
        self.dropped = 0

    def apply(self, sentences: Iterable[Sentence]) -> Iterator[Sentence]:
        for sent in sentences:
            if sent.tokens and sent.pred and sent.scores is not None and sent.error is None:
                tags, scores, judged = apply_min_score(sent.pred, sent.scores, self.min_score)
                dropped = sum(e.status == "dropped" for e in judged)
                if (self.review is not None or self.lines is not None) and any(e.status != "kept" for e in judged):
                    self.add(json.dumps(review_row(sent, judged), ensure_ascii=False) + "\n")
                sent.pred, sent.scores = tags, scores
                self.dropped += dropped
            yield sent

    def add(self, line: str) -> None:
        """One review line: into the file, or held."""
        if self.review is not None:
            self.review.write(line)
        elif self.lines is not None:
            self.lines.append(line)

    def commit(self) -> None:
        if self.review is not None:
            self.review.commit()

    def abort(self) -> None:
        if self.review is not None:
            self.review.abort()
