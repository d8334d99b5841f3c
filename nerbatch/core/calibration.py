"""Entity scores: what they are, how a model's map calibrates them, how they are judged and thresholded.

**Entity score.** Every output that carries entity scores (JSONL ``entities[].score``, Parquet/HF
``pred_scores``, the HTML marks, CoNLL ``--scores``, :meth:`nerbatch.Tagger.tag` results) gives an entity
the mean of its words' scores (:func:`entity_scores`). A word's score is the probability of the tag it
got. For a model with a calibration map (``nerbatch.json``'s ``calibration``, fitted on the dev set
by ``nerbatch train`` or ``nerbatch calibrate``) the tagger then gives every word of an entity the
entity's *calibrated* score (:func:`calibrate_scores`): the estimated probability that the predicted
span, with its type, is an entity of the gold standard (type, first and last word all equal). So the
mean over an entity's words is its calibrated score in every format. The map is monotone, so
calibrated and uncalibrated scores rank entities the same way.

**The map** (:class:`Calibration`, :func:`fit`) is isotonic regression (pool-adjacent-violators) from the
uncalibrated entity score (the mean, rounded to 4 decimals as outputs show it) to the fraction of
entities that are correct, interpolated linearly between its steps. Isotonic rather than a temperature
or Platt's sigmoid: fine-tuned encoders put most entities in a narrow band just below 1 and the errors
in a long tail, a shape one or two parameters do not follow, and a dev set has thousands of entities,
enough for a non-parametric fit.

**Judging.** :func:`entity_outcomes` pairs each predicted entity's score with whether it is correct
(an exact match of type, start and end with a gold entity); :func:`reliability` and
:func:`expected_calibration_error` measure how well scores match the fraction correct.

**Thresholds.** :func:`apply_min_score` turns entities below a score into ``O`` and says which entities
were dropped, which are borderline (at most :data:`REVIEW_MARGIN` above the threshold) and which kept.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Sequence

from .schemes import OUTSIDE, conll_chunks

__all__ = [
    "Calibration", "REVIEW_MARGIN", "span_score", "entity_scores", "calibrate_scores", "fit", "entity_outcomes", "reliability",
    "expected_calibration_error", "apply_min_score", "Judged",
]

REVIEW_MARGIN = 0.1  # an entity kept by --min-score S with a score below S + this is "borderline"
DIGITS = 4  # scores are written with 4 decimals


def span_score(scores: Sequence[float], start: int, end: int) -> float:
    """The score of the entity over words ``start:end``: the mean of its words' scores, rounded to 4 decimals
    (the ``score`` of the ``entities`` that ``tag`` writes)."""
    return round(sum(scores[start:end]) / (end - start), DIGITS)


def entity_scores(pred: Sequence[str], scores: Sequence[float] | None) -> list[tuple[str, int, int, float | None]]:
    """The predicted entities of one sentence (conlleval chunks) as ``(type, start, end, score)``, end
    exclusive, with :func:`span_score` (None without scores)."""
    return [(label, a, b, None if scores is None else span_score(scores, a, b)) for label, a, b in conll_chunks(pred)]


@dataclass(frozen=True)
class Calibration:
    """A monotone map from an uncalibrated entity score to the probability that the entity is correct:
    linear between the points ``(raw[i], calibrated[i])``, flat beyond the first and last. ``info``
    says how it was fitted (method, dev file, entities, calibration errors); it does not change the map."""

    raw: tuple[float, ...]
    calibrated: tuple[float, ...]
    info: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        raw, cal = self.raw, self.calibrated
        if not raw or len(raw) != len(cal):
            raise ValueError("'raw' and 'calibrated' must be lists of the same, non-zero length")
        for value in (*raw, *cal):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{value!r} is not a number from 0 to 1")
        if any(b < a for a, b in zip(raw, raw[1:])) or any(b < a for a, b in zip(cal, cal[1:])):
            raise ValueError("'raw' and 'calibrated' must not decrease (the map is monotone)")

    def __call__(self, score: float) -> float:
        raw, cal = self.raw, self.calibrated
        i = bisect.bisect_right(raw, score)
        if i == 0:
            return cal[0]
        if i == len(raw):
            return cal[-1]
        x0, x1, y0, y1 = raw[i - 1], raw[i], cal[i - 1], cal[i]
        return y0 if x1 == x0 else y0 + (y1 - y0) * (score - x0) / (x1 - x0)

    def to_json(self) -> dict:
        """What ``nerbatch.json`` holds under ``calibration``."""
        return {**self.info, "raw": list(self.raw), "calibrated": list(self.calibrated)}

    @classmethod
    def from_json(cls, value: object) -> Calibration:
        """The map ``nerbatch.json`` holds; ValueError (saying what is wrong) for anything else."""
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, found {type(value).__name__}")
        raw, cal = value.get("raw"), value.get("calibrated")
        if not isinstance(raw, list) or not isinstance(cal, list):
            raise ValueError("'raw' and 'calibrated' must be lists of numbers")
        info = {k: v for k, v in value.items() if k not in ("raw", "calibrated")}
        return cls(tuple(raw), tuple(cal), info)


def calibrate_scores(pred: Sequence[str], scores: Sequence[float], calibration: Calibration) -> list[float]:
    """The word scores of one sentence with every word of an entity given the entity's calibrated
    score (the map of its mean score as :func:`entity_scores` gives it, rounded to 4 decimals); words
    outside entities keep theirs."""
    out = list(scores)
    for _label, start, end, score in entity_scores(pred, scores):
        out[start:end] = [round(calibration(score), DIGITS)] * (end - start)
    return out


def fit(scores: Sequence[float], correct: Sequence[bool], info: dict | None = None) -> Calibration:
    """Isotonic regression of ``correct`` (0/1) on ``scores`` by pool-adjacent-violators: the
    non-decreasing step function closest to the fraction correct in least squares. Each step
    becomes two points (its lowest and highest score), so the map is flat on a step and linear
    between steps. ValueError without any score."""
    if not scores:
        raise ValueError("no entities to fit a calibration on")
    counts: dict[float, list[float]] = {}
    for s, c in zip(scores, correct, strict=True):
        entry = counts.setdefault(float(s), [0.0, 0.0])
        entry[0] += 1
        entry[1] += bool(c)
    blocks: list[list[float]] = []  # [weight, correct, lowest score, highest score]
    for s in sorted(counts):
        weight, hits = counts[s]
        blocks.append([weight, hits, s, s])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][0] >= blocks[-1][1] / blocks[-1][0]:
            w, h, _lo, hi = blocks.pop()
            blocks[-1][0] += w
            blocks[-1][1] += h
            blocks[-1][3] = hi
    raw: list[float] = []
    cal: list[float] = []
    for weight, hits, lo, hi in blocks:
        value = round(hits / weight, 6)
        raw.extend([lo] if lo == hi else [lo, hi])
        cal.extend([value] if lo == hi else [value, value])
    return Calibration(tuple(raw), tuple(cal), dict(info or {}))


def entity_outcomes(gold: Sequence[str], pred: Sequence[str], scores: Sequence[float]) -> list[tuple[float, bool]]:
    """Each predicted entity of one sentence as ``(score, correct)``: correct when a gold entity has
    the same type, first and last word (conlleval chunks on both sides, so IOB1 and IOB2 gold both work)."""
    truth = set(conll_chunks(gold))
    return [(score, (label, start, end) in truth) for label, start, end, score in entity_scores(pred, scores)]


def _bin(score: float, bins: int) -> int:
    return min(int(score * bins), bins - 1)


def reliability(scores: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict]:
    """The reliability table: ``bins`` equal-width score bins over [0, 1] (the last one closed), each
    non-empty one with its ``low``/``high`` edges, ``entities``, ``mean_score`` and ``accuracy``
    (the fraction correct). A calibrated score has ``accuracy`` close to ``mean_score`` in every bin."""
    sums = [[0, 0.0, 0] for _ in range(bins)]
    for s, c in zip(scores, correct, strict=True):
        row = sums[_bin(s, bins)]
        row[0] += 1
        row[1] += s
        row[2] += bool(c)
    return [
        {"low": k / bins, "high": (k + 1) / bins, "entities": n, "mean_score": total / n, "accuracy": hits / n}
        for k, (n, total, hits) in enumerate(sums) if n
    ]


def expected_calibration_error(scores: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """The gap between score and fraction correct, averaged over the :func:`reliability` bins weighted
    by their entities (0 is perfect; NaN without entities)."""
    table = reliability(scores, correct, bins)
    total = sum(row["entities"] for row in table)
    if not total:
        return math.nan
    return sum(row["entities"] * abs(row["accuracy"] - row["mean_score"]) for row in table) / total


@dataclass(frozen=True)
class Judged:
    """One predicted entity under ``--min-score``: ``status`` is ``dropped`` (score below the
    threshold: its words became ``O``), ``borderline`` (kept, less than :data:`REVIEW_MARGIN` above
    it) or ``kept``."""

    label: str
    start: int
    end: int
    score: float
    status: str


def apply_min_score(
    pred: Sequence[str], scores: Sequence[float], min_score: float, margin: float = REVIEW_MARGIN
) -> tuple[list[str], list[float], list[Judged]]:
    """Drop the entities of one sentence whose score is below ``min_score``.

    Returns the new tags and word scores and every entity :class:`Judged`. A dropped entity's words
    get ``O`` and the score 1 minus the entity's. The kept entities are exactly the ones the input
    had (conlleval chunks); a kept entity right after a dropped one that began with ``I-X`` begins
    with ``B-X`` (the same chunk), so no ``I-X`` follows an ``O`` that was an entity, and well-formed
    IOB2 and IOBES stay well-formed.
    """
    tags, new = list(pred), list(scores)
    judged = []
    for label, start, end, score in entity_scores(pred, scores):
        status = "dropped" if score < min_score else "borderline" if score < min_score + margin else "kept"
        if status == "dropped":
            tags[start:end] = [OUTSIDE] * (end - start)
            new[start:end] = [round(1.0 - score, DIGITS)] * (end - start)
        judged.append(Judged(label, start, end, score, status))
    for entity in judged:
        at, first = entity.start, tags[entity.start]
        after_dropped = at and tags[at - 1] == OUTSIDE != pred[at - 1]
        if entity.status != "dropped" and after_dropped and first.startswith("I-"):
            tags[at] = "B-" + first[2:]
    return tags, new, judged
