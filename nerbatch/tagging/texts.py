"""Tagging in memory, for notebooks and programs: strings or token lists in, entities out.

:meth:`nerbatch.Tagger.tag` takes raw texts (each cut into words and sentences as the model's training
text was, then tagged with its sentences as context of one another), :meth:`nerbatch.Tagger.tag_tokens`
takes sentences already split into words. Both return one :class:`Tagged` per input: its words, one
tag and score per word, and the entities with character offsets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..core.calibration import entity_scores
from ..core.record import Sentence, token_offsets

__all__ = ["Entity", "Tagged", "sentences_of_text", "sentences_of_tokens", "results"]


@dataclass(frozen=True)
class Entity:
    """One entity: its ``label`` (``PER``), its ``text`` as written, the character offsets ``start``/``end``
    (end exclusive) into the input text (for token input: into the words joined by single spaces), the
    words it covers (``first_word``, ``last_word`` exclusive, counted over the whole input) and ``score``
    (:func:`nerbatch.core.calibration.entity_scores`: the mean of its words' scores; for a model with a
    calibration map, the estimated probability that the entity is correct)."""

    label: str
    text: str
    start: int
    end: int
    first_word: int
    last_word: int
    score: float


@dataclass
class Tagged:
    """One input, tagged: ``words`` with their character ``spans`` in ``text``, a tag and a score per word,
    and the ``entities``. ``sentences`` gives the word index where each sentence starts."""

    text: str
    words: list[str]
    spans: list[tuple[int, int]]
    tags: list[str]
    scores: list[float]
    entities: list[Entity] = field(default_factory=list)
    sentences: list[int] = field(default_factory=list)


def sentences_of_text(text: str, index: int, layout: str, words: str) -> list[Sentence]:
    """The sentences of one raw text (one document: its sentences give each other context)."""
    from ..io.text import unit_sentences

    return unit_sentences(text, layout, words, doc_id=f"text-{index}", index=0, path="<text>", line=1)


def sentences_of_tokens(tokens: Sequence[str], index: int) -> list[Sentence]:
    """One sentence of words already split (standing alone: no document context)."""
    tokens = [str(t) for t in tokens]
    return [Sentence(tokens=tokens, doc_id=None, path="<tokens>", line=index + 1)]


def results(text: str, sentences: Sequence[Sentence]) -> Tagged:
    """The tagged sentences of one input, as one :class:`Tagged` (offsets into ``text``)."""
    out = Tagged(text=text, words=[], spans=[], tags=[], scores=[])
    for sent in sentences:
        base = len(out.words)
        out.sentences.append(base)
        spans = sent.spans if sent.spans is not None else token_offsets(sent.tokens)
        out.words.extend(sent.tokens)
        out.spans.extend(spans)
        out.tags.extend(sent.pred or [])
        out.scores.extend(sent.scores or [])
        for label, a, b, score in entity_scores(sent.pred or [], sent.scores or [0.0] * len(sent.tokens)):
            start, end = spans[a][0], spans[b - 1][1]
            out.entities.append(Entity(label, text[start:end], start, end, base + a, base + b, score))
    return out
