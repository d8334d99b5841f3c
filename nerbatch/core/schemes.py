"""Tag schemes, all in one room: what a tag is, IOB1 -> IOB2, chunks under conlleval's rules,
strict IOB2 entities (seqeval), and the transitions a decoder may take between labels.

Every stage that reads, writes, decodes or scores tags takes its rules from here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import numpy as np


__all__ = [
    "is_tag", "iob1_to_iob2", "split_tag", "conll_chunks", "count_chunks", "strict_entities", "allowed_transitions",
    "is_well_formed", "as_tags", "scheme_of", "OUTSIDE", "start_of_chunk", "end_of_chunk",
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


class _ChunkSteps(dict):
    """What conlleval does at a tag after a tag, per pair of raw tags, remembered: ``(starts, ends, type)``,
    conlleval's ``startOfChunk``/``endOfChunk`` and the tag's type. Tags come from a label set, so the pairs
    are few; working them out once per pair instead of once per word makes the chunk loop of a writer or a
    scorer about three times faster."""

    def __missing__(self, pair: tuple[str, str]) -> tuple[bool, bool, str]:
        if len(self) > 4096:  # bounded anyway
            self.clear()
        (prev_tag, prev_type), (tag, type_) = split_tag(pair[0]), split_tag(pair[1])
        value = (start_of_chunk(prev_tag, tag, prev_type, type_), end_of_chunk(prev_tag, tag, prev_type, type_), type_)
        self[pair] = value
        return value


_CHUNK_STEPS = _ChunkSteps()


class _ChunkStarts(dict):
    """Whether conlleval's ``startOfChunk`` fires at a tag after a tag, per pair of raw tags, remembered (as 0/1)."""

    def __missing__(self, pair: tuple[str, str]) -> int:
        value = int(_CHUNK_STEPS[pair][0])
        if len(self) <= 4096:  # bounded anyway
            self[pair] = value
        return value


_CHUNK_STARTS = _ChunkStarts()


def count_chunks(tags: Sequence[str]) -> int:
    """``len(conll_chunks(tags))``, without building the chunks: each chunk begins where conlleval's
    ``startOfChunk`` fires (the run's entity count, once per sentence). A sentence without entity
    tags costs one C call; else the pairs are looked up in C calls (measured 2x faster than the chunk loop)."""
    n = len(tags)
    if not n or tags.count(OUTSIDE) == n:
        return 0
    return sum(map(_CHUNK_STARTS.__getitem__, zip([OUTSIDE, *tags[:-1]], tags)))


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
    steps = _CHUNK_STEPS
    prev = OUTSIDE  # conlleval starts as after an O
    open_type: str | None = None
    open_start = 0
    for i, raw in enumerate(tags):
        starts, ends, type_ = steps[prev, raw]
        if open_type is not None and (starts or ends):
            chunks.append((open_type, open_start, i))
            open_type = None
        if starts:
            open_type, open_start = type_, i
        prev = raw
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


def as_tags(labels: Sequence[str]) -> list[str]:
    """The labels as NER tags: ``O`` and ``B-``/``I-``/``E-``/``S-`` tags as they are, a plain label
    (``LOC``) as the IO tag ``I-LOC``."""
    return [lab if is_tag(lab) else f"I-{lab}" for lab in labels]


def scheme_of(tags: Sequence[str]) -> str:
    """``"iobes"`` when there are ``E-``/``S-`` tags, ``"iob1"`` when some ``I-X`` has no ``B-X``
    (an ``I-X`` then starts an entity), else ``"iob2"``."""
    if any(t[:2] in ("E-", "S-") for t in tags):
        return "iobes"
    begins = {t[2:] for t in tags if t.startswith("B-")}
    if any(t.startswith("I-") and t[2:] not in begins for t in tags):
        return "iob1"
    return "iob2"


def allowed_transitions(labels: Sequence[str]) -> tuple["np.ndarray", "np.ndarray", "np.ndarray"]:
    """``(allowed[prev, next], may_start[label], may_end[label])`` under the scheme of ``labels``
    (:func:`scheme_of` of :func:`as_tags`). ``O`` and any label outside an entity's inside may
    follow and precede anything."""
    import numpy as np

    tags = as_tags(labels)
    scheme = scheme_of(tags)
    n = len(tags)
    allowed = np.ones((n, n), dtype=bool)
    start = np.ones(n, dtype=bool)
    end = np.ones(n, dtype=bool)
    if scheme == "iob1":
        return allowed, start, end
    continues = ("I-", "E-") if scheme == "iobes" else ("I-",)  # tags that continue an entity
    for j, tag in enumerate(tags):
        if tag[:2] in continues:
            start[j] = False
            allowed[:, j] &= [prev in (f"B-{tag[2:]}", f"I-{tag[2:]}") for prev in tags]
        if scheme == "iobes" and tag[:2] in ("B-", "I-"):  # must be continued
            end[j] = False
            allowed[j, :] &= [nxt in (f"I-{tag[2:]}", f"E-{tag[2:]}") for nxt in tags]
    return allowed, start, end


def is_well_formed(ids: Sequence[int], allowed: "np.ndarray", start: "np.ndarray", end: "np.ndarray | None" = None) -> bool:
    if not len(ids):
        return True
    if not start[ids[0]] or (end is not None and not end[ids[-1]]):
        return False
    return all(allowed[a, b] for a, b in zip(ids, ids[1:]))
