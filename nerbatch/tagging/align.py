"""Words <-> subwords: encoding, windows for long sentences, document context, logits -> word tags.

Pure functions over lists of ids, shared by training and tagging so both see the same inputs.
Conventions:
- a word's prediction (and training label) sits on its first subword; other subwords get -100;
- a word that the tokenizer turns into zero subwords gets no position and the tag ``O``;
- predictions come back as label probabilities per word (each word exactly once) for the decoder;
- a sentence longer than the model's window is split into overlapping windows; each word is owned by
  the window where its first subword has the most context on both sides, so every word is predicted
  exactly once;
- a sentence that fits may be surrounded by subwords of its neighbours in the same document
  (document context); only the sentence's own words carry positions/labels.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from ..core.record import Sentence, sentence_bytes
from ..errors import ModelError
from .batching import chunked

if TYPE_CHECKING:
    import numpy as np

IGNORE = -100


@dataclass(slots=True)
class Feature:
    """One model input row. ``positions[i]`` is where word ``words[i]`` has its first subword."""

    sent: int
    input_ids: list[int]
    positions: list[int]
    words: list[int]


@dataclass(frozen=True)
class Specials:
    """Ids a tokenizer puts around a sequence (``[CLS] ... [SEP]`` for BERT)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer) -> "Specials":
        plain = tokenizer(["nerbatch"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
        full = tokenizer(["nerbatch"], is_split_into_words=True, add_special_tokens=True)["input_ids"]
        for i in range(len(full) - len(plain) + 1):
            if full[i : i + len(plain)] == plain:
                return cls(tuple(full[:i]), tuple(full[i + len(plain) :]))
        raise ModelError("cannot tell which special tokens the tokenizer adds")

    def __len__(self) -> int:
        return len(self.prefix) + len(self.suffix)


def byte_level(tokenizer) -> bool:
    """Whether a fast tokenizer (transformers', or a ``tokenizers.Tokenizer`` behind ``backend_tokenizer``)
    is byte-level BPE (RoBERTa, ModernBERT, GPT-2 style), whose pieces carry the space before a word
    (``Ġlives``): such a tokenizer only sees that space if the word is given with it."""
    pre = getattr(getattr(tokenizer, "backend_tokenizer", None), "pre_tokenizer", None)
    return pre is not None and _has_byte_level(json.loads(pre.__getstate__()))


def _has_byte_level(node) -> bool:
    if isinstance(node, dict):
        return node.get("type") == "ByteLevel" or any(_has_byte_level(v) for v in node.values())
    return isinstance(node, list) and any(_has_byte_level(v) for v in node)


def word_pieces(tokenizer, batch: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Subword ids of each word of each sentence (``[]`` for a word with no subwords): the pieces the
    word gets in the sentence's running text (its words joined by spaces). A byte-level BPE tokenizer
    (:func:`byte_level`) gets every word after the first with its leading space; other tokenizers
    mark word starts themselves (WordPiece ``##``, SentencePiece ``▁``)."""
    import numpy as np

    todo = [i for i, toks in enumerate(batch) if toks]
    if not todo:
        return [[[] for _ in toks] for toks in batch]
    words = [list(batch[i]) for i in todo]
    if byte_level(tokenizer):
        words = [[w if j == 0 or not w or w[0].isspace() else " " + w for j, w in enumerate(ws)] for ws in words]
    # one call for the whole batch; the pieces are cut out of the flat id list by each piece's word,
    # numbered across the batch (word_ids are each row's word indexes, None for special tokens)
    rows, word_ids = _encode(tokenizer, words)
    counts = np.fromiter((len(toks) for toks in batch), dtype=np.int64, count=len(batch))
    first_word = np.zeros(len(batch) + 1, dtype=np.int64)
    np.cumsum(counts, out=first_word[1:])
    total = sum(len(r) for r in rows)
    ids = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=total)
    word = np.array(list(chain.from_iterable(word_ids)), dtype=np.float64)  # None (a special token): NaN
    row_of = np.repeat(np.asarray(todo, dtype=np.int64), [len(r) for r in rows])
    keep = ~np.isnan(word)
    number = first_word[row_of[keep]] + word[keep].astype(np.int64)  # each piece's word, across the batch
    order = np.argsort(number, kind="stable")
    ids, number = ids[keep][order].tolist(), number[order]
    ends = np.cumsum(np.bincount(number, minlength=int(first_word[-1]))).tolist()
    starts = [0, *ends[:-1]]
    pieces = [ids[a:b] for a, b in zip(starts, ends)]
    bounds = first_word.tolist()
    return [pieces[bounds[i] : bounds[i + 1]] for i in range(len(batch))]


def _encode(tokenizer, words: list[list[str]]) -> tuple[list[list[int]], list[list[int | None]]]:
    """Each sentence's subword ids and their word indexes, without special tokens. The Rust tokenizer
    behind a fast tokenizer is called directly when it is set as transformers sets it for such a call
    (no truncation, no padding, the same special-token splitting): the same ids, without building
    the attention masks and type ids of a ``BatchEncoding``."""
    rust = getattr(tokenizer, "backend_tokenizer", None)
    if (
        rust is not None and rust.truncation is None and rust.padding is None
        and rust.encode_special_tokens == bool(getattr(tokenizer, "split_special_tokens", False))
    ):
        encodings = rust.encode_batch(words, is_pretokenized=True, add_special_tokens=False)
        return [e.ids for e in encodings], [e.word_ids for e in encodings]
    enc = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    return enc["input_ids"], [enc.word_ids(row) for row in range(len(words))]


def with_context(
    items: Iterable[tuple[Sentence, list[list[int]]]], budget: int
) -> Iterator[tuple[Sentence, list[list[int]], list[int], list[int]]]:
    """Attach up to ``budget`` subword ids of the preceding and following sentences of the same document.

    Streams with bounded look-ahead: it holds at most ``budget`` subwords of sentences on each side.
    A ``budget`` of 0, or a sentence with ``doc_id`` None, gets no context.
    """
    it = iter(items)
    pending: deque[tuple[Sentence, list[list[int]], list[int]]] = deque()
    history: deque[list[int]] = deque()
    hist_len = 0
    hist_doc: object = None
    exhausted = False

    def pull() -> bool:
        nonlocal exhausted
        if exhausted:
            return False
        try:
            sent, pieces = next(it)
        except StopIteration:
            exhausted = True
            return False
        pending.append((sent, pieces, [t for p in pieces for t in p]))
        return True

    while pending or pull():
        sent, pieces, flat = pending[0]
        doc = sent.doc_id
        if budget <= 0 or doc is None or not sent.tokens:
            pending.popleft()
            yield sent, pieces, [], []
            continue
        # look ahead until the right context is full, the document ends or the input ends
        right_len = sum(len(f) for s, _, f in list(pending)[1:] if s.doc_id == doc)
        while right_len < budget and (len(pending) == 1 or pending[-1][0].doc_id == doc or not pending[-1][0].tokens):
            if not pull():
                break
            s, _, f = pending[-1]
            if s.doc_id == doc:
                right_len += len(f)
        right: list[int] = []
        for s, _, f in list(pending)[1:]:
            if len(right) >= budget:
                break
            if s.doc_id != doc:
                if s.tokens:
                    break
                continue
            right.extend(f)
        del right[budget:]
        if hist_doc != doc:
            history.clear()
            hist_len = 0
            hist_doc = doc
        left: list[int] = [t for f in history for t in f][-budget:] if history else []
        pending.popleft()
        yield sent, pieces, left, right
        history.append(flat)
        hist_len += len(flat)
        while history and hist_len - len(history[0]) >= budget:
            hist_len -= len(history.popleft())


def in_context(
    sentences: Iterable[Sentence], pieces_of: Callable[[list[list[str]]], list[list[list[int]]]], budget: int, chunk: int = 256
) -> Iterator[tuple[Sentence, list[list[int]], list[int], list[int]]]:
    """Each sentence with its word pieces and up to ``budget`` subwords of document context on each
    side (:func:`with_context`), streamed; ``pieces_of`` tokenises a batch of token lists (for
    example :func:`word_pieces` bound to a tokenizer). Training and tagging both build on this."""

    def pieces() -> Iterator[tuple[Sentence, list[list[int]]]]:
        for part in chunked(sentences, chunk):
            yield from zip(part, pieces_of([s.tokens for s in part]), strict=True)

    return with_context(pieces(), budget)


def features_for(
    sent_index: int,
    pieces: Sequence[Sequence[int]],
    specials: Specials,
    max_length: int,
    stride: int | None = None,
    left: Sequence[int] = (),
    right: Sequence[int] = (),
) -> list[Feature]:
    """Model inputs for one sentence: one row when it fits (with context), else overlapping windows.

    ``stride`` is the step between windows in subwords (default: half a window). Every word that
    has subwords is owned by exactly one returned feature.
    """
    body = max_length - len(specials)
    if body < 2:
        raise ValueError("max_length too small for the special tokens")
    flat: list[int] = []
    first: list[int] = []
    for p in pieces:
        first.append(len(flat) if p else -1)
        flat.extend(p)
    if not flat:
        return []
    pre, suf = list(specials.prefix), list(specials.suffix)
    if len(flat) <= body:
        budget = body - len(flat)
        lc = min(len(left), max(budget // 2, budget - len(right)))
        rc = min(len(right), budget - lc)
        ids = pre + list(left[len(left) - lc :]) + flat + list(right[:rc]) + suf
        offset = len(pre) + lc
        words = [w for w, f in enumerate(first) if f >= 0]
        return [Feature(sent_index, ids, [offset + first[w] for w in words], words)]
    starts, owned = windows(first, len(flat), body, stride)
    feats = []
    for s, words in zip(starts, owned):
        ids = pre + flat[s : s + body] + suf
        feats.append(Feature(sent_index, ids, [len(pre) + first[w] - s for w in words], words))
    return feats


def windows(first: Sequence[int], total: int, body: int, stride: int | None = None) -> tuple[list[int], list[list[int]]]:
    """Overlapping windows of ``body`` subwords over a sentence of ``total`` subwords whose words begin at
    ``first`` (-1: a word without subwords): each window's first subword, and the words each owns. A word
    is owned by the window where its first subword has the most room on both sides, so every word that
    has subwords is owned exactly once. ``stride``: the step between windows (default: half a window)."""
    step = stride or max(1, body // 2)
    step = min(step, body)
    starts = [0]
    while starts[-1] + body < total:
        starts.append(starts[-1] + step)
    owned: list[list[int]] = [[] for _ in starts]
    k = 0
    for w, f in enumerate(first):
        if f < 0:
            continue
        while k + 1 < len(starts) and starts[k] + body <= f:
            k += 1  # first window that contains f
        best, best_room = k, -1
        j = k
        while j < len(starts) and starts[j] <= f:
            room = min(f - starts[j], starts[j] + body - 1 - f)
            if room > best_room:
                best, best_room = j, room
            j += 1
        owned[best].append(w)
    return starts, owned


def label_ids(feature: Feature, tags: Sequence[str], label2id: dict[str, int]) -> list[int]:
    """Training labels for a feature: the owned words' first subwords, -100 everywhere else."""
    labels = [IGNORE] * len(feature.input_ids)
    for w, pos in zip(feature.words, feature.positions):
        labels[pos] = label2id[tags[w]]
    return labels


def assign(
    n_words: int,
    parts: Iterable[tuple[Feature, Sequence[int], Sequence[float]]],
    id2label: Sequence[str],
    outside: str = "O",
) -> tuple[list[str], list[float]]:
    """Word tags from per-feature predictions (label id and probability at each position).

    Words without subwords get ``outside`` with score 1.0. Raises if a word would get zero or two tags.
    """
    tags: list[str | None] = [None] * n_words
    scores = [1.0] * n_words
    for feat, ids, probs in parts:
        for w, lab, p in zip(feat.words, ids, probs):
            if tags[w] is not None:
                raise AssertionError(f"word {w} predicted twice")
            tags[w] = id2label[lab]
            scores[w] = float(p)
    out = [t if t is not None else outside for t in tags]
    return out, scores


# -- blocks of a stream, with the neighbours their document context needs ----------------------


def countable_words(sent: Sentence) -> int:
    """Words that surely give at least one subword (any letter or digit: at worst [UNK])."""
    return sum(1 for w in sent.tokens if any(c.isalnum() for c in w))


def neighbour(sent: Sentence) -> Sentence:
    """A neighbour only lends context: its tokens and document are all that travel."""
    return Sentence(tokens=sent.tokens, doc_id=sent.doc_id, index=sent.index, path=sent.path, line=sent.line)


def split_blocks(
    sentences: Iterable[Sentence], size: int, need: int, max_bytes: int | None = None
) -> Iterator[tuple[list[Sentence], list[Sentence], list[Sentence], bool, bool]]:
    """Cut a sentence stream into ``(left, core, right, left_cut, right_cut)`` blocks.

    ``core`` is ``size`` consecutive sentences (fewer at the end), or fewer when they hold more
    than ``max_bytes`` (:func:`~nerbatch.record.sentence_bytes`; at least one). ``left``/``right`` are the
    neighbouring sentences that ``align.with_context`` would draw context from: the run of same-document
    sentences before the core (sentences without tokens or document skipped, as ``with_context`` does)
    and the sentences after it up to the next sentence of another document. Each side stops once it
    holds ``need`` words (``left_cut``/``right_cut`` say that it stopped early, so the tagger can check
    that it got a full budget of subwords). ``need`` 0: no neighbours.
    """
    it = iter(sentences)
    ahead: deque[Sentence] = deque()
    left: deque[Sentence] = deque()
    left_words = 0
    left_doc: object = None
    left_cut = False

    def take(n: int) -> list[Sentence]:
        out: list[Sentence] = []
        held = 0
        while len(out) < n and (max_bytes is None or held < max_bytes):
            s = ahead.popleft() if ahead else next(it, None)
            if s is None:
                break
            out.append(s)
            if max_bytes is not None:
                held += sentence_bytes(s)
        return out

    core = take(size)
    while core:
        right: list[Sentence] = []
        right_cut = False
        if need > 0:
            last = next((s for s in reversed(core) if s.tokens), None)
            doc = last.doc_id if last is not None else None
            if doc is not None:
                words = 0
                j = 0
                while True:
                    if words >= need:
                        right_cut = True
                        break
                    if j == len(ahead):
                        s = next(it, None)
                        if s is None:
                            break
                        ahead.append(s)
                    s = ahead[j]
                    if s.tokens and s.doc_id != doc:
                        break
                    if s.tokens:
                        right.append(neighbour(s))
                        words += countable_words(s)
                    j += 1
        yield list(left), core, right, left_cut, right_cut
        if need > 0:
            for s in core:
                if not s.tokens or s.doc_id is None:
                    continue
                if s.doc_id != left_doc:
                    left.clear()
                    left_words = 0
                    left_doc = s.doc_id
                    left_cut = False
                left.append(neighbour(s))
                left_words += countable_words(s)
                while left and left_words - countable_words(left[0]) >= need:
                    left_words -= countable_words(left.popleft())
                    left_cut = True
        core = take(size)


def from_sentence(
    blocks: Iterable[tuple[list[Sentence], list[Sentence], list[Sentence], bool, bool]], skip: int
) -> Iterator[tuple[list[Sentence], list[Sentence], list[Sentence], bool, bool]]:
    """The blocks of :func:`split_blocks` from sentence ``skip`` on (a resumed file): blocks before it
    are dropped, and the block it falls in keeps only the sentences from it, the others lending context."""
    start = 0
    for left, core, right, left_cut, right_cut in blocks:
        end = start + len(core)
        if end > skip:
            if start < skip:
                left, core, left_cut = left + [neighbour(s) for s in core[: skip - start]], core[skip - start :], False
            yield left, core, right, left_cut, right_cut
        start = end


# -- a block's model rows from flat arrays (the tagging hot path) ---------------------------------


class PieceCache:
    """The word pieces of each word, remembered: ``flat(sentences)`` gives a block's subword ids as one
    flat array and each word's piece count, without a Python list per word.

    A pre-split word's pieces depend only on the word and on whether it begins its sentence (a
    byte-level BPE tokenizer gives a later word its leading space; a SentencePiece one may mark only
    the first word), so a word is encoded once, in that position, by ``pieces_of`` (:func:`word_pieces`,
    with the casing marks where the model uses them), and looked up afterwards. Measured on CoNLL-2003
    train with the MiniLM tokenizer: about 7% of a block's words are new, and the lookups cost a tenth
    of encoding every word. The cache is emptied when it holds ``limit`` words, so memory stays bounded.
    """

    FILLER = "a"  # the first word of the sentences that carry new later words to the tokenizer

    def __init__(self, pieces_of: Callable[[list[list[str]]], list[list[list[int]]]], limit: int = 200_000) -> None:
        self.pieces_of = pieces_of
        self.limit = limit
        # word -> entry number; an entry's pieces are store[start[e] : start[e] + count[e]]. Flat arrays,
        # not a tuple per word: a block's ids are then one gather (see flat) instead of a Python
        # iteration over every subword (a sixth of the prepare stage for a character-level vocabulary)
        self.first: dict[str, int] = {}
        self.later: dict[str, int] = {}
        self._clear()

    def _clear(self) -> None:
        import numpy as np

        self.first.clear()
        self.later.clear()
        self.store = np.zeros(1 << 16, dtype=np.int64)
        self.start = np.zeros(1 << 12, dtype=np.int64)
        self.count = np.zeros(1 << 12, dtype=np.int64)
        self.entries = 0
        self.used = 0

    def _add(self, pieces: list[list[int]]) -> int:
        """Store each word's pieces as a new entry; returns the first entry's number."""
        import numpy as np

        n = len(pieces)
        counts = np.fromiter(map(len, pieces), dtype=np.int64, count=n)
        total = int(counts.sum())
        while self.entries + n > len(self.start):
            self.start = np.concatenate([self.start, np.zeros_like(self.start)])
            self.count = np.concatenate([self.count, np.zeros_like(self.count)])
        while self.used + total > len(self.store):
            self.store = np.concatenate([self.store, np.zeros_like(self.store)])
        first = self.entries
        self.count[first : first + n] = counts
        self.start[first : first + n] = self.used + np.cumsum(counts) - counts
        self.store[self.used : self.used + total] = np.fromiter(chain.from_iterable(pieces), dtype=np.int64, count=total)
        self.entries += n
        self.used += total
        return first

    def learn(self, sentences: Sequence[Sequence[str]], chunk: int = 512) -> None:
        if len(self.first) + len(self.later) > self.limit:
            self._clear()
        new_first = list({toks[0] for toks in sentences if toks and toks[0] not in self.first})
        new_later = list(set(chain.from_iterable(sentences)).difference(self.later))  # first words too: looked up before being replaced
        if new_first:  # each alone: a sentence of one word
            e = self._add([pieces[0] for pieces in self.pieces_of([[w] for w in new_first])])
            self.first.update(zip(new_first, range(e, e + len(new_first))))
        for i in range(0, len(new_later), chunk):  # after a filler word, in sentences of ``chunk`` words
            part = new_later[i : i + chunk]
            (pieces,) = self.pieces_of([[self.FILLER, *part]])
            if len(pieces) != len(part) + 1:
                raise AssertionError(f"the tokenizer gave {len(pieces)} words for {len(part) + 1}")
            e = self._add(pieces[1:])
            self.later.update(zip(part, range(e, e + len(part))))

    def flat(self, sentences: Sequence[Sequence[str]]) -> tuple["np.ndarray", "np.ndarray"]:
        """``(ids, counts)``: the subword ids of every word of ``sentences`` in order, and each word's count."""
        import numpy as np

        self.learn(sentences)
        n = sum(map(len, sentences))
        entry = np.fromiter(map(self.later.__getitem__, chain.from_iterable(sentences)), dtype=np.int64, count=n)
        lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
        starts = np.cumsum(lengths) - lengths
        heads = [toks[0] for toks in sentences if toks]  # a sentence's first word as it is encoded there
        entry[starts[lengths > 0]] = np.fromiter(map(self.first.__getitem__, heads), dtype=np.int64, count=len(heads))
        counts = self.count[entry]
        ids = self.store[ragged_index(self.start[entry], counts)]
        return ids, counts


@dataclass(slots=True)
class Rows:
    """The model rows of a block as slices of its flat subword ids: row ``r`` is the prefix specials,
    ``ids[start[r]:end[r]]`` and the suffix specials. Its words (numbered across the block's core
    sentences) are ``words[offsets[r]:offsets[r+1]]``, at ``positions`` (counted with the prefix) of the row."""

    ids: "np.ndarray"
    start: "np.ndarray"
    end: "np.ndarray"
    offsets: "np.ndarray"
    words: "np.ndarray"
    positions: "np.ndarray"

    def __len__(self) -> int:
        return len(self.start)

    def lengths(self, specials: Specials) -> "np.ndarray":
        return self.end - self.start + len(specials)

    def row_ids(self, row: int, specials: Specials) -> list[int]:
        """Row ``row``'s model input ids, specials included."""
        return [*specials.prefix, *self.ids[self.start[row] : self.end[row]].tolist(), *specials.suffix]

    def take(self, rows: "np.ndarray") -> tuple["np.ndarray", "np.ndarray", "np.ndarray"]:
        """``(row of each word, its position, its word)`` for the given rows, rows in the given order."""
        import numpy as np

        counts = self.offsets[rows + 1] - self.offsets[rows]
        index = ragged_index(self.offsets[rows], counts)
        return np.repeat(np.arange(len(rows), dtype=np.int64), counts), self.positions[index], self.words[index]

    def matrix(self, rows: "np.ndarray", specials: Specials, pad_id: int) -> tuple["np.ndarray", "np.ndarray"]:
        """The padded ``(ids, attention mask)`` matrices of the given rows."""
        import numpy as np

        body = self.end[rows] - self.start[rows]
        pre, suf = len(specials.prefix), len(specials.suffix)
        width = int(body.max()) + pre + suf
        cols = np.arange(width, dtype=np.int64)
        out = np.full((len(rows), width), pad_id, dtype=np.int64)
        if pre:
            out[:, :pre] = specials.prefix
        inside = (cols >= pre) & (cols < (body + pre)[:, None])
        out[inside] = self.ids[(self.start[rows][:, None] + cols - pre)[inside]]
        for j, tok in enumerate(specials.suffix):
            out[np.arange(len(rows)), body + pre + j] = tok
        mask = (cols < (body + pre + suf)[:, None]).astype(np.int64)
        return out, mask


def ragged_index(starts: "np.ndarray", counts: "np.ndarray") -> "np.ndarray":
    """The indexes ``starts[i] .. starts[i] + counts[i] - 1`` of every i, concatenated."""
    import numpy as np

    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    return np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - counts), counts)


def enough(sentences: Sequence[Sentence], budget: int, backwards: bool = False) -> list[Sentence]:
    """The sentences at the start (at the end: ``backwards``) of ``sentences`` that surely hold ``budget``
    subwords (:func:`countable_words`), or all of them: all the context a neighbouring block can draw."""
    out: list[Sentence] = []
    words = 0
    for sent in reversed(sentences) if backwards else sentences:
        if words >= budget:
            break
        out.append(sent)
        words += countable_words(sent)
    return out[::-1] if backwards else out


def _long_windows(long_k, core_idx, word_start, counts, sub_start, s_start, s_end, body: int, stride: int | None, w0: int):
    """The window rows of the long sentences ``core_idx[long_k]`` (core positions ``long_k``), as
    :func:`windows` makes them one sentence at a time: per row its first and end subword in the block,
    the sentence's core position and the window's number; then per owned word (rows in order, words in
    order within a row) its block word number and its position in the row (without the prefix); and
    the words per row. Vectorised: on a corpus where a third of the sentences need windows this was
    half of the prepare stage as a loop."""
    import numpy as np

    step = min(stride or max(1, body // 2), body)
    sent = core_idx[long_k]
    total = s_end[sent] - s_start[sent]
    n_win = 1 + np.maximum(0, -(-(total - body) // step))  # windows start at 0, step, ... until one reaches the end
    row_first = np.zeros(len(sent) + 1, dtype=np.int64)
    np.cumsum(n_win, out=row_first[1:])
    row_sent = np.repeat(np.arange(len(sent), dtype=np.int64), n_win)  # each row's long sentence
    row_j = np.arange(int(row_first[-1]), dtype=np.int64) - row_first[row_sent]  # its window number
    row_ws = row_j * step
    starts = s_start[sent][row_sent] + row_ws
    ends = np.minimum(starts + body, s_end[sent][row_sent])
    # the words (with subwords) of the long sentences, and the windows that hold each one's first subword
    wa, wb = word_start[sent], word_start[sent + 1]
    widx = ragged_index(wa, wb - wa)
    word_sent = np.repeat(np.arange(len(sent), dtype=np.int64), wb - wa)
    has = counts[widx] > 0
    widx, word_sent = widx[has], word_sent[has]
    f = sub_start[widx] - s_start[sent][word_sent]  # the word's first subword within its sentence
    last = n_win[word_sent] - 1
    lo = np.minimum(np.maximum(0, (f - body) // step + 1), last)  # first window whose end is past f
    hi = np.minimum(f // step, last)  # last window that starts at or before f
    span = int((hi - lo).max()) + 1 if len(f) else 1
    cand = lo[:, None] + np.arange(span, dtype=np.int64)[None, :]
    ws = cand * step
    room = np.minimum(f[:, None] - ws, ws + body - 1 - f[:, None])  # room on the word's tighter side
    room = np.where(cand <= hi[:, None], room, -1)
    best = cand[np.arange(len(f)), np.argmax(room, axis=1)]  # the first window with the most room
    row = row_first[word_sent] + best
    order = np.argsort(row, kind="stable")  # rows in order, words in order within a row
    row, widx, f, best = row[order], widx[order], f[order], best[order]
    per_row = np.bincount(row, minlength=int(row_first[-1]))
    return starts, ends, long_k[row_sent], row_j, widx - w0, f - best * step, per_row


def block_rows(
    items: Sequence[Sentence],
    core: range,
    cache: PieceCache,
    specials: Specials,
    max_length: int,
    stride: int | None,
    budget: int,
) -> Rows:
    """The model rows of the ``core`` sentences of ``items`` (the others lend document context), the
    same rows :func:`in_context` and :func:`features_for` give, in the same order, built from flat arrays.

    With a context ``budget`` a sentence draws on the subwords of the sentences around it in
    ``items`` that belong to its document (sentences without tokens are passed over), as
    :func:`with_context` does; every sentence must then have a document (the caller checks).
    """
    import numpy as np

    body = max_length - len(specials)
    if body < 2:
        raise ValueError("max_length too small for the special tokens")
    ids, counts = cache.flat([s.tokens for s in items])
    nwords = np.fromiter((len(s.tokens) for s in items), dtype=np.int64, count=len(items))
    word_start = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(nwords, out=word_start[1:])
    sub_start = np.zeros(len(counts) + 1, dtype=np.int64)  # each word's first subword in ``ids``
    np.cumsum(counts, out=sub_start[1:])
    s_start, s_end = sub_start[word_start[:-1]], sub_start[word_start[1:]]  # each sentence's subwords
    sizes = s_end - s_start
    left = np.zeros(len(items), dtype=np.int64)
    right = np.zeros(len(items), dtype=np.int64)
    if budget > 0:  # context: the run of same-document sentences around each sentence, in subwords
        run_start = np.zeros(len(items), dtype=np.int64)
        run_end = np.zeros(len(items), dtype=np.int64)
        doc, first_at, members = object(), 0, []
        ss, se = s_start.tolist(), s_end.tolist()
        for i, sent in enumerate(items):
            if not sent.tokens:
                continue
            if sent.doc_id != doc:
                for m in members:
                    run_end[m] = se[members[-1]]
                doc, first_at, members = sent.doc_id, ss[i], []
            members.append(i)
            run_start[i] = first_at
        for m in members:
            run_end[m] = se[members[-1]]
        left = np.minimum(s_start - run_start, budget)
        right = np.minimum(run_end - s_end, budget)
    core_idx = np.arange(core.start, core.stop, dtype=np.int64)
    fits = (sizes[core_idx] > 0) & (sizes[core_idx] <= body)
    room = body - sizes[core_idx]
    lc = np.minimum(left[core_idx], np.maximum(room // 2, room - right[core_idx]))
    rc = np.minimum(right[core_idx], room - lc)
    # one row per fitting sentence (key: its core index, window 0), its words those with subwords
    k_fit = np.flatnonzero(fits)
    start = (s_start[core_idx] - lc)[k_fit]
    end = (s_end[core_idx] + rc)[k_fit]
    key_sent, key_win = k_fit, np.zeros(len(k_fit), dtype=np.int64)
    w0 = word_start[core.start]  # core words are numbered from the block's first core word
    wa, wb = word_start[core_idx[k_fit]], word_start[core_idx[k_fit] + 1]
    widx = ragged_index(wa, wb - wa)
    has = counts[widx] > 0
    row_of_word = np.repeat(np.arange(len(k_fit), dtype=np.int64), wb - wa)[has]
    widx = widx[has]
    words = [widx - w0]
    positions = [sub_start[widx] - start[row_of_word] + len(specials.prefix)]
    per_row = [np.bincount(row_of_word, minlength=len(k_fit))]
    starts_l, ends_l, ks, js = [start], [end], [key_sent], [key_win]
    long_k = np.flatnonzero(sizes[core_idx] > body)
    if len(long_k):  # long sentences: windows, all of them at once (what windows() gives, word by word)
        win = _long_windows(long_k, core_idx, word_start, counts, sub_start, s_start, s_end, body, stride, w0)
        for part, value in zip((starts_l, ends_l, ks, js, words, positions, per_row), win):
            part.append(value)
        positions[-1] = positions[-1] + len(specials.prefix)
    order = np.lexsort((np.concatenate(js), np.concatenate(ks)))  # rows in sentence order, then window order
    per_row_all = np.concatenate(per_row)
    offs = np.zeros(len(per_row_all) + 1, dtype=np.int64)
    np.cumsum(per_row_all, out=offs[1:])
    word_all, pos_all = np.concatenate(words), np.concatenate(positions)
    index = ragged_index(offs[:-1][order], per_row_all[order])
    new_offs = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(per_row_all[order], out=new_offs[1:])
    return Rows(
        ids, np.concatenate(starts_l)[order], np.concatenate(ends_l)[order], new_offs, word_all[index], pos_all[index]
    )


def rows_of_features(features: Sequence[Feature], specials: Specials) -> Rows:
    """:class:`Rows` holding the given features (their ids laid end to end, specials taken off)."""
    import numpy as np

    pre, suf = len(specials.prefix), len(specials.suffix)
    bodies = [f.input_ids[pre : len(f.input_ids) - suf] for f in features]
    sizes = np.fromiter(map(len, bodies), dtype=np.int64, count=len(bodies))
    start = np.zeros(len(bodies) + 1, dtype=np.int64)
    np.cumsum(sizes, out=start[1:])
    nw = np.fromiter((len(f.words) for f in features), dtype=np.int64, count=len(features))
    offs = np.zeros(len(features) + 1, dtype=np.int64)
    np.cumsum(nw, out=offs[1:])
    return Rows(
        np.fromiter(chain.from_iterable(bodies), dtype=np.int64, count=int(start[-1])), start[:-1], start[1:], offs,
        np.fromiter(chain.from_iterable(f.words for f in features), dtype=np.int64, count=int(offs[-1])),
        np.fromiter(chain.from_iterable(f.positions for f in features), dtype=np.int64, count=int(offs[-1])),
    )
