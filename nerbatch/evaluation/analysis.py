"""What the numbers are made of: error classes, a type confusion matrix, per-document scores and
bootstrap confidence intervals (used by :class:`nerbatch.evaluation.scoring.Scorer`).

Entities are the ones the scorer counts (conlleval chunks by default, seqeval's strict entities
with ``--strict``), so the totals agree with the default numbers: ``correct`` is conlleval's
correct count, the gold column sums to the gold phrases and the predicted column to the found ones.

Every gold entity gets one class from its best-overlapping prediction (the exact span first, then
the same type, then the largest overlap, then the leftmost), and every predicted entity one from
its best-overlapping gold entity:

* ``correct``: same span, same type;
* ``type``: same span, wrong type;
* ``boundary``: right type, overlapping span;
* ``type_boundary``: wrong type and overlapping span;
* ``missed`` (gold only): no prediction overlaps it;
* ``spurious`` (predicted only): it overlaps no gold entity.

The confusion matrix has one cell per gold entity (row: its type, column: the type of its best
prediction, or ``none`` when missed) plus one per spurious prediction (row ``none``).

Bootstrap: the units are documents (``-DOCSTART-`` / ``doc_id``) when there are at least
:data:`MIN_DOCUMENTS` of them, else sentences. Each unit is a vector (correct, gold, predicted);
a resample draws units with replacement and sums their vectors (numpy, nothing is re-scored).
Intervals are percentile intervals; the paired test of two prediction files resamples the same
units for both and gives a two-sided p-value for the F1 difference (the share of resampled
differences at least as far from the observed one as the observed one is from zero).
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

__all__ = [
    "CLASSES", "LABELS", "Analysis", "classify", "bootstrap_interval", "paired_bootstrap", "format_analysis",
]

CLASSES = ("correct", "type", "boundary", "type_boundary", "missed", "spurious")
GOLD_CLASSES = ("correct", "type", "boundary", "type_boundary", "missed")
PRED_CLASSES = ("correct", "type", "boundary", "type_boundary", "spurious")
ERROR_CLASSES = CLASSES[1:]
LABELS = {
    "correct": "correct",
    "type": "wrong type, same span",
    "boundary": "right type, wrong boundary",
    "type_boundary": "wrong type and boundary",
    "missed": "missed",
    "spurious": "spurious",
}
NONE = "none"  # the confusion matrix's row and column for "no entity"
MIN_DOCUMENTS = 10  # fewer documents than this: the bootstrap resamples sentences
LEVEL = 0.95

Chunk = tuple[str, int, int]


# --------------------------------------------------------------------------- #
# classification
# --------------------------------------------------------------------------- #


def _partners(xs: Sequence[Chunk], ys: Sequence[Chunk]) -> list[Chunk | None]:
    """For each chunk of ``xs``, its best-overlapping chunk of ``ys`` (or None).

    Both lists are sorted and hold no overlapping chunks (one tag sequence each), so the ``ys``
    overlapping ``x`` are a run found by bisection on their ends.
    """
    ends = [y[2] for y in ys]
    out: list[Chunk | None] = []
    for x in xs:
        best, best_key = None, None
        j = bisect_right(ends, x[1])  # first y ending after x starts
        while j < len(ys) and ys[j][1] < x[2]:
            y = ys[j]
            overlap = min(x[2], y[2]) - max(x[1], y[1])
            key = (y[1] == x[1] and y[2] == x[2], y[0] == x[0], overlap, -y[1])
            if best_key is None or key > best_key:
                best, best_key = y, key
            j += 1
        out.append(best)
    return out


def _class(x: Chunk, y: Chunk | None, alone: str) -> str:
    if y is None:
        return alone
    same_span = x[1] == y[1] and x[2] == y[2]
    if x[0] == y[0]:
        return "correct" if same_span else "boundary"
    return "type" if same_span else "type_boundary"


def classify(gold: Sequence[Chunk], pred: Sequence[Chunk]):
    """Classes of one sentence's entities: ``(gold_classes, gold_partners, pred_classes, pred_partners)``.

    ``gold``/``pred`` are ``(type, start, end_exclusive)`` chunks of one tag sequence each.

    >>> classify([("PER", 0, 2), ("LOC", 3, 4)], [("PER", 0, 1), ("ORG", 5, 6)])[0::2]
    (['boundary', 'missed'], ['boundary', 'spurious'])
    """
    gold, pred = sorted(gold, key=lambda c: c[1]), sorted(pred, key=lambda c: c[1])
    gp, pp = _partners(gold, pred), _partners(pred, gold)
    gc = [_class(g, p, "missed") for g, p in zip(gold, gp)]
    pc = [_class(p, g, "spurious") for p, g in zip(pred, pp)]
    return gc, gp, pc, pp


# --------------------------------------------------------------------------- #
# the accumulator
# --------------------------------------------------------------------------- #


def _prf(correct: int, gold: int, pred: int) -> dict[str, Any]:
    precision = correct / pred if pred > 0 else 0.0
    recall = correct / gold if gold > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": gold, "predicted": pred, "correct": correct}


class _Doc:
    __slots__ = ("index", "path", "doc", "line", "sentences", "tokens", "gold", "pred", "correct", "classes")

    def __init__(self, index: int, path: str | None, doc: str, line: int | None) -> None:
        self.index, self.path, self.doc, self.line = index, path, doc, line
        self.sentences = self.tokens = self.gold = self.pred = self.correct = 0
        self.classes = dict.fromkeys(ERROR_CLASSES, 0)


class Analysis:
    """Collects the breakdown sentence by sentence (see the module docstring).

    Memory: fixed-size counters, one small record per document, three integers per sentence
    (the bootstrap units) and at most ``examples`` error sentences per error class.
    """

    def __init__(self, examples: int = 50) -> None:
        self.examples_limit = max(0, examples)
        self.gold_classes = dict.fromkeys(GOLD_CLASSES, 0)
        self.pred_classes = dict.fromkeys(PRED_CLASSES, 0)
        self.by_type: dict[str, dict[str, dict[str, int]]] = {}
        self.confusion: dict[tuple[str | None, str | None], int] = {}
        self.docs: dict[tuple[str | None, str], _Doc] = {}
        # one row per sentence: correct, gold, predicted, document index (-1: none)
        self.rows = {k: array("q") for k in ("correct", "gold", "pred", "doc")}
        self._pending = [0, 0, 0]  # counts of tokens that are no sentence (-DOCSTART- lines)
        self.error_sentences = dict.fromkeys(ERROR_CLASSES, 0)
        self.shown = dict.fromkeys(ERROR_CLASSES, 0)
        self.examples: list[dict] = []

    def _type(self, type_: str) -> dict[str, dict[str, int]]:
        entry = self.by_type.get(type_)
        if entry is None:
            entry = self.by_type[type_] = {"gold": dict.fromkeys(GOLD_CLASSES, 0), "pred": dict.fromkeys(PRED_CLASSES, 0)}
        return entry

    def add(
        self,
        gold: Sequence[Chunk],
        pred: Sequence[Chunk],
        *,
        sentence: bool = True,
        doc: str | None = None,
        tokens: Sequence[str] | None = None,
        length: int = 0,
        path: str | None = None,
        line: int | None = None,
    ) -> None:
        """Add one sentence's gold and predicted entities (``sentence=False``: tokens that are no
        sentence, such as ``-DOCSTART-`` lines: counted, but never shown as an example)."""
        gold, pred = sorted(gold, key=lambda c: c[1]), sorted(pred, key=lambda c: c[1])
        gc, gp, pc, _ = classify(gold, pred)
        here: set[str] = set()
        for g, cls, partner in zip(gold, gc, gp):
            self.gold_classes[cls] += 1
            self._type(g[0])["gold"][cls] += 1
            key = (g[0], None if partner is None else partner[0])
            self.confusion[key] = self.confusion.get(key, 0) + 1
            if cls != "correct":
                here.add(cls)
        for p, cls in zip(pred, pc):
            self.pred_classes[cls] += 1
            self._type(p[0])["pred"][cls] += 1
            if cls == "spurious":
                key = (None, p[0])
                self.confusion[key] = self.confusion.get(key, 0) + 1
            if cls != "correct":
                here.add(cls)
        correct = gc.count("correct")

        d: _Doc | None = None
        if doc is not None:
            d = self.docs.get((path, doc))
            if d is None:
                d = self.docs[(path, doc)] = _Doc(len(self.docs), path, doc, line if sentence else None)
            if d.line is None and sentence:
                d.line = line
            d.sentences += int(sentence)
            d.tokens += length
            d.gold += len(gold)
            d.pred += len(pred)
            d.correct += correct
            for cls in gc:
                if cls != "correct":
                    d.classes[cls] += 1
            d.classes["spurious"] += pc.count("spurious")

        if not sentence:
            for k, v in enumerate((correct, len(gold), len(pred))):
                self._pending[k] += v
            return
        c, n_gold, n_pred = (v + p for v, p in zip((correct, len(gold), len(pred)), self._pending))
        self._pending = [0, 0, 0]
        self.rows["correct"].append(c)
        self.rows["gold"].append(n_gold)
        self.rows["pred"].append(n_pred)
        self.rows["doc"].append(-1 if d is None else d.index)

        if here:
            for cls in here:
                self.error_sentences[cls] += 1
            if any(self.shown[cls] < self.examples_limit for cls in here):
                for cls in here:
                    self.shown[cls] += 1
                self.examples.append({
                    "path": path,
                    "line": line,
                    "doc": doc,
                    "tokens": list(tokens) if tokens is not None else ["_"] * length,
                    "gold": [[t, s, e, cls] for (t, s, e), cls in zip(gold, gc)],
                    "pred": [[t, s, e, cls] for (t, s, e), cls in zip(pred, pc)],
                    "classes": [cls for cls in ERROR_CLASSES if cls in here],
                })

    def merge(self, other: "Analysis") -> None:
        """Add what ``other`` collected, as if its sentences had been added here after these
        (documents, bootstrap rows and the error sentences shown, within this one's limit)."""
        for mine, theirs in ((self.gold_classes, other.gold_classes), (self.pred_classes, other.pred_classes),
                             (self.error_sentences, other.error_sentences)):
            for key, n in theirs.items():
                mine[key] += n
        for type_, entry in other.by_type.items():
            for side in ("gold", "pred"):
                target = self._type(type_)[side]
                for key, n in entry[side].items():
                    target[key] += n
        for key, n in other.confusion.items():
            self.confusion[key] = self.confusion.get(key, 0) + n
        index = {}  # other's document index -> this one's
        for key, d in other.docs.items():
            mine = self.docs.get(key)
            if mine is None:
                mine = self.docs[key] = _Doc(len(self.docs), d.path, d.doc, d.line)
            elif mine.line is None:
                mine.line = d.line
            for name in ("sentences", "tokens", "gold", "pred", "correct"):
                setattr(mine, name, getattr(mine, name) + getattr(d, name))
            for cls, n in d.classes.items():
                mine.classes[cls] += n
            index[d.index] = mine.index
        rows = {k: array("q", v) for k, v in other.rows.items()}
        if len(rows["correct"]):  # tokens that were no sentence at the end here go with the next sentence
            for k, name in enumerate(("correct", "gold", "pred")):
                rows[name][0] += self._pending[k]
            self._pending = list(other._pending)
        else:
            self._pending = [a + b for a, b in zip(self._pending, other._pending)]
        rows["doc"] = array("q", (index[i] if i >= 0 else -1 for i in rows["doc"]))
        for k in self.rows:
            self.rows[k].extend(rows[k])
        for example in other.examples:
            here = example["classes"]
            if any(self.shown[cls] < self.examples_limit for cls in here):
                for cls in here:
                    self.shown[cls] += 1
                self.examples.append(example)

    # -- bootstrap units ------------------------------------------------------------------------
    def unit_counts(self):
        """``(unit name, array of shape (units, 3))``: correct, gold, predicted per bootstrap unit."""
        import numpy as np

        cols = [np.frombuffer(self.rows[k], dtype=np.int64) if len(self.rows[k]) else np.zeros(0, np.int64)
                for k in ("correct", "gold", "pred", "doc")]
        counts = np.stack(cols[:3], axis=1) if len(cols[0]) else np.zeros((0, 3), np.int64)
        if len(counts) and any(self._pending):  # -DOCSTART- tokens after the last sentence
            counts[-1] += self._pending
        elif any(self._pending):
            counts = np.array([self._pending], dtype=np.int64)
        doc = cols[3]
        docs = np.unique(doc[doc >= 0]) if len(doc) else doc
        if len(docs) < MIN_DOCUMENTS:
            return "sentences", counts
        # documents; a sentence without a document is a unit of its own
        unit = np.where(doc >= 0, doc, doc.max(initial=0) + 1 + np.arange(len(doc)))
        _, inverse = np.unique(unit, return_inverse=True)
        out = np.zeros((inverse.max() + 1, 3), dtype=np.int64)
        np.add.at(out, inverse, counts)
        return "documents", out

    # -- the result -----------------------------------------------------------------------------
    def totals(self) -> tuple[int, int, int]:
        """(correct, gold, predicted) as the classes count them."""
        return self.gold_classes["correct"], sum(self.gold_classes.values()), sum(self.pred_classes.values())

    def result(self, *, bootstrap: int = 0, seed: int = 0, strict: bool = False, overall: dict | None = None) -> dict:
        types = sorted(self.by_type)
        labels: list[str | None] = [*types, None]
        index = {t: i for i, t in enumerate(labels)}
        matrix = [[0] * len(labels) for _ in labels]
        for (g, p), n in self.confusion.items():
            matrix[index[g]][index[p]] += n
        docs = [d for d in self.docs.values() if d.sentences]
        documents = []
        for d in docs:
            row = {"doc": d.doc, "path": d.path, "line": d.line, "sentences": d.sentences, "tokens": d.tokens}
            row.update(_prf(d.correct, d.gold, d.pred))
            row["errors"] = dict(d.classes)
            documents.append(row)

        def badness(row):
            errors = sum(row["errors"].values())
            f1 = row["f1"] if row["support"] + row["predicted"] else 1.0
            return (f1, -errors)

        documents.sort(key=badness)
        out: dict[str, Any] = {
            "entities": "strict IOB2 entities (seqeval)" if strict else "conlleval chunks",
            "classes": {"gold": dict(self.gold_classes), "pred": dict(self.pred_classes)},
            "per_type": {t: {"gold": dict(v["gold"]), "pred": dict(v["pred"])} for t, v in sorted(self.by_type.items())},
            "confusion": {"labels": [NONE if t is None else t for t in labels], "matrix": matrix},
            "documents": documents,
            "error_sentences": dict(self.error_sentences),
            "examples_limit": self.examples_limit,
            "examples_shown": dict(self.shown),
            "examples": self.examples,
            "bootstrap": None,
        }
        if overall is not None:
            out["agrees"] = self.totals() == (overall["correct"], overall["support"], overall["predicted"])
        if bootstrap > 0 and len(self.rows["gold"]):
            unit, counts = self.unit_counts()
            out["bootstrap"] = bootstrap_interval(counts, bootstrap, seed, unit=unit)
        return out


# --------------------------------------------------------------------------- #
# bootstrap
# --------------------------------------------------------------------------- #

_BLOCK = 2_000_000  # unit draws per block of resamples (memory: 3 * 8 bytes each)


def resample_sums(counts, samples: int, seed: int):
    """``samples`` bootstrap resamples of the rows of ``counts`` (units x k), summed: (samples, k)."""
    import numpy as np

    counts = np.asarray(counts, dtype=np.int64)
    n, k = counts.shape
    out = np.zeros((samples, k), dtype=np.int64)
    if n == 0:
        return out
    rng = np.random.default_rng(seed)
    block = max(1, min(samples, _BLOCK // n))
    for start in range(0, samples, block):
        b = min(block, samples - start)
        idx = rng.integers(0, n, size=(b, n))
        for j in range(k):
            out[start:start + b, j] = counts[:, j][idx].sum(axis=1)
    return out


def _prf_arrays(sums):
    """Precision, recall and F1 (fractions) of summed (correct, gold, predicted) columns."""
    import numpy as np

    c, g, p = (sums[:, j].astype(np.float64) for j in range(3))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(p > 0, c / np.where(p > 0, p, 1), 0.0)
        recall = np.where(g > 0, c / np.where(g > 0, g, 1), 0.0)
        f1 = np.where(g + p > 0, 2 * c / np.where(g + p > 0, g + p, 1), 0.0)
    return precision, recall, f1


def _interval(values, level: float = LEVEL) -> list[float]:
    import numpy as np

    lo, hi = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return [float(lo), float(hi)]


def bootstrap_interval(counts, samples: int, seed: int = 0, *, unit: str = "sentences", level: float = LEVEL) -> dict:
    """Percentile intervals of precision, recall and F1 over ``samples`` resamples of the units."""
    import numpy as np

    sums = resample_sums(counts, samples, seed)
    lo, hi = np.percentile(np.stack(_prf_arrays(sums)), [100 * (1 - level) / 2, 100 * (1 + level) / 2], axis=1)
    out = {"samples": samples, "seed": seed, "unit": unit, "units": int(len(counts)), "level": level}
    for k, key in enumerate(("precision", "recall", "f1")):
        out[key] = [float(lo[k]), float(hi[k])]
    return out


def paired_bootstrap(counts_a, counts_b, samples: int, seed: int = 0, *, unit: str = "sentences", level: float = LEVEL) -> dict:
    """Paired bootstrap of the F1 difference B - A over the same units (see the module docstring)."""
    import numpy as np

    a, b = np.asarray(counts_a, dtype=np.int64), np.asarray(counts_b, dtype=np.int64)
    if a.shape != b.shape:
        raise ValueError(f"the two files have different bootstrap units: {a.shape[0]} != {b.shape[0]}")
    f_a = _prf_arrays(a.sum(axis=0, keepdims=True))[2][0]
    f_b = _prf_arrays(b.sum(axis=0, keepdims=True))[2][0]
    delta = float(f_b - f_a)
    sums = resample_sums(np.concatenate([a, b], axis=1), samples, seed)
    diff = _prf_arrays(sums[:, 3:])[2] - _prf_arrays(sums[:, :3])[2]
    extreme = int(np.count_nonzero(np.abs(diff - delta) >= abs(delta)))
    return {
        "samples": samples,
        "seed": seed,
        "unit": unit,
        "units": int(len(a)),
        "level": level,
        "f1_a": float(f_a),
        "f1_b": float(f_b),
        "f1_difference": delta,
        "f1_difference_interval": _interval(diff, level),
        "p_value": (extreme + 1) / (samples + 1),
    }


# --------------------------------------------------------------------------- #
# text
# --------------------------------------------------------------------------- #


def _type_name(t: str) -> str:
    return t if t else "(no type)"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        for r in cells
    ]


def doc_name(row: dict, several_files: bool = False) -> str:
    name = f"doc {row['doc']}"
    if several_files and row.get("path"):
        name = f"{os.path.basename(str(row['path']))} {name}"
    return name


def format_ci(ci: dict) -> str:
    def pct(v: Sequence[float]) -> str:
        return f"{100 * v[0]:.2f}-{100 * v[1]:.2f}"

    return (
        f"{100 * ci['level']:.0f}% CI (bootstrap over {ci['units']} {ci['unit']}, {ci['samples']} samples, "
        f"seed {ci['seed']}): precision {pct(ci['precision'])}; recall {pct(ci['recall'])}; FB1 {pct(ci['f1'])}"
    )


def format_analysis(analysis: dict, *, worst: int = 5) -> list[str]:
    """The text report's lines for an analysis (error classes, confusion, CI, worst documents)."""
    lines: list[str] = []
    if analysis.get("bootstrap"):
        lines += ["", format_ci(analysis["bootstrap"])]
    g, p = analysis["classes"]["gold"], analysis["classes"]["pred"]
    rows = [[LABELS[c], g.get(c, "-"), p.get(c, "-")] for c in CLASSES]
    rows.append(["total", sum(g.values()), sum(p.values())])
    lines += ["", f"error classes ({analysis['entities']}):"]
    lines += _table(["class", "gold", "predicted"], rows)
    per_type = analysis["per_type"]
    if per_type:
        header = ["type", "correct", "wrong type", "wrong boundary", "type+boundary", "missed", "spurious"]
        rows = [
            [_type_name(t), *(v["gold"][c] for c in GOLD_CLASSES), v["pred"]["spurious"]]
            for t, v in per_type.items()
        ]
        lines += ["", "error classes per type (gold entities by gold type; spurious by predicted type):"]
        lines += _table(header, rows)
        conf = analysis["confusion"]
        names = [*(_type_name(t) for t in conf["labels"][:-1]), NONE]
        lines += ["", "confusion (rows: gold type, columns: type of the best-overlapping prediction):"]
        lines += _table(["gold \\ predicted", *names], [[n, *r] for n, r in zip(names, conf["matrix"])])
    docs = [d for d in analysis["documents"] if sum(d["errors"].values())]
    if docs and worst > 0:
        several = len({d.get("path") for d in analysis["documents"]}) > 1
        lines += ["", f"worst documents ({min(worst, len(docs))} of {len(analysis['documents'])}):"]
        rows = [
            [doc_name(d, several), d["line"], d["tokens"], d["support"], d["predicted"], d["correct"],
             f"{100 * d['f1']:.2f}", sum(d["errors"].values())]
            for d in docs[:worst]
        ]
        lines += _table(["document", "line", "tokens", "gold", "found", "correct", "FB1", "errors"], rows)
    if analysis.get("agrees") is False:
        lines += ["", "note: the error classes count other entities than the scores (tags outside B/I/E/S-TYPE)"]
    return lines
