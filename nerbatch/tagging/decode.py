"""Decoding: from each word's label probabilities to a tag sequence the label set's scheme allows.

``argmax`` takes each word's most probable label on its own, so it can output ``B-LOC I-MISC`` or a
sentence that starts with ``I-PER``: sequences IOB2 does not allow, which conlleval then counts as
extra entities. ``viterbi`` (the default) finds the most probable sequence *among the allowed ones*
(the product of the words' probabilities, with no transition scores). Where the argmax sequence is
already allowed it is also the best allowed one, so Viterbi runs only on the sentences where argmax
breaks the scheme (a few percent), and costs nothing elsewhere.

What is allowed depends on the label set's scheme (:func:`scheme_of`):

- IOB2 (every ``I-X`` has its ``B-X``): an ``I-X`` only after ``B-X`` or ``I-X``;
- IOBES (``E-``/``S-`` labels): ``I-X``/``E-X`` only after ``B-X``/``I-X``, which must be followed
  by ``I-X``/``E-X`` (so a sentence cannot end inside an entity either);
- IOB1 (some ``I-X`` has no ``B-X``, as in the original CoNLL-2003 files): an ``I-X`` may start an
  entity, so every sequence is allowed and Viterbi is argmax.

Plain labels (``LOC``, ``PER``: no ``B-``/``I-`` prefix) are IO tags: the tagger writes them as
``I-LOC``, ``I-PER`` (:func:`as_tags`), so consecutive words of one type are one entity, as in IOB1,
and every output is a NER tag sequence that ``evaluate``, conlleval and the entity lists read.

Scores: a word's score is the probability of the label it was given (for a word Viterbi changed,
that is the probability of the new label, usually lower than its argmax). Entity scores in the
outputs are the mean of their words' scores, calibrated when the model has a map
(:mod:`nerbatch.core.calibration`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.schemes import allowed_transitions, as_tags, scheme_of

__all__ = ["DECODERS", "Decoder"]

DECODERS = ("viterbi", "argmax")
VITERBI_CELLS = 1 << 19  # back pointers held at once by Decoder._viterbi_many (2 MiB; with the log-probabilities, 8 MiB)


class Decoder:
    """Decode sentences for one label set; ``method`` is "viterbi" or "argmax"."""

    def __init__(self, labels: Sequence[str], method: str = "viterbi") -> None:
        if method not in DECODERS:
            raise ValueError(f"unknown decoder {method!r}: use one of {', '.join(DECODERS)}")
        self.labels = list(labels)
        self.tags = as_tags(self.labels)  # what the outputs get for each label id
        self.scheme = scheme_of(self.tags)
        self.method = method
        self.allowed, self.start, self.end = allowed_transitions(self.labels)
        self.constrained = not (self.allowed.all() and self.start.all() and self.end.all())
        self.outside = self.labels.index("O") if "O" in self.labels else None
        # each step of Viterbi takes every label's best allowed predecessor: for the labels any label may precede
        # (O and B-X in IOB2) the best of all (``self.free``); for the others (I-X: after B-X or I-X) the best of
        # their few predecessors, compared slot by slot (``self.groups``: the labels with that many predecessors,
        # and per slot the column of each one's predecessor, a slice where the columns are evenly spaced);
        # a label that nothing may precede keeps -inf
        k = len(self.labels)
        by_count: dict[int, list[tuple[int, list[int]]]] = {}
        for j in range(k):
            prev = np.flatnonzero(self.allowed[:, j]).tolist()
            by_count.setdefault(len(prev), []).append((j, prev))
        self.free = _columns([j for j, _ in by_count.pop(k, [])])
        by_count.pop(0, None)
        self.groups = [
            (_columns([j for j, _ in items]), [(_columns([prev[s] for _, prev in items]),
                                                 np.asarray([prev[s] for _, prev in items], dtype=np.int32))
                                                for s in range(count)])
            for count, items in by_count.items()
        ]
        with np.errstate(divide="ignore"):
            self.log_start = np.where(self.start, 0.0, -np.inf)
            self.log_end = np.where(self.end, 0.0, -np.inf)

    def decode(self, probs: np.ndarray) -> tuple[list[int], list[float]]:
        """Label ids and their probabilities for one sentence's words (``probs``: words x labels).

        A row of NaN marks a word without subwords (a zero-width space, a control character): it
        gets ``O`` with probability 1, as it always has, and is transparent to decoding, so the
        other words get the tags they would get without it (the one place an ``O`` can stand
        inside an entity).
        """
        ids, scores = self.decode_block(probs, [probs.shape[0]])
        return ids.tolist(), scores.tolist()

    def decode_block(self, probs: np.ndarray, lengths: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`decode` for consecutive sentences at once: ``probs`` holds their words' rows one
        sentence after another (``lengths`` words each); returns label ids and probabilities for
        all words, each sentence decoded as it would be alone. The argmax and the scheme check run over
        the whole block in numpy; Viterbi only on the sentences whose argmax breaks the scheme."""
        n = probs.shape[0]
        ids = np.full(n, self.outside if self.outside is not None else 0, dtype=np.int64)
        scores = np.ones(n, dtype=np.float64)
        rows = np.flatnonzero(~np.isnan(probs[:, 0])) if n else np.zeros(0, dtype=np.int64)
        if not len(rows):
            return ids, scores
        p = probs[rows]
        best = p.argmax(-1)
        if self.method == "viterbi" and self.constrained:
            sent = np.repeat(np.arange(len(lengths)), lengths)[rows]  # the sentence of each known word
            first = np.ones(len(rows), dtype=bool)
            first[1:] = sent[1:] != sent[:-1]
            last = np.ones(len(rows), dtype=bool)
            last[:-1] = sent[:-1] != sent[1:]
            bad = (first & ~self.start[best]) | (last & ~self.end[best])
            bad[1:] |= ~first[1:] & ~self.allowed[best[:-1], best[1:]]
            todo = np.unique(sent[bad])
            if len(todo):
                starts, ends = np.searchsorted(sent, todo, "left"), np.searchsorted(sent, todo, "right")
                self._viterbi_many(p, best, starts, ends - starts)
        ids[rows] = best
        scores[rows] = p[np.arange(len(best)), best]
        return ids, scores

    def _viterbi_many(self, p: np.ndarray, best: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
        """The best allowed label paths of many sentences of any lengths at once (sentence ``i`` is
        ``p[starts[i] : starts[i] + lengths[i]]``; its path is written into ``best`` there): the same
        path a sentence gets alone (tested, against a textbook Viterbi and against brute force).

        Why not one sentence length at a time: with a random model most sentences need Viterbi, and the
        numpy calls per time step per length were most of the decoding. Here the sentences step together,
        longest first: at step ``t`` the first ``a`` (those longer than ``t``) advance and the others get
        back pointers to the label they ended on, so each path reads back from the last step through its
        own end. The step takes each label's best allowed predecessor without a sentences x labels x labels
        sum: one max over all labels for the labels any label may precede, and a slot-by-slot comparison
        over strided columns for the others (in IOB2, ``I-X`` after ``B-X`` or ``I-X``): a dozen numpy calls a
        step on contiguous rows (``(steps, sentences, labels)`` layout), and each word's log-probabilities
        taken once rather than at every padded step (together 2.4x faster than gathering the predecessors
        with fancy indexing over padded groups, on CoNLL-2003 train x5's lengths). Ties go to the lower label
        id, as ``argmax`` breaks them. Groups of sentences hold at most :data:`VITERBI_CELLS` back pointers.
        """
        order = np.argsort(-lengths, kind="stable")
        lengths, starts = lengths[order], starts[order]
        k = p.shape[1]
        labels = np.arange(k, dtype=np.int32)
        with np.errstate(divide="ignore"):  # each word's log-probabilities once, taken by the steps that need them
            logp = np.log(np.maximum(p.astype(np.float64), 1e-30))
        i = 0
        while i < len(order):
            n = int(lengths[i])
            m = max(1, min(len(order) - i, VITERBI_CELLS // max(1, n * k)))
            group_len, group_start = lengths[i : i + m], starts[i : i + m]
            at = group_start[None, :] + np.minimum(np.arange(n)[:, None], group_len[None, :] - 1)  # steps x sentences
            back = np.empty((n, m, k), dtype=np.int32)
            back[0] = labels
            score = logp[at[0]] + self.log_start
            active = np.searchsorted(-group_len, -np.arange(n), "left")  # rows longer than t: a prefix
            step = np.full((m, k), -np.inf)
            pointers = np.zeros((m, k), dtype=np.int32)
            for t in range(1, n):
                a = int(active[t])
                before, new, ptr = score[:a], step[:a], pointers[:a]
                if self.free is not None:
                    new[:, self.free] = before.max(1)[:, None]
                    ptr[:, self.free] = before.argmax(1)[:, None]
                for nexts, slots in self.groups:
                    cols, ids = slots[0]
                    top = before[:, cols]
                    at_top = np.broadcast_to(ids, top.shape)
                    for cols, ids in slots[1:]:
                        other = before[:, cols]
                        better = other > top  # (a tie stays with the earlier, lower label)
                        top = np.where(better, other, top)
                        at_top = np.where(better, ids, at_top)
                    new[:, nexts] = top
                    ptr[:, nexts] = at_top
                np.add(new, logp[at[t, :a]], out=score[:a])
                back[t, :a] = ptr
                back[t, a:] = labels  # ended: stay on the label it ended with
            score = score + self.log_end
            path = np.empty((n, m), dtype=np.int64)
            path[-1] = score.argmax(-1)
            rows = np.arange(m)
            for t in range(n - 1, 0, -1):
                path[t - 1] = back[t, rows, path[t]]
            stuck = ~np.isfinite(score.max(-1))  # no allowed sequence at all (a label set without O or E- tags)
            if stuck.any():
                path[:, stuck] = p[at[:, stuck]].argmax(-1)
            real = np.arange(n)[:, None] < group_len[None, :]
            best[at[real]] = path[real]
            i += m


def _columns(ids: list[int]):
    """Label columns as a slice where they are evenly spaced and ascending (a view, not a copy), else
    an index array; None for no columns."""
    if not ids:
        return None
    if len(ids) == 1:
        return slice(ids[0], ids[0] + 1)
    gap = ids[1] - ids[0]
    if gap > 0 and all(b - a == gap for a, b in zip(ids, ids[1:])):
        return slice(ids[0], ids[-1] + 1, gap)
    return np.asarray(ids, dtype=np.int64)
