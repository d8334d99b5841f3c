"""Entity scores against correctness: expected calibration error, a reliability table, precision and recall at
each score threshold, and the lowest threshold that reaches a precision asked for.

Every predicted entity counts once, at its score (:func:`nerbatch.core.calibration.span_score`, from the scores the predictions carry:
the tagger's per-word scores, a ``pred_scores`` list (Parquet outputs) or ``entities[].score`` (JSONL outputs));
it is correct when a gold entity has the same type and span (seqeval's strict rule on IOB2 tags, IOB1 converted
first), whatever rules the rest of the report counts by. Recall is over every gold entity. Scores are counted in
steps of 0.0001 (what a JSONL output writes), so a corpus of any size fits in one fixed table.

The expected calibration error is ``sum over bins of (entities in bin / entities) * |accuracy - mean score|``
over :data:`BINS` equal-width bins of the score. Predictions without scores (CoNLL files) get no calibration:
the result says why in one line.
"""

from __future__ import annotations

import math
from typing import Callable

from ..core.calibration import span_score
from ..core.record import Sentence
from ..core.schemes import iob1_to_iob2, strict_entities

__all__ = ["Calibration", "format_calibration", "BINS", "THRESHOLDS"]

BINS = 10  # equal-width score bins of the reliability table and the calibration error
THRESHOLDS = tuple(k / 20 for k in range(20))  # the thresholds of the text table: 0.00, 0.05, ..., 0.95
STEPS = 10_000  # scores are counted in steps of 1 / STEPS
CURVE_STEPS = 1_000  # the precision/recall curve of the JSON and HTML reports: thresholds 0.000, 0.001, ..., 1.000

NO_SCORES = ("the predictions carry no entity scores (a CoNLL file has none: tag to JSONL or Parquet, "
             "or evaluate with --model)")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def span_scores(sent: Sentence, offset: int = 0) -> tuple[Callable[[int, int], float | None] | None, str | None]:
    """``(score of the predicted entity at words start:end, problem)`` for one sentence; ``(None, None)`` when it
    carries no scores. ``offset``: where the sentence starts in its record (a raw text cut into sentences)."""
    if sent.scores is not None:
        words = sent.scores
        return (lambda s, e: span_score(words, s, e)), None
    source = sent.source
    if not isinstance(source, dict):
        return None, None
    values = source.get("pred_scores")
    if values is not None:
        if not isinstance(values, list) or not all(_number(v) for v in values):
            return None, "'pred_scores' is not a list of numbers"
        if offset + len(sent.tokens) > len(values):
            return None, f"'pred_scores' holds {len(values)} scores for {offset + len(sent.tokens)} words"
        return (lambda s, e: span_score(values, offset + s, offset + e)), None
    items = source.get("entities")
    if isinstance(items, list) and any(isinstance(x, dict) and "score" in x for x in items):
        table = {
            (x["start"], x["end"]): x["score"] for x in items
            if isinstance(x, dict) and isinstance(x.get("start"), int) and isinstance(x.get("end"), int) and _number(x.get("score"))
        }
        return (lambda s, e: table.get((offset + s, offset + e))), None
    return None, None


class Calibration:
    """Counts predicted entities by score and correctness, sentence by sentence (:meth:`add`), for :meth:`result`.

    ``target_precision``: also find the lowest threshold whose precision reaches it."""

    def __init__(self, target_precision: float | None = None) -> None:
        self.target = target_precision
        self.found = [0] * (STEPS + 1)  # predicted entities at each score step
        self.correct = [0] * (STEPS + 1)
        self.gold = 0
        self.problem: str | None = None  # why there can be no calibration (the first problem met: nothing more is done)
        self.offset = 0

    def add(self, sent: Sentence) -> None:
        """One sentence with gold and predicted tags (checked by the caller) and maybe scores."""
        if sent.part == 0:
            self.offset = 0
        offset, self.offset = self.offset, self.offset + len(sent.tokens)
        if self.problem is not None or sent.tags is None:
            return
        where = f"{sent.path}:{sent.line}"
        try:
            gold = strict_entities(iob1_to_iob2(sent.tags))
            pred = strict_entities(iob1_to_iob2(sent.pred or []))
        except ValueError as exc:
            self.problem = f"{where}: {exc}; entity scores are matched on IOB1 or IOB2 tags"
            return
        self.gold += len(gold)
        if not pred:
            return
        score_of, problem = span_scores(sent, offset)
        if problem is not None:
            self.problem = f"{where}: {problem}"
            return
        if score_of is None:
            self.problem = NO_SCORES if not any(self.found) else f"{where}: this record carries no entity scores, earlier ones do"
            return
        for ent in sorted(pred, key=lambda e: (e[1], e[2])):
            score = score_of(ent[1], ent[2])
            if score is None:
                self.problem = f"{where}: the predicted {ent[0]} entity (start {ent[1]}, end {ent[2]}) carries no score"
                return
            if not (math.isfinite(score) and 0 <= score <= 1):
                self.problem = f"{where}: entity score {score!r} is not a probability (0 to 1)"
                return
            step = round(round(score, 4) * STEPS)  # the score JSONL writes, whether read back or not
            self.found[step] += 1
            self.correct[step] += ent in gold

    def why_not(self) -> str | None:
        """Why there is no calibration to report (None: there is)."""
        if self.problem is not None:
            return self.problem
        if not any(self.found):
            return "there are no predicted entities"
        return None

    def result(self) -> dict:
        """``{"omitted": why}``, or the numbers (fractions in 0..1; precision None where nothing is kept)."""
        why = self.why_not()
        if why is not None:
            return {"omitted": why}
        kept, right = [0] * (STEPS + 2), [0] * (STEPS + 2)  # entities (correct ones) at a score step or above
        for i in range(STEPS, -1, -1):
            kept[i], right[i] = kept[i + 1] + self.found[i], right[i + 1] + self.correct[i]
        total = kept[0]

        def point(t: float, i: int) -> dict:
            p = right[i] / kept[i] if kept[i] else None
            r = right[i] / self.gold if self.gold else 0.0
            f1 = 2 * p * r / (p + r) if p and r else 0.0
            return {"threshold": t, "kept": kept[i], "correct": right[i], "precision": p, "recall": r, "f1": f1}

        bins = []
        ece = 0.0
        for k in range(BINS):
            lo, hi = k * STEPS // BINS, (k + 1) * STEPS // BINS + (1 if k == BINS - 1 else 0)
            n = sum(self.found[lo:hi])
            ok = sum(self.correct[lo:hi])
            mean = sum(i * self.found[i] for i in range(lo, hi)) / STEPS / n if n else None
            acc = ok / n if n else None
            if n:
                ece += n / total * abs(acc - mean)
            bins.append({"low": k / BINS, "high": (k + 1) / BINS, "count": n, "correct": ok, "mean_score": mean, "accuracy": acc})
        curve, last = [], None
        for j in range(CURVE_STEPS + 1):
            i = j * (STEPS // CURVE_STEPS)
            if kept[i] != last:
                curve.append(point(j / CURVE_STEPS, i))
                last = kept[i]
        out = {
            "entities": total,
            "gold": self.gold,
            "correct": right[0],
            "ece": ece,
            "bins": bins,
            "thresholds": [point(t, round(t * STEPS)) for t in THRESHOLDS],
            "curve": curve,
        }
        if self.target is not None:
            out["target"] = self._target(kept, right, point)
        return out

    def _target(self, kept: list[int], right: list[int], point) -> dict:
        """The lowest threshold whose precision reaches the target: the threshold is the lowest score kept."""
        best = None
        for i in range(STEPS + 1):
            if not self.found[i]:
                continue  # thresholds between two scores keep what the next score keeps
            if right[i] >= self.target * kept[i] - 1e-9:
                return {"precision_asked": self.target, "reached": True, **point(i / STEPS, i)}
            if best is None or right[i] * kept[best] > right[best] * kept[i]:
                best = i
        return {"precision_asked": self.target, "reached": False, "best": point(best / STEPS, best) if best is not None else None}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def format_calibration(cal: dict) -> list[str]:
    """The text report's lines for a calibration result (one line when it was omitted)."""
    if "omitted" in cal:
        return ["", f"entity score calibration: omitted: {cal['omitted']}"]
    lines = [
        "",
        f"entity scores against correctness: {cal['entities']} predicted entities, {cal['gold']} gold, "
        f"{cal['correct']} correct (the same type and span as a gold entity)",
        f"expected calibration error: {cal['ece']:.4f} ({BINS} bins of width {1 / BINS:g})",
        "",
        f"{'score':<9}  {'entities':>8}  {'mean score':>10}  {'accuracy':>8}",
    ]
    for b in cal["bins"]:
        mean = "-" if b["mean_score"] is None else f"{b['mean_score']:.4f}"
        acc = "-" if b["accuracy"] is None else f"{b['accuracy']:.4f}"
        scores = f"{b['low']:.1f}-{b['high']:.1f}"
        lines.append(f"{scores:<9}  {b['count']:>8}  {mean:>10}  {acc:>8}")
    lines += ["", f"{'threshold':<9}  {'kept':>8}  {'precision':>9}  {'recall':>7}  {'f1':>7}"]
    for t in cal["thresholds"]:
        lines.append(f"{t['threshold']:<9.2f}  {t['kept']:>8}  {_pct(t['precision']):>9}  {_pct(t['recall']):>7}  {_pct(t['f1']):>7}")
    target = cal.get("target")
    if target is not None:
        asked = f"--target-precision {target['precision_asked']:g}"
        if target["reached"]:
            lines += ["", f"{asked}: threshold {target['threshold']:.4f} keeps {target['kept']} of {cal['entities']} "
                          f"entities: precision {_pct(target['precision'])}%, recall {_pct(target['recall'])}%"]
        else:
            best = target["best"]
            lines += ["", f"{asked}: no threshold reaches it; the highest precision is {_pct(best['precision'])}% "
                          f"(threshold {best['threshold']:.4f}, recall {_pct(best['recall'])}%)"]
    return lines
