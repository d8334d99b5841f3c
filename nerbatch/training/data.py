"""Training data: gold sentences read and checked (IOB2), the label set, and the features a training
sees, encoded with the same windows and document context as tagging (``nerbatch.tagging.align``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

from ..core.record import Sentence
from ..core.schemes import iob1_to_iob2, is_tag
from ..errors import InputError, NerbatchError
from ..io import ReadOptions, read
from ..model import casing
from ..tagging.align import Specials, features_for, in_context, label_ids, word_pieces
from .options import TrainingJob

__all__ = ["collect_labels", "Features", "encode", "TrainingData", "build_dataset"]


def _sentences(paths: list[str], fmt: str | None, options: ReadOptions) -> Iterator[Sentence]:
    """Gold sentences in IOB2, validated (every token tagged, tags well formed)."""
    for path in paths:
        for sent in read(path, fmt, options):
            if not sent.tokens:
                continue
            if sent.tags is None:
                raise InputError(
                    "training data needs gold tags", path=path, line=sent.line, hint="check --tag-column/--tags-key"
                )
            for i, tag in enumerate(sent.tags):
                if not is_tag(tag):
                    raise InputError(
                        f"unknown tag {tag!r} (expected O or B-/I-TYPE)",
                        path=path,
                        line=sent.line + i if isinstance(sent.source, list) else sent.line,
                    )
            sent.tags = iob1_to_iob2(sent.tags)
            yield sent


def collect_labels(paths: list[str], fmt: str | None, options: ReadOptions, seen: dict | None = None) -> list[str]:
    """``O`` then ``B-X``, ``I-X`` for every type X seen, sorted by type; ``seen["text"]`` is set
    when some training sentence came from raw text (span-annotated JSONL, ...)."""
    types: set[str] = set()
    for sent in _sentences(paths, fmt, options):
        types.update(t[2:] for t in sent.tags if t != "O")
        if seen is not None and sent.text is not None:
            seen["text"] = True
    if not types:
        raise InputError("no entities in the training data", path=paths[0])
    return ["O"] + [f"{p}-{t}" for t in sorted(types) for p in ("B", "I")]


@dataclass(frozen=True)
class Features:
    """How sentences become training features: the tokenizer, the label ids, the window length,
    document context on or off, and word-shape token types (:mod:`nerbatch.model.casing`) or not."""

    tokenizer: Any
    label2id: dict[str, int]
    max_length: int
    context: bool
    shapes: bool = False


def encode(
    paths: list[str], features: Features, *, fmt: str | None = None, options: ReadOptions | None = None,
    every: int = 1, stats: dict | None = None,
) -> Iterator[dict]:
    """Training features, streamed, one per window: ``input_ids`` and ``labels`` (the label id on
    each word's first subword, ``-100`` on other subwords, specials and context), and with
    ``features.shapes`` the ``token_type_ids`` of :mod:`nerbatch.model.casing` (built exactly as tagging
    builds them). Keeps every ``every``-th sentence; ``stats`` (if given) counts ``sentences`` read and ``kept``."""
    tokenizer, label2id, max_length, shapes = features.tokenizer, features.label2id, features.max_length, features.shapes
    specials = Specials.of(tokenizer)
    budget = (max_length - len(specials)) if features.context else 0

    def pieces_of(batch):
        pieces = word_pieces(tokenizer, batch)
        return casing.mark(pieces, batch) if shapes else pieces

    if stats is not None:
        stats.update(sentences=0, kept=0)
    windows = in_context(_sentences(paths, fmt, options or ReadOptions()), pieces_of, budget)
    for n, (sent, p, left, right) in enumerate(windows):
        if stats is not None:
            stats["sentences"] += 1
        if n % every:
            continue
        if stats is not None:
            stats["kept"] += 1
        for tag_i, tag in enumerate(sent.tags):
            if tag not in label2id:
                raise InputError(
                    f"tag {tag!r} does not occur in the training data",
                    path=sent.path,
                    line=sent.line + tag_i if isinstance(sent.source, list) else sent.line,
                )
        for feat in features_for(0, p, specials, max_length, None, left, right):
            if shapes:
                ids, types = casing.split(feat.input_ids)
                yield {"input_ids": ids.tolist(), "token_type_ids": types.tolist(), "labels": label_ids(feat, sent.tags, label2id)}
            else:
                yield {"input_ids": feat.input_ids, "labels": label_ids(feat, sent.tags, label2id)}


@dataclass(frozen=True)
class TrainingData:
    """What a training trains on: labels, the loaded tokenizer and model (a fresh head), the encoded
    train and dev sets (``dev`` None without a dev set) and what was learnt reading them."""

    labels: list[str]
    tokenizer: Any
    model: Any
    train: Any  # a datasets.Dataset of features
    dev: Any
    stats: dict  # training sentences read and kept
    dev_stats: dict
    shapes: bool  # word-shape token types on
    casing_note: str | None
    from_text: bool  # some training sentence came from raw text


def build_dataset(job: TrainingJob, features: Features, *, dev: bool, stats: dict):
    """The encoded training (or dev) features as an Arrow-backed ``datasets.Dataset`` cached in the
    work folder; our own input errors come out unwrapped."""
    import time

    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError

    opts = job.opts
    paths, every, name = ([opts.dev], 1, "dev") if dev else (opts.train, opts.every, "train")

    def gen():
        return encode(paths, features, fmt=opts.input_format, options=opts.read_options, every=every, stats=stats)

    try:
        return Dataset.from_generator(
            gen, cache_dir=os.path.join(job.work, "cache"), fingerprint=f"{name}-{os.getpid()}-{time.time_ns()}"
        )
    except DatasetGenerationError as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, NerbatchError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise
