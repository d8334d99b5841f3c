"""The tagging pipeline: sentences in, one tag per token out, the same for every engine and back-end.

Stages, each a named step of :class:`Tagger` built from the stage modules:

1. **block** (:func:`nerbatch.align.split_blocks`): the stream is cut into blocks of
   ``TaggerOptions.block`` sentences, each with the neighbouring sentences its document context needs;
2. **prepare** (:meth:`Tagger.prepare`): word pieces from the back-end's tokenizer, document context
   and windows (:mod:`nerbatch.align`), a padding-minimising batch plan (:mod:`nerbatch.batching`);
3. **predict** (:meth:`Tagger.predict`): the back-end (:mod:`nerbatch.backends`) gives the label
   probabilities at each word's first subword;
4. **decode** (:meth:`Tagger.run`): each word's probabilities (:func:`nerbatch.align.word_probs`,
   every token exactly once) become a well-formed tag sequence (:mod:`nerbatch.decode`).

:meth:`Tagger.tag_block` is one block through stages 2-4, the unit both engines run: the local engine
through :meth:`Tagger.tag` (a background thread prepares the next block while the model runs this one),
the Ray engine in its actors. The settings (labels, window, context) are read once
(:mod:`nerbatch.settings`); the weights load on the first block, so an empty input never pays for torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import chain
from typing import Iterable, Iterator, Sequence

from . import casing
from .align import Feature, features_for, from_sentence, in_context, split_blocks, word_probs
from .backends import batch_sizes, compile_wanted, load_backend, load_model, refuse_custom_code, resolve_model, upgrade
from .batching import BLOCK_BYTES, DEFAULT_BLOCK, background, chunked, plan_batches
from .decode import DECODERS, Decoder
from .errors import ModelError
from .precision import AUTO, resolve_precision
from .record import Sentence
from .settings import NERBATCH_CONFIG, ModelSettings, read_folder_settings, read_model_config, settings_for

__all__ = [
    "Tagger", "TaggerOptions", "PreparedBlock", "PRECISIONS", "NERBATCH_CONFIG", "read_model_config",
    "load_model", "refuse_custom_code",
]

PRECISIONS = ("fp32", "bf16", "fp16", "int8")


@dataclass(frozen=True)
class TaggerOptions:
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", "cuda:1"
    precision: str = AUTO  # or one of PRECISIONS; "auto": this machine's measured choice (nerbatch.precision)
    max_length: int | None = None  # default: what the model was trained with, else its limit (<= 512)
    stride: int | None = None  # window step for long sentences, in subwords (default: half a window)
    context: bool | None = None  # document context; default: what the model was trained with
    batch_tokens: int | None = None  # padded tokens per batch (default: nerbatch.batching.DEFAULT_BATCH)
    max_batch: int | None = None  # rows per batch (default: nerbatch.batching.DEFAULT_BATCH)
    block: int = DEFAULT_BLOCK  # sentences sorted and batched together (a bounded window of the stream)
    block_bytes: int = BLOCK_BYTES  # ... fewer when they hold more data (nerbatch.record.sentence_bytes)
    threads: int | None = None  # torch intra-op threads on CPU
    compile: bool | None = None  # compiled CPU model (nerbatch.compiled); None: $NERBATCH_COMPILE, else auto
    verbose: bool = False  # one-line notices on stderr (compiling, falling back)
    decode: str = "viterbi"  # "viterbi": the best tag sequence IOB2 allows; "argmax": each word on its own


@dataclass
class PreparedBlock:
    """A block ready for the model: its sentences, their model rows and the batch plan."""

    sentences: list[Sentence]
    features: list[Feature]
    batches: list[list[int]] = field(default_factory=list)


def _trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise, and RSS creeps up with the
    corpus although nothing is retained). A no-op where glibc is not there."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


class Tagger:
    """Tag sentences with a token-classification model; see the module docstring for the stages.

    ``forward_seconds``, ``tokens_seen``, ``padded_tokens`` and ``sentences_tagged`` count the work
    done so far (for the run's log).
    """

    def __init__(self, model: str, options: TaggerOptions = TaggerOptions()) -> None:
        if options.precision not in PRECISIONS and options.precision != AUTO:
            raise ModelError(f"unknown precision {options.precision!r}", hint=f"use one of {AUTO}, {', '.join(PRECISIONS)}")
        if options.decode not in DECODERS:
            raise ModelError(f"unknown decoder {options.decode!r}", hint=f"use one of {', '.join(DECODERS)}")
        self.model_name = model
        self.options = options
        self.forward_seconds = 0.0
        self.tokens_seen = 0
        self.padded_tokens = 0
        self.sentences_tagged = 0
        self.backend = None
        self._decoder: Decoder | None = None
        self._settings: ModelSettings | None = None
        if resolve_model(model):  # a local folder: the settings come from its JSON files
            self._settings = read_folder_settings(
                model, max_length=options.max_length, context=options.context, stride=options.stride
            )
        # "auto" -> the precision measured fastest here, before anything reads options.precision
        self.options, self.precision_choice = resolve_precision(model, options)

    # -- settings and back-end -------------------------------------------------------------------
    @property
    def settings(self) -> ModelSettings:
        if self._settings is None:  # a hub id: known once the model is loaded
            self.load()
        assert self._settings is not None
        return self._settings

    @property
    def loaded(self) -> bool:
        return self.backend is not None

    def load(self) -> None:
        """Load the back-end (:func:`nerbatch.backends.load_backend`), once."""
        if self.backend is not None:
            return
        max_length = self._settings.max_length if self._settings else self.options.max_length
        casing = self._settings is not None and self._settings.casing == "shape"
        backend = load_backend(self.model_name, self.options, max_length=max_length, token_types=casing)
        if self._settings is None:
            self._settings = settings_for(
                self.model_name, list(backend.labels), backend.positions, backend.tokenizer_max, {},
                max_length=self.options.max_length, context=self.options.context, stride=self.options.stride,
            )
        if self._settings.max_length > backend.max_width:
            raise ModelError(
                f"{self.model_name}: max_length {self._settings.max_length} exceeds the compiled model's {backend.max_width}"
            )
        self.batch_tokens, self.max_batch = batch_sizes(self.options, backend.device)
        self.backend = backend

    @property
    def labels(self) -> list[str]:
        return list(self.backend.labels if self.backend is not None else self.settings.labels)

    @property
    def max_length(self) -> int:
        return self.settings.max_length

    @property
    def context(self) -> bool:
        return self.settings.context

    @property
    def specials(self):
        self.load()
        return self.backend.specials

    @property
    def compiled(self) -> bool:
        return self.backend is not None and self.backend.kind == "compiled"

    def compile_wanted(self, cuda: bool = False) -> bool:
        """Whether this run uses a compiled model (see :func:`nerbatch.backends.compile_wanted`)."""
        return compile_wanted(self.model_name, self.options.precision, self.options.compile, cuda=cuda)

    def context_budget(self) -> int:
        """Subwords of document context on each side of a sentence (0: none)."""
        return self.max_length - len(self.specials) if self.context else 0

    # -- the stages --------------------------------------------------------------------------------
    def prepare(
        self,
        core: Sequence[Sentence],
        left: Sequence[Sentence] = (),
        right: Sequence[Sentence] = (),
        *,
        left_cut: bool = False,
        right_cut: bool = False,
    ) -> list[PreparedBlock]:
        """Word pieces, context and windows for ``core`` (``left``/``right`` only lend context), in
        sort blocks of ``options.block`` sentences, each with its batch plan.

        ``left_cut``/``right_cut``: that side was cut short by whoever carried it, so it must still
        hold a full context budget of subwords (checked).
        """
        self.load()
        backend = self.backend
        budget = self.context_budget()
        if budget:  # a side cut short must still hold a full budget of subwords
            for side, cut, where in ((left, left_cut, "left"), (right, right_cut, "right")):
                if cut and sum(len(p) for ws in backend.word_pieces([s.tokens for s in side]) for p in ws) < budget:
                    sent = core[0] if where == "left" else core[-1]
                    raise AssertionError(f"{sent.path}:{sent.line}: not enough {where} context carried")
        items = [*left, *core, *right]
        ctx = list(in_context(items, self.pieces_of, budget))[len(left) : len(left) + len(core)]
        out = []
        for block in chunked(ctx, self.options.block):
            feats: list[Feature] = []
            for k, (_sent, p, lc, rc) in enumerate(block):
                feats.extend(features_for(k, p, backend.specials, self.max_length, self.settings.stride, lc, rc))
            batches = plan_batches([len(f.input_ids) for f in feats], self.batch_tokens, self.max_batch)
            out.append(PreparedBlock([b[0] for b in block], feats, batches))
        return out

    def pieces_of(self, batch: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        """The word pieces of each word of each sentence, as the model takes them: with each word's
        shape in the ids for a model trained with casing (:func:`nerbatch.casing.mark`, as training does)."""
        pieces = self.backend.word_pieces(batch)
        return casing.mark(pieces, batch) if self.settings.casing == "shape" else pieces

    def run(self, prepared: PreparedBlock) -> list[Sentence]:
        """Predict every batch of a prepared block, then decode each sentence (``pred``, ``scores``)."""
        if getattr(self.backend, "pending", None) is not None:  # a compiled copy building in the background
            compiled_backend = upgrade(self.backend, self.options)
            if compiled_backend is not None:
                self.backend = compiled_backend
        parts: list[list[tuple[Feature, object]]] = [[] for _ in prepared.sentences]
        for batch in prepared.batches:
            fs = [prepared.features[i] for i in batch]
            for f, probs in zip(fs, self.predict(fs), strict=True):
                parts[f.sent].append((f, probs))
        labels = self.labels
        decoder = self.decoder
        for k, sent in enumerate(prepared.sentences):
            ids, scores = decoder.decode(word_probs(len(sent.tokens), parts[k], len(labels)))
            sent.pred = [labels[i] for i in ids]
            sent.scores = [round(p, 4) for p in scores]
            if len(sent.pred) != len(sent.tokens):  # the core invariant
                raise AssertionError(f"{sent.path}:{sent.line}: {len(sent.tokens)} tokens, {len(sent.pred)} tags")
        self.sentences_tagged += len(prepared.sentences)
        _trim_heap()
        return prepared.sentences

    @property
    def decoder(self) -> Decoder:
        if self._decoder is None:
            self._decoder = Decoder(self.labels, self.options.decode)
        return self._decoder

    def predict(self, feats: list[Feature]) -> list:
        """The label probabilities (positions x labels) at the word positions of each feature of one batch."""
        import numpy as np

        width = max(len(f.input_ids) for f in feats)
        ids = np.full((len(feats), width), self.backend.pad_id, dtype=np.int64)
        mask = np.zeros((len(feats), width), dtype=np.int64)
        rows: list[int] = []
        cols: list[int] = []
        for r, f in enumerate(feats):
            n = len(f.input_ids)
            ids[r, :n] = f.input_ids
            mask[r, :n] = 1
            rows.extend([r] * len(f.positions))
            cols.extend(f.positions)
            self.tokens_seen += n
        self.padded_tokens += ids.size
        types = None
        if self.settings.casing == "shape":
            ids, types = casing.split(ids)
        t0 = time.perf_counter()
        probs = self.backend.predict(ids, mask, np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64), types)
        self.forward_seconds += time.perf_counter() - t0
        out = []
        k = 0
        for f in feats:
            out.append(probs[k : k + len(f.positions)])
            k += len(f.positions)
        return out

    def tag_block(
        self,
        core: Sequence[Sentence],
        left: Sequence[Sentence] = (),
        right: Sequence[Sentence] = (),
        *,
        left_cut: bool = False,
        right_cut: bool = False,
        carried: int | None = None,
    ) -> list[Sentence]:
        """Tag the ``core`` sentences (``pred``/``scores``) exactly as :meth:`tag` does in the whole
        stream, given the neighbours their document context needs (see :func:`~nerbatch.align.split_blocks`).

        ``carried``: the context need (in words) the neighbours were cut for; an error when this
        model's context needs more (the sender guessed the settings from another copy of the model).
        """
        budget = self.context_budget()
        if carried is not None and budget > carried:
            raise ModelError(
                f"{self.model_name}: the model uses {budget} subwords of document context but the blocks "
                f"carry neighbours for {carried}",
                hint="the model folder differs between the driver and the workers; pass --context/--no-context "
                "and --max-length explicitly",
            )
        out: list[Sentence] = []
        for prepared in self.prepare(core, left, right, left_cut=left_cut, right_cut=right_cut):
            out.extend(self.run(prepared))
        return out

    def blocks(
        self, sentences: Iterable[Sentence], skip: int = 0, block: int | None = None
    ) -> Iterator[tuple[list, list, list, bool, bool]]:
        """The stream as ``(left, core, right, left_cut, right_cut)`` blocks of ``options.block`` sentences
        (at most ``block``; fewer when they hold more than ``options.block_bytes``), from sentence
        ``skip`` on (the sentences before it still lend context)."""
        size = min(self.options.block, block or self.options.block)
        return from_sentence(split_blocks(sentences, size, self.settings.context_need(), self.options.block_bytes), skip)

    def tag(self, sentences: Iterable[Sentence], skip: int = 0, block: int | None = None) -> Iterator[Sentence]:
        """Yield the input sentences in order, each with ``pred`` and ``scores`` (one per token).

        The first ``skip`` sentences are read (they give context to the next ones) but not tagged
        or yielded: resuming a file that was interrupted after ``skip`` sentences. ``block``: tag at
        most that many sentences at a time (a run that checkpoints every ``block`` sentences gets
        its sentences in time to make each checkpoint, not all at the end of a larger block).
        """
        stream = iter(sentences)
        first = next(stream, None)
        if first is None:
            return
        self.load()
        stream = chain([first], stream)

        def prepared() -> Iterator[PreparedBlock]:
            for left, core, right, left_cut, right_cut in self.blocks(stream, skip, block):
                yield from self.prepare(core, left, right, left_cut=left_cut, right_cut=right_cut)

        for block in background(prepared):
            yield from self.run(block)
