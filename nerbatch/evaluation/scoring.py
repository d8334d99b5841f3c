"""Chunk (entity) scoring for NER output.

Two modes:

* default (``strict=False``): a faithful port of the CoNLL shared-task script
  ``conlleval`` (Perl, version 2004-01-26).  The numbers are the ones that
  ``perl conlleval.pl < file`` prints for a file with one ``word gold pred`` line
  per token and a blank line between sentences: same tag splitting, same
  ``startOfChunk``/``endOfChunk`` rules (IOB1 and IOB2, plus ``E-``, ``[`` and
  ``]`` chunk tags), same way of deciding that a chunk is correct, same token
  accuracy.  Quirks are kept on purpose, e.g. an ``I-X`` after ``O`` or after
  another type starts a chunk, a tag without ``-`` such as ``PER`` has prefix
  ``PER`` and the empty type, and a type spelled ``0`` counts as empty (Perl
  truthiness).
* strict (``strict=True``): seqeval's ``mode='strict', scheme=IOB2``: entities are
  taken per sentence with :class:`seqeval.scheme.Entities` and a predicted
  entity is correct only if type, start and end all match a gold entity.  Tags
  that IOB2 does not allow (``E-X``, ``PER``, ...) raise :class:`ValueError`.

:class:`Scorer` keeps counters, and for the analysis of :mod:`nerbatch.evaluation.analysis` (error
classes, confusion matrix, per-document scores, bootstrap intervals, in ``result()["analysis"]``)
three integers per sentence, one small record per document and a bounded number of error
sentences (``Scorer(analysis=False)`` keeps only the counters);
each :meth:`Scorer.add` call is one sentence, and two sentences are separated
the way conlleval separates them, by a blank line (a chunk never runs from one
sentence into the next for real tags; for tag strings without a type such as
``S`` or ``PER``, conlleval's own quirks apply and are reproduced).  The
numbers equal conlleval's on the file with a blank line *between* sentences;
a trailing blank line can change conlleval's count only for such type-less tags.
Strict mode's accuracy compares the tag strings.  Fractions in
:meth:`Scorer.result` are in ``0..1``; a zero denominator gives ``0.0`` like
conlleval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..core.schemes import OUTSIDE, conll_chunks, end_of_chunk, split_tag, start_of_chunk, strict_entities
from .analysis import Analysis, format_analysis
from .calibration import Calibration, format_calibration

__all__ = ["Scorer", "score", "format_report", "DEFAULT_BOOTSTRAP"]

# bootstrap resamples behind the confidence intervals of every result (0: none); about 10 ms for
# the 231 documents of the CoNLL-2003 test set
DEFAULT_BOOTSTRAP = 1000


# --------------------------------------------------------------------------- #
# conlleval rules
# --------------------------------------------------------------------------- #


class _Counts:
    """Chunk counters for one type or overall."""

    __slots__ = ("gold", "pred", "correct")

    def __init__(self) -> None:
        self.gold = 0
        self.pred = 0
        self.correct = 0


class _ConllevalState:
    """conlleval's main loop, fed one token (or one sentence boundary) at a time."""

    def __init__(self) -> None:
        self.last_correct = OUTSIDE
        self.last_correct_type = ""
        self.last_guessed = OUTSIDE
        self.last_guessed_type = ""
        self.in_correct = False
        self.correct_chunk = 0
        self.found_correct = 0
        self.found_guessed = 0
        self.correct_chunk_by_type: dict[str, int] = {}
        self.found_correct_by_type: dict[str, int] = {}
        self.found_guessed_by_type: dict[str, int] = {}
        self.correct_tags = 0
        self.token_counter = 0

    def boundary(self) -> None:
        """A sentence break (blank line): gold and guess are ``O``, not counted as a token."""
        self._step(OUTSIDE, "", OUTSIDE, "", is_token=False)

    def token(self, gold: str, pred: str) -> None:
        correct, correct_type = split_tag(gold)
        guessed, guessed_type = split_tag(pred)
        self._step(correct, correct_type, guessed, guessed_type, is_token=True)

    def _step(
        self, correct: str, correct_type: str, guessed: str, guessed_type: str, *, is_token: bool
    ) -> None:
        lc, lct = self.last_correct, self.last_correct_type
        lg, lgt = self.last_guessed, self.last_guessed_type

        if self.in_correct:
            end_c = end_of_chunk(lc, correct, lct, correct_type)
            end_g = end_of_chunk(lg, guessed, lgt, guessed_type)
            if end_c and end_g and lgt == lct:
                self.in_correct = False
                self.correct_chunk += 1
                _bump(self.correct_chunk_by_type, lct)
            elif end_c != end_g or guessed_type != correct_type:
                self.in_correct = False

        start_c = start_of_chunk(lc, correct, lct, correct_type)
        start_g = start_of_chunk(lg, guessed, lgt, guessed_type)
        if start_c and start_g and guessed_type == correct_type:
            self.in_correct = True
        if start_c:
            self.found_correct += 1
            _bump(self.found_correct_by_type, correct_type)
        if start_g:
            self.found_guessed += 1
            _bump(self.found_guessed_by_type, guessed_type)
        if is_token:
            if correct == guessed and guessed_type == correct_type:
                self.correct_tags += 1
            self.token_counter += 1

        self.last_correct, self.last_correct_type = correct, correct_type
        self.last_guessed, self.last_guessed_type = guessed, guessed_type

    def counts(self) -> tuple[_Counts, dict[str, _Counts]]:
        """Counts as conlleval reports them at end of input (the open chunk is closed)."""
        correct_by_type = dict(self.correct_chunk_by_type)
        correct = self.correct_chunk
        if self.in_correct:
            correct += 1
            _bump(correct_by_type, self.last_correct_type)
        overall = _Counts()
        overall.gold, overall.pred = self.found_correct, self.found_guessed
        overall.correct = correct
        per_type: dict[str, _Counts] = {}
        for type_ in set(self.found_correct_by_type) | set(self.found_guessed_by_type):
            c = _Counts()
            c.gold = self.found_correct_by_type.get(type_, 0)
            c.pred = self.found_guessed_by_type.get(type_, 0)
            c.correct = correct_by_type.get(type_, 0)
            per_type[type_] = c
        return overall, per_type


def _bump(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


# --------------------------------------------------------------------------- #
# strict mode (seqeval)
# --------------------------------------------------------------------------- #


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #


def _prf(correct: int, gold: int, pred: int) -> dict[str, Any]:
    precision = correct / pred if pred > 0 else 0.0
    recall = correct / gold if gold > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": gold,
        "predicted": pred,
        "correct": correct,
    }


class Scorer:
    """Accumulates chunk counts sentence by sentence; see the module docstring for the modes.

    >>> s = Scorer()
    >>> s.add(["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"])
    >>> s.result()["overall"]["f1"]
    1.0
    """

    def __init__(
        self,
        strict: bool = False,
        *,
        analysis: bool = True,
        bootstrap: int = DEFAULT_BOOTSTRAP,
        seed: int = 0,
        examples: int = 50,
        calibration: Calibration | None = None,
    ) -> None:
        self.strict = strict
        # entity scores against correctness (nerbatch.evaluation.calibration), fed by whoever has the scores
        self.calibration = calibration
        self.bootstrap = bootstrap
        self.seed = seed
        # error classes, confusion, per-document scores, bootstrap (nerbatch.evaluation.analysis)
        self.analysis = Analysis(examples=examples) if analysis else None
        self._sentences = 0
        self._started = False
        # default mode
        self._conll = _ConllevalState()
        # strict mode
        self._tokens = 0
        self._correct_tags = 0
        self._strict: dict[str, _Counts] = {}

    def add(
        self,
        gold: Sequence[str],
        pred: Sequence[str],
        *,
        sentence: bool = True,
        doc: str | None = None,
        tokens: Sequence[str] | None = None,
        path: str | None = None,
        line: int | None = None,
    ) -> None:
        """Score one sentence; ``gold`` and ``pred`` are its tags, token by token.

        ``sentence=False`` scores tokens that conlleval sees but that are no sentence (the
        ``-DOCSTART-`` lines of a tagged CoNLL file); strict mode ignores them. ``doc`` (a
        document id), ``tokens``, ``path`` and ``line`` only feed the analysis: per-document
        scores, bootstrap units, the error sentences shown.
        """
        if isinstance(gold, str) or isinstance(pred, str):
            raise TypeError("gold and pred must be sequences of tags, not a single string")
        if len(gold) != len(pred):
            raise ValueError(
                f"gold and predicted tags differ in length: {len(gold)} != {len(pred)}"
            )
        if self.strict:
            if not sentence:
                return
            gold_entities, pred_entities = self._add_strict(gold, pred)
        else:
            if self._started:
                self._conll.boundary()  # the blank line between two sentences
            for g, p in zip(gold, pred, strict=True):
                self._conll.token(g, p)
            self._started = True
        if sentence:
            self._sentences += 1
        if self.analysis is not None:
            if not self.strict:
                gold_entities, pred_entities = conll_chunks(gold), conll_chunks(pred)
            self.analysis.add(
                list(gold_entities), list(pred_entities), sentence=sentence, doc=doc,
                tokens=tokens, length=len(gold), path=path, line=line,
            )

    def merge(self, other: "Scorer") -> None:
        """Add the sentences ``other`` scored (same mode and settings), as if this scorer had scored
        them after its own: the counts of two parts of a run scored apart (the Ray engine's workers)."""
        if other.strict != self.strict:
            raise ValueError("cannot merge a strict and a conlleval scorer")
        if other._started:
            c, o = self._conll, other._conll
            if self._started:
                c.boundary()  # the blank line between the two
            for name in ("correct_chunk", "found_correct", "found_guessed", "correct_tags", "token_counter"):
                setattr(c, name, getattr(c, name) + getattr(o, name))
            for name in ("correct_chunk_by_type", "found_correct_by_type", "found_guessed_by_type"):
                mine = getattr(c, name)
                for key, n in getattr(o, name).items():
                    mine[key] = mine.get(key, 0) + n
            c.last_correct, c.last_correct_type = o.last_correct, o.last_correct_type
            c.last_guessed, c.last_guessed_type = o.last_guessed, o.last_guessed_type
            c.in_correct = o.in_correct
            self._started = True
        self._sentences += other._sentences
        self._tokens += other._tokens
        self._correct_tags += other._correct_tags
        for type_, counts in other._strict.items():
            mine = self._strict.setdefault(type_, _Counts())
            mine.gold, mine.pred, mine.correct = mine.gold + counts.gold, mine.pred + counts.pred, mine.correct + counts.correct
        if self.analysis is not None and other.analysis is not None:
            self.analysis.merge(other.analysis)

    def _add_strict(self, gold: Sequence[str], pred: Sequence[str]):
        gold_entities = strict_entities(gold)
        pred_entities = strict_entities(pred)
        for type_, _, _ in gold_entities:
            self._strict.setdefault(type_, _Counts()).gold += 1
        for type_, _, _ in pred_entities:
            self._strict.setdefault(type_, _Counts()).pred += 1
        for type_, _, _ in gold_entities & pred_entities:
            self._strict[type_].correct += 1
        self._tokens += len(gold)
        self._correct_tags += sum(1 for g, p in zip(gold, pred, strict=True) if g == p)
        return gold_entities, pred_entities

    def result(self) -> dict:
        """Scores so far (may be called at any time; adding more sentences afterwards is fine)."""
        if self.strict:
            tokens, correct_tags = self._tokens, self._correct_tags
            per_type_counts = self._strict
            overall = _Counts()
            for c in per_type_counts.values():
                overall.gold += c.gold
                overall.pred += c.pred
                overall.correct += c.correct
        else:
            tokens, correct_tags = self._conll.token_counter, self._conll.correct_tags
            overall, per_type_counts = self._conll.counts()
        result = {
            "mode": "strict" if self.strict else "conlleval",
            "sentences": self._sentences,
            "tokens": tokens,
            "accuracy": correct_tags / tokens if tokens > 0 else 0.0,
            "overall": _prf(overall.correct, overall.gold, overall.pred),
            "per_type": {
                t: _prf(c.correct, c.gold, c.pred) for t, c in sorted(per_type_counts.items())
            },
        }
        if self.analysis is not None:
            result["analysis"] = self.analysis.result(
                bootstrap=self.bootstrap, seed=self.seed, strict=self.strict, overall=result["overall"]
            )
        if self.calibration is not None:
            result["calibration"] = self.calibration.result()
        return result


def score(
    gold: Iterable[Sequence[str]], pred: Iterable[Sequence[str]], strict: bool = False
) -> dict:
    """Score paired sentences (each a sequence of tags); see :meth:`Scorer.result`."""
    scorer = Scorer(strict=strict)
    gold_it, pred_it = iter(gold), iter(pred)
    done = object()
    while True:
        g = next(gold_it, done)
        p = next(pred_it, done)
        if g is done and p is done:
            return scorer.result()
        if g is done or p is done:
            raise ValueError(
                f"gold and predicted data differ in number of sentences "
                f"(one ends after {scorer.result()['sentences']} sentences)"
            )
        scorer.add(g, p)  # type: ignore[arg-type]


def _percentages(correct: int, gold: int, pred: int) -> tuple[float, float, float]:
    """Precision, recall and F1 in percent, with conlleval's order of arithmetic.

    Computing ``100*correct/found`` (not ``100*(correct/found)``) keeps the
    printed values identical to the Perl script's, down to the rounding of ties.
    """
    precision = 100 * correct / pred if pred > 0 else 0.0
    recall = 100 * correct / gold if gold > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def format_report(result: dict) -> str:
    """Human-readable table: conlleval's two summary lines, then one row per type.

    The first two lines have conlleval's exact format (numbers in percent);
    the per-type table lists precision, recall and F1 in percent, then gold
    (support) and predicted chunk counts.  A type-less chunk (tags like ``B``
    or ``PER`` in conlleval mode) is shown as ``(no type)``. The ``notes`` of a result (e.g. that
    IOB1 tags were converted for strict scoring) follow the table, one ``note:`` line each. A result
with an ``analysis`` also gets the confidence interval, the error-class tables, the confusion
matrix and the worst documents between the two; one with a ``calibration``, the entity scores
against correctness (:func:`nerbatch.evaluation.calibration.format_calibration`) after them.
    """
    o = result["overall"]
    tokens = int(result["tokens"])
    correct_tags = round(result["accuracy"] * tokens)
    accuracy = 100 * correct_tags / tokens if tokens > 0 else 0.0
    precision, recall, f1 = _percentages(o["correct"], o["support"], o["predicted"])
    lines = [
        f"processed {tokens} tokens with {o['support']} phrases; "
        f"found: {o['predicted']} phrases; correct: {o['correct']}.",
        f"accuracy: {accuracy:6.2f}%; precision: {precision:6.2f}%; "
        f"recall: {recall:6.2f}%; FB1: {f1:6.2f}",
    ]
    rows = [(t if t else "(no type)", r) for t, r in result["per_type"].items()]
    if rows:
        width = max(len("type"), *(len(name) for name, _ in rows))
        lines.append("")
        lines.append(
            f"{'type':<{width}}  {'precision':>9}  {'recall':>7}  {'f1':>7}"
            f"  {'support':>7}  {'predicted':>9}"
        )
        for name, r in rows:
            p, rc, f = _percentages(r["correct"], r["support"], r["predicted"])
            lines.append(
                f"{name:<{width}}  {p:>9.2f}  {rc:>7.2f}  {f:>7.2f}"
                f"  {r['support']:>7d}  {r['predicted']:>9d}"
            )
    if result.get("analysis"):
        lines.extend(format_analysis(result["analysis"]))
    if result.get("calibration"):
        lines.extend(format_calibration(result["calibration"]))
    notes = result.get("notes") or []
    if notes:
        lines.append("")
        lines.extend(f"note: {note}" for note in notes)
    return "\n".join(lines) + "\n"
