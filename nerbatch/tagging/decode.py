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
        # the labels that may precede each label, by how many they are: (labels x their predecessors, or None
        # for "every label"; those labels); a label that nothing may precede is left out (-inf, pointing at 0)
        by_count: dict[int, list[tuple[int, list[int]]]] = {}
        for j in range(len(self.labels)):
            prev = np.flatnonzero(self.allowed[:, j]).tolist()
            if prev:
                by_count.setdefault(len(prev), []).append((j, prev))
        self.predecessors = [
            (None if count == len(self.labels) else np.asarray([prev for _, prev in items], dtype=np.int64),
             np.asarray([j for j, _ in items], dtype=np.int64))
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
        path a sentence gets alone (tested, and against brute force).

        Why not one sentence length at a time: with a random model most sentences need Viterbi, and the
        numpy calls per time step per length were most of the decoding (measured: 0.14 of 0.18 s per
        CoNLL-2003 train). Here the sentences step together, longest first: at step ``t`` the first
        ``a`` (those longer than ``t``) advance and the others get back pointers to the label they
        ended on, so each path reads back from the last step through its own end. And the step itself
        takes each label's best allowed predecessor from the labels that may precede it (a few groups:
        in IOB2 all labels may precede ``O`` and ``B-X``, only ``B-X``/``I-X`` precede ``I-X``), not from
        a sentences x labels x labels sum. Groups of sentences hold at most :data:`VITERBI_CELLS` back pointers.
        """
        order = np.argsort(-lengths, kind="stable")
        lengths, starts = lengths[order], starts[order]
        k = p.shape[1]
        labels = np.arange(k)
        i = 0
        while i < len(order):
            n = int(lengths[i])
            m = max(1, min(len(order) - i, VITERBI_CELLS // max(1, n * k)))
            group_len, group_start = lengths[i : i + m], starts[i : i + m]
            at = group_start[:, None] + np.minimum(np.arange(n), group_len[:, None] - 1)  # (padding: the last word again)
            with np.errstate(divide="ignore"):
                logp = np.log(np.maximum(p[at].astype(np.float64), 1e-30))
            back = np.empty((m, n, k), dtype=np.int32)
            back[:, 0] = labels
            score = logp[:, 0] + self.log_start
            active = np.searchsorted(-group_len, -np.arange(n), "left")  # rows longer than t: a prefix
            step = np.full((m, k), -np.inf)
            pointers = np.zeros((m, k), dtype=np.int32)
            for t in range(1, n):
                a = int(active[t])
                before = score[:a]
                for prev, nexts in self.predecessors:
                    if prev is None:  # any label may come before these
                        step[:a, nexts] = before.max(1)[:, None]
                        pointers[:a, nexts] = before.argmax(1)[:, None]
                    else:  # sentences x these labels x their predecessors
                        sub = before[:, prev]
                        j = sub.argmax(2)
                        step[:a, nexts] = sub.max(2)
                        pointers[:a, nexts] = prev[np.arange(len(nexts)), j]
                score[:a] = step[:a] + logp[:a, t]
                back[:a, t] = pointers[:a]
                back[a:, t] = labels  # ended: stay on the label it ended with
            score = score + self.log_end
            path = np.empty((m, n), dtype=np.int64)
            path[:, -1] = score.argmax(-1)
            rows = np.arange(m)
            for t in range(n - 1, 0, -1):
                path[:, t - 1] = back[rows, t, path[:, t]]
            stuck = ~np.isfinite(score.max(-1))  # no allowed sequence at all (a label set without O or E- tags)
            if stuck.any():
                path[stuck] = p[at[stuck]].argmax(-1)
            real = np.arange(n) < group_len[:, None]
            best[at[real]] = path[real]
            i += m
