"""Gold entities given as character spans of raw text, turned into IOB2 word tags.

Span-annotated records (what doccano, Label Studio, Prodigy and spaCy write) carry a ``text`` and
its entities as character offsets; nerbatch tokenises the text (:mod:`nerbatch.core.tokenize`, the same
tokeniser and layout as tagging) and gives each word ``B-X``/``I-X``/``O``. Accepted shapes:

- ``"entities": [[start, end, label], ...]`` (spaCy), or a list of objects under ``entities``,
  ``spans`` or ``label``: ``{"start", "end", "label"}`` (Prodigy), ``{"start_offset",
  "end_offset", "label"}`` (doccano), ``{"start", "end", "labels": [label]}`` (Label Studio's
  JSON-MIN export), ``{"char_start", "char_end", "label"}`` (nerbatch's own ``entities``);
- a Label Studio task, one a line: ``{"data": {"text": ...}, "annotations": [{"result":
  [{"type": "labels", "value": {"start", "end", "labels": [label]}}, ...]}]}`` (cancelled
  annotations are left out; with several annotations the one marked ``ground_truth`` is taken).

Offsets are Python string indexes (code points), ``end`` exclusive. Rules, each an error naming
the span (:class:`SpanError`; the readers add file and line): a span must start at the start of
a token and end at the end of one (a span inside a token cannot become word tags); spans may not
overlap (identical duplicates count once); a label is an entity type: a non-empty string without
whitespace, with a letter or digit, neither ``O`` nor a tag (``B-LOC``).
Whitespace at either end of a span is trimmed (annotation tools often take in the space after a
name); a span of only whitespace is an error. A span that crosses a sentence break found by the
splitter joins the two sentences (the annotation is the better witness). Records of a nerbatch
output (with ``pred_tags``) hold predictions in ``entities``: never read as gold.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Sequence

from .schemes import is_tag

Token = tuple[str, int, int]

SPAN_KEYS = ("entities", "spans", "label")  # where span lists are looked for, in this order
_START_KEYS = ("char_start", "start", "start_offset")
_END_KEYS = ("char_end", "end", "end_offset")
_HINT = "offsets are 0-based character indexes into the text, end exclusive"


class SpanError(ValueError):
    """A span that cannot become word tags; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int
    label: str
    given: tuple[int, int] | None = field(default=None, compare=False)  # the offsets as written, before trimming

    def show(self, text: str | None = None) -> str:
        """The span as the input wrote it (``[start, end, 'LABEL'] 'covered text'``), for messages."""
        start, end = self.given or (self.start, self.end)
        shown = f"[{start}, {end}, {self.label!r}]"
        return shown + (f" {text[start:end]!r}" if text is not None else "")


@dataclass(frozen=True)
class Gold:
    """What a record says about its gold entities: the text, the spans, and where they were found."""

    text: str
    spans: list[Span]
    key: str  # "entities", "spans", "label" or "annotations"


def _spans_list(obj: dict) -> tuple[str, list] | None:
    for key in SPAN_KEYS:
        if key not in obj or obj[key] is None:
            continue
        if key == "entities" and obj.get("pred_tags") is not None:
            continue  # a nerbatch output: its entities are the predictions
        value = obj[key]
        if key == "label" and (
            not isinstance(value, list) or not all(isinstance(v, (list, dict)) for v in value)
        ):
            continue  # a classification label ("label": "positive" / ["positive"]), not spans
        if not isinstance(value, list):
            raise SpanError(f"{key!r} must be a list of spans, not {type(value).__name__}", hint=_HINT)
        return key, value
    return None


def _label_studio(obj: dict, text_key: str) -> tuple[str, list] | None:
    data, annotations = obj.get("data"), obj.get("annotations")
    if not isinstance(data, dict) or not isinstance(data.get(text_key), str) or not isinstance(annotations, list):
        return None
    kept = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if len(kept) > 1:
        truth = [a for a in kept if a.get("ground_truth")]
        if len(truth) != 1:
            raise SpanError(
                f"the Label Studio task has {len(kept)} annotations; nerbatch takes one as gold",
                hint="mark one as ground truth in Label Studio, or export one annotation per task",
            )
        kept = truth
    if not kept:
        raise SpanError("the Label Studio task has no annotation (all cancelled, or none yet)",
                        hint="annotate it, or leave it out of the gold data")
    result = kept[0].get("result") or []
    if not isinstance(result, list):
        raise SpanError("the annotation's 'result' must be a list")
    items = [
        r for r in result
        if isinstance(r, dict) and isinstance(r.get("value"), dict)
        and (r.get("type") == "labels" or ("labels" in r["value"] and "start" in r["value"]))
    ]  # other result types (relations, choices, text areas) are not entity spans
    return data[text_key], items


def _int(item: dict, keys: Sequence[str], what: str, shown: Any) -> int:
    for key in keys:
        if key in item:
            value = item[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpanError(f"span {shown}: {key!r} must be an integer, not {value!r}", hint=_HINT)
            return value
    raise SpanError(f"span {shown}: no {what} offset ({' / '.join(keys)})", hint=_HINT)


def _one_span(item: Any) -> Span:
    if isinstance(item, (list, tuple)):
        if len(item) != 3:
            raise SpanError(f"span {item!r}: expected [start, end, label]", hint=_HINT)
        start, end, label = item
        for value in (start, end):
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpanError(f"span {item!r}: start and end must be integers", hint=_HINT)
    elif isinstance(item, dict):
        shown = item
        if isinstance(item.get("value"), dict):  # a Label Studio result item
            item = item["value"]
        start = _int(item, _START_KEYS, "start", shown)
        end = _int(item, _END_KEYS, "end", shown)
        label = item.get("label")
        if label is None and "labels" in item:
            labels = item["labels"]
            if not isinstance(labels, list) or len(labels) != 1:
                raise SpanError(f"span {shown}: 'labels' must hold exactly one label, found {labels!r}",
                                hint="an entity has one type in IOB2 tags")
            label = labels[0]
    else:
        raise SpanError(f"span {item!r}: expected [start, end, label] or an object with start, end and label", hint=_HINT)
    if not isinstance(label, str) or not label or any(c.isspace() for c in label):
        raise SpanError(f"span [{start}, {end}, {label!r}]: the label must be a non-empty string without whitespace")
    problem = _not_a_type(label)
    if problem:
        raise SpanError(f"span [{start}, {end}, {label!r}]: {problem}",
                        hint="a span's label is its entity type, such as 'LOC' or 'PER'; nerbatch adds the B-/I- prefixes")
    return Span(start, end, label)


def _not_a_type(label: str) -> str | None:
    """Why ``label`` cannot be an entity type (it would become ``B-O``, ``B-B-LOC``, ``B--``), or None."""
    if label == "O":
        return "'O' marks words outside entities; it is not an entity type"
    if is_tag(label):
        return f"the label is already a tag; give its entity type ({label[2:]!r})"
    if not any(c.isalnum() for c in label):
        return "the label has no letter or digit; it is not an entity type"
    return None


def gold_spans(obj: dict, text_key: str = "text") -> Gold | None:
    """The span annotation of a record, checked against its text; None when it has none.

    Raises :class:`SpanError` for a malformed span, one outside the text, one of only whitespace,
    overlapping spans, or a Prodigy record whose answer is not ``accept``.
    """
    text = obj.get(text_key)
    if isinstance(text, str):
        found = _spans_list(obj)
    else:
        found = _label_studio(obj, text_key)
        if found is not None:
            text = found[0]
            found = ("annotations", found[1])
    if found is None:
        return None
    key, items = found
    answer = obj.get("answer")
    if isinstance(answer, str) and answer != "accept":
        raise SpanError(f"the record's answer is {answer!r} (Prodigy): its spans are not gold",
                        hint="keep only accepted records, e.g. jq -c 'select(.answer == \"accept\")'")
    spans = []
    for item in items:
        span = _one_span(item)
        if not 0 <= span.start < span.end <= len(text):
            raise SpanError(
                f"span {span.show()} is outside the text ({len(text)} characters) or empty", hint=_HINT
            )
        start, end = span.start, span.end
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start == end:
            raise SpanError(f"span {span.show(text)} covers only whitespace")
        spans.append(Span(start, end, span.label, (span.start, span.end)))
    spans = sorted(set(spans))
    for a, b in zip(spans, spans[1:]):
        if b.start < a.end:
            raise SpanError(
                f"spans {a.show(text)} and {b.show(text)} overlap",
                hint="IOB2 word tags hold one entity per word: remove nested or overlapping spans",
            )
    return Gold(text, spans, key)


def has_gold_spans(obj: Any, text_key: str = "text") -> bool:
    """Does this record carry a span annotation (whether or not it is valid)?"""
    if not isinstance(obj, dict):
        return False
    try:
        return gold_spans(obj, text_key) is not None
    except SpanError:
        return True


def align(text: str, sentences: list[list[Token]], spans: Sequence[Span]) -> list[tuple[list[Token], list[str]]]:
    """Word tags for the ``sentences`` of ``text`` (tokens with spans into it) from gold ``spans``.

    Returns ``(tokens, tags)`` per sentence; sentences that a span crosses are joined. Raises
    :class:`SpanError` for a span that does not start at a token's start and end at a token's end.
    """
    flat = [tok for sent in sentences for tok in sent]
    sent_of = [k for k, sent in enumerate(sentences) for _ in sent]
    starts = [a for _, a, _ in flat]
    ends = [b for _, _, b in flat]
    first_at = {a: i for i, a in enumerate(starts)}
    last_at = {b: i for i, b in enumerate(ends)}
    tags = ["O"] * len(flat)
    joined: set[int] = set()  # k: sentence k and k + 1 are one
    for span in spans:
        i, j = first_at.get(span.start), last_at.get(span.end)
        if i is None or j is None or j < i:
            raise SpanError(f"span {span.show(text)} does not fall on token boundaries: {_near(text, flat, starts, span)}",
                            hint="fix the offsets, or check that the text is the one the spans were made on")
        tags[i] = f"B-{span.label}"
        for k in range(i + 1, j + 1):
            tags[k] = f"I-{span.label}"
        joined.update(range(sent_of[i], sent_of[j]))
    out: list[tuple[list[Token], list[str]]] = []
    pos = 0
    for k, sent in enumerate(sentences):
        part = (sent, tags[pos : pos + len(sent)])
        pos += len(sent)
        if out and k - 1 in joined:
            out[-1] = (out[-1][0] + part[0], out[-1][1] + part[1])
        else:
            out.append(part)
    return out


def _near(text: str, flat: list[Token], starts: list[int], span: Span) -> str:
    """The tokens the span cuts, in words."""
    if not flat:
        return "the text has no tokens"
    lo = max(0, bisect.bisect_right(starts, span.start) - 1)
    hi = max(lo, bisect.bisect_left(starts, span.end))
    shown = ", ".join(f"{tok!r} ({a}-{b})" for tok, a, b in flat[lo : min(hi, lo + 6)])
    return f"the tokens there are {shown}"
