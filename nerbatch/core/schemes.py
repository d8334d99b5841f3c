"""Tag schemes, all in one room: what a tag is, IOB1 -> IOB2, chunks under conlleval's rules,
strict IOB2 entities (seqeval), and the transitions a decoder may take between labels.

Every stage that reads, writes, decodes or scores tags takes its rules from here.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

__all__ = [
    "is_tag", "iob1_to_iob2", "split_tag", "conll_chunks", "strict_entities", "allowed_transitions",
    "is_well_formed", "OUTSIDE", "start_of_chunk", "end_of_chunk",
]

OUTSIDE = "O"
_TAG_RE = re.compile(r"^(?:O|[BIES]-\S+)$")


def is_tag(tag: str) -> bool:
    """True for ``O`` and ``B-X``/``I-X``/``E-X``/``S-X`` shaped tags."""
    return bool(_TAG_RE.match(tag))


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """Convert IOB1 (``B-`` only between adjacent same-type entities) to IOB2.

    Idempotent on IOB2 input, and it repairs an ``I-X`` that follows ``O`` or another type.
    """
    out: list[str] = []
    prev = "O"
    for tag in tags:
        if tag.startswith("I-"):
            typ = tag[2:]
            if prev == "O" or prev[2:] != typ:
                tag = "B-" + typ
        out.append(tag)
        prev = tag
    return out


def split_tag(tag: str) -> tuple[str, str]:
    """Split a tag into (chunk tag, type) exactly like conlleval.

    conlleval matches ``/^([^-]*)-(.*)$/`` (prefix up to the first ``-``, the
    type is everything after it, so types may contain hyphens); a tag without
    ``-`` is all prefix with the empty type.  Then ``$type ? $type : ""`` turns
    the type ``"0"`` into ``""``.
    """
    prefix, sep, type_ = tag.partition("-")
    if not sep:
        return tag, ""
    if type_ == "0":  # Perl truthiness: "0" is false
        type_ = ""
    return prefix, type_


def end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval ``endOfChunk``: did a chunk end between the previous and current word?"""
    end = False
    if prev_tag == "B" and tag in ("B", "O"):
        end = True
    if prev_tag == "I" and tag in ("B", "O"):
        end = True
    if prev_tag == "E" and tag in ("E", "I", "O"):
        end = True
    if prev_tag != "O" and prev_tag != "." and prev_type != type_:
        end = True
    # corrected 1998-12-22: these chunks are assumed to have length 1
    if prev_tag in ("]", "["):
        end = True
    return end


def start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval ``startOfChunk``: did a chunk start between the previous and current word?"""
    start = False
    if tag == "B" and prev_tag in ("B", "I", "O"):
        start = True
    if tag == "I" and prev_tag in ("O", "E"):
        start = True
    if tag == "E" and prev_tag in ("E", "O"):
        start = True
    if tag != "O" and tag != "." and prev_type != type_:
        start = True
    # corrected 1998-12-22: these chunks are assumed to have length 1
    if tag in ("[", "]"):
        start = True
    return start


def conll_chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks of one sentence under conlleval's rules, as ``(type, start, end_exclusive)``.

    A chunk starts where conlleval's ``startOfChunk`` fires and runs until the
    next position where ``endOfChunk`` or ``startOfChunk`` fires, or to the end of
    the sentence.  The type is the one of the chunk's first tag (it may be ``""``
    for tags without a type, such as ``B`` or ``PER``).

    >>> conll_chunks(["I-PER", "I-PER", "O", "I-LOC", "B-LOC"])
    [('PER', 0, 2), ('LOC', 3, 4), ('LOC', 4, 5)]
    """
    chunks: list[tuple[str, int, int]] = []
    prev_tag, prev_type = OUTSIDE, ""
    open_type: str | None = None
    open_start = 0
    for i, raw in enumerate(tags):
        tag, type_ = split_tag(raw)
        starts = start_of_chunk(prev_tag, tag, prev_type, type_)
        if open_type is not None and (starts or end_of_chunk(prev_tag, tag, prev_type, type_)):
            chunks.append((open_type, open_start, i))
            open_type = None
        if starts:
            open_type, open_start = type_, i
        prev_tag, prev_type = tag, type_
    if open_type is not None:
        chunks.append((open_type, open_start, len(tags)))
    return chunks


def strict_entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """IOB2 entities of one sentence as seqeval's strict mode sees them."""
    from seqeval.scheme import IOB2, Entities

    try:
        entities = Entities([list(tags)], IOB2).entities[0]
    except (KeyError, IndexError) as exc:  # unknown prefix letter, empty tag
        bad = next((t for t in tags if not t or t[0] not in "IOBESUL"), None)
        raise ValueError(f"invalid tag for strict IOB2 scoring: {bad!r}") from exc
    return {(e.tag, e.start, e.end) for e in entities}


def allowed_transitions(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(allowed[prev, next], may_start[label])`` for IOB2 tags: ``I-X`` follows ``B-X`` or ``I-X`` only.

    Labels that are not ``B-``/``I-`` tags (``O``, anything else) may follow and precede anything.
    """
    n = len(labels)
    allowed = np.ones((n, n), dtype=bool)
    start = np.ones(n, dtype=bool)
    for j, lab in enumerate(labels):
        if lab.startswith("I-"):
            kind = lab[2:]
            start[j] = False
            for i, prev in enumerate(labels):
                allowed[i, j] = prev in (f"B-{kind}", f"I-{kind}")
    return allowed, start


def is_well_formed(ids: Sequence[int], allowed: np.ndarray, start: np.ndarray) -> bool:
    if not len(ids):
        return True
    if not start[ids[0]]:
        return False
    return all(allowed[a, b] for a, b in zip(ids, ids[1:]))
