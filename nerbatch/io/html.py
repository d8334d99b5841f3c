"""HTML: entities rendered inline and coloured per type, like displaCy's entity view; an entity's
score shows when the pointer rests on it."""

from __future__ import annotations

import html
import re

from ..core.calibration import entity_scores
from ..core.record import RecordParts, Sentence
from .base import Writer

_COLOURS = {
    "PER": "#aa9cfc",
    "ORG": "#7aecec",
    "LOC": "#ff9561",
    "GPE": "#feca74",
    "MISC": "#e4e7d2",
    "DATE": "#bfe1d9",
}
_PALETTE = ["#c887fb", "#9cc9cc", "#ffeb80", "#bfeeb7", "#e4e7d2", "#f0d0ff", "#fc8d8d"]

_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nerbatch</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; line-height: 2.5; max-width: 60em; margin: 2em auto; }
mark.entity { padding: 0.25em 0.35em; margin: 0 0.25em; border-radius: 0.35em; line-height: 1; }
mark.entity span { font-size: 0.8em; font-weight: bold; line-height: 1; border-radius: 0.35em; vertical-align: middle; margin-left: 0.5rem; }
section.doc { border-bottom: 1px solid #ddd; padding-bottom: 1em; }
</style></head><body>
"""


def colour(label: str) -> str:
    if label in _COLOURS:
        return _COLOURS[label]
    return _PALETTE[sum(map(ord, label)) % len(_PALETTE)]


_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")


def _mark(label: str, text: str, score: float | None) -> str:
    """One entity; its score (:func:`nerbatch.core.calibration.entity_scores`) shows on hover."""
    title = "" if score is None else f' title="score {score}"'
    return (
        f'<mark class="entity" style="background: {colour(label)}"{title}>{html.escape(text)}'
        f"<span>{html.escape(label)}</span></mark>"
    )


def _plain(text: str) -> str:
    """Text between entities: escaped, blank lines (paragraph breaks) as new paragraphs."""
    return "</p>\n<p>".join(html.escape(piece) for piece in _PARAGRAPH_BREAK.split(text))


def render_text(sentence: Sentence) -> str:
    """The sentence's original text (from its first token to its last) with the entities marked."""
    text, spans = sentence.text or "", sentence.spans or []
    pos = spans[0][0]
    pieces: list[str] = []
    for label, start, end, score in entity_scores(sentence.pred or [], sentence.scores):
        cs, ce = spans[start][0], spans[end - 1][1]
        pieces.append(_plain(text[pos:cs]))
        pieces.append(_mark(label, text[cs:ce], score))
        pos = ce
    pieces.append(_plain(text[pos : spans[-1][1]]))
    return "<p>" + "".join(pieces) + "</p>\n"


def render_sentence(sentence: Sentence) -> str:
    """One ``<p>`` with each predicted entity as a coloured ``<mark>``: the original text when the
    sentence has it (raw-text input), else the tokens joined by spaces."""
    if sentence.text is not None and sentence.spans and len(sentence.spans) == len(sentence.tokens):
        return render_text(sentence)
    tokens = sentence.tokens
    pieces: list[str] = []
    pos = 0
    for label, start, end, score in entity_scores(sentence.pred or [], sentence.scores):
        pieces.extend(html.escape(t) for t in tokens[pos:start])
        pieces.append(_mark(label, " ".join(tokens[start:end]), score))
        pos = end
    pieces.extend(html.escape(t) for t in tokens[pos:])
    return "<p>" + " ".join(pieces) + "</p>\n"


class HtmlWriter(Writer):
    def __init__(self, path: str, **kw) -> None:
        self._doc: object = object()
        self._open = False
        self.parts = RecordParts()  # the sentences of one raw text, rendered as one text
        super().__init__(path, **kw)
        if not self.resumed:
            self.out.write(_HEAD)

    def state(self) -> dict:
        return {"doc": self._doc if self._open else None, "open": self._open, "parts": self.parts.state()}

    def restore(self, state: dict) -> None:
        self.parts.restore(state.get("parts"))
        self._open = state.get("open", False)
        self._doc = state.get("doc") if self._open else object()

    def write(self, sentence: Sentence) -> None:
        if not sentence.tokens:
            return
        joined = self.parts.add(sentence)
        if joined is None:
            return
        sentence = joined
        if sentence.doc_id != self._doc:
            if self._open:
                self.out.write("</section>\n")
            self.out.write('<section class="doc">\n')
            self._doc, self._open = sentence.doc_id, True
        self.out.write(render_sentence(sentence))

    def finish(self) -> None:
        if self._open:
            self.out.write("</section>\n")
        self.out.write("</body></html>\n")
