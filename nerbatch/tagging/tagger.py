"""The tagging pipeline: sentences in, one tag per token out, the same for every engine and back-end.

Stages, each a named step of :class:`Tagger` built from the stage modules:

1. **block** (:func:`nerbatch.tagging.align.split_blocks`): the stream is cut into blocks of
   ``TaggerOptions.block`` sentences, each with the neighbouring sentences its document context needs;
2. **prepare** (:meth:`Tagger.prepare`): word pieces from the back-end's tokenizer, document context
   and windows (:mod:`nerbatch.tagging.align`), a padding-minimising batch plan (:mod:`nerbatch.tagging.batching`);
3. **predict** (:meth:`Tagger.predict`): the back-end (:mod:`nerbatch.tagging.backends`) gives the label
   probabilities at each word's first subword;
4. **decode** (:meth:`Tagger.run`): each word's probabilities (every token exactly once, checked
   there) become a well-formed tag sequence (:mod:`nerbatch.tagging.decode`); a model's
   plain labels (``LOC``, no ``B-``/``I-``) come out as the IO tags ``I-LOC``. A model with a calibration
   map then gives each entity's words the entity's calibrated score
   (:func:`nerbatch.core.calibration.calibrate_scores`): here, after every back-end, so eager, compiled
   and int8 models and both engines share it. A label map (``TaggerOptions.label_map``,
   :mod:`nerbatch.core.labelmap`) then renames, merges or drops types.

:meth:`Tagger.tag_block` is one block through stages 2-4; :meth:`Tagger.tag_sentences` runs a stream's
blocks (a background thread prepares the next block while the model runs this one), in the local engine's
process and in each Ray worker. The settings (labels, window, context) are read once
(:mod:`nerbatch.model.settings`); the weights load on the first block, so an empty input never pays for torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple, Sequence

from ..core.calibration import calibrate_scores
from ..core.labelmap import LabelMap, tag_types
from ..core.record import Sentence
from ..errors import ModelError
from ..model import casing
from ..model.loading import load_model, refuse_custom_code, resolve_model
from ..model.settings import NERBATCH_CONFIG, ModelSettings, read_folder_settings, read_model_config, settings_for
from .align import (
    Feature,
    PieceCache,
    Rows,
    block_rows,
    enough,
    features_for,
    from_sentence,
    in_context,
    rows_of_features,
    split_blocks,
)
from .backends import RUNTIMES, batch_sizes, compile_wanted, load_backend, upgrade
from .batching import BLOCK_BYTES, DEFAULT_BLOCK, background, chunked, plan_batches
from .decode import DECODERS, Decoder
from .precision import AUTO, resolve_precision

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "Tagger", "TaggerOptions", "PreparedBlock", "PRECISIONS", "NERBATCH_CONFIG", "read_model_config",
    "load_model", "refuse_custom_code",
]

PRECISIONS = ("fp32", "bf16", "fp16", "int8")


@dataclass(frozen=True)
class TaggerOptions:
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", "cuda:1"
    precision: str = AUTO  # or one of PRECISIONS; "auto": this machine's measured choice (nerbatch.tagging.precision)
    max_length: int | None = None  # default: what the model was trained with, else its limit (<= 512)
    stride: int | None = None  # window step for long sentences, in subwords (default: half a window)
    context: bool | None = None  # document context; default: what the model was trained with
    batch_tokens: int | None = None  # padded tokens per batch (default: nerbatch.tagging.batching.DEFAULT_BATCH)
    max_batch: int | None = None  # rows per batch (default: nerbatch.tagging.batching.DEFAULT_BATCH)
    block: int = DEFAULT_BLOCK  # sentences sorted and batched together (a bounded window of the stream)
    block_bytes: int = BLOCK_BYTES  # ... fewer when they hold more data (nerbatch.record.sentence_bytes)
    threads: int | None = None  # torch intra-op threads on CPU
    compile: bool | None = None  # compiled CPU model (nerbatch.tagging.compiled); None: $NERBATCH_COMPILE, else auto
    runtime: str = "torch"  # "onnx": fp32 on ONNX Runtime (nerbatch.tagging.onnx_fp32); int8 always runs there
    verbose: bool = False  # one-line notices on stderr (compiling, falling back)
    decode: str = "viterbi"  # "viterbi": the best tag sequence the label set's scheme allows; "argmax": each word on its own
    cache_dir: str | None = None  # where compiled and int8 copies are kept; None: nerbatch.model.cache.default_cache_dir()
    label_map: LabelMap | None = None  # predicted types renamed, merged or dropped (nerbatch.core.labelmap)
    raw_scores: bool = False  # leave entity scores uncalibrated even when the model has a map (what `calibrate` fits on)


@dataclass
class PreparedBlock:
    """A block ready for the model: its sentences, their model rows and the batch plan."""

    sentences: list[Sentence]
    rows: Rows
    batches: list[list[int]] = field(default_factory=list)


class ModelInputs(NamedTuple):
    """One batch as the model takes it (int64 ``(rows, width)`` arrays: ids, attention mask, the casing
    type ids or None) and its word positions: ``(rows[i], cols[i])`` is block word ``words[i]``'s first subword."""

    ids: "np.ndarray"
    mask: "np.ndarray"
    types: "np.ndarray | None"
    rows: "np.ndarray"
    cols: "np.ndarray"
    words: "np.ndarray"


def _word_starts(sents: Sequence[Sentence]) -> "np.ndarray":
    """Each sentence's first word in a block's words, and the block's word count last."""
    import numpy as np

    start = np.zeros(len(sents) + 1, dtype=np.int64)
    np.cumsum(np.fromiter((len(s.tokens) for s in sents), dtype=np.int64, count=len(sents)), out=start[1:])
    return start


def round4(scores) -> list[float]:
    """``[round(p, 4) for p in scores]`` in one numpy call, for probabilities that are float32 values
    (as the back-ends give them, also when held in float64): such a value times 10,000 is exact in
    float64 (24 + 14 significant bits), so numpy's rint-and-divide rounds exactly as Python's
    ``round`` does (half to even on the exact value, then the nearest double). Other values: ``round``."""
    import numpy as np

    arr = np.asarray(scores, dtype=np.float64)
    if np.array_equal(arr, arr.astype(np.float32), equal_nan=True):
        return np.round(arr, 4).tolist()
    return [round(p, 4) for p in arr.tolist()]


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
    done so far (for the run's log); ``stage_seconds`` the seconds of each stage so far: ``prepare``
    (word pieces, context, windows, batch plans, batch tensors; partly in the background thread, so
    not wall time), ``model`` (the back-end's forward) and ``decode``.
    """

    def __init__(self, model: str, options: TaggerOptions = TaggerOptions()) -> None:
        if options.precision not in PRECISIONS and options.precision != AUTO:
            raise ModelError(f"unknown precision {options.precision!r}", hint=f"use one of {AUTO}, {', '.join(PRECISIONS)}")
        if options.runtime not in RUNTIMES:
            raise ModelError(f"unknown runtime {options.runtime!r}", hint=f"use one of {', '.join(RUNTIMES)}")
        if options.decode not in DECODERS:
            raise ModelError(f"unknown decoder {options.decode!r}", hint=f"use one of {', '.join(DECODERS)}")
        from ..io.remote import is_url

        if is_url(model):  # a model folder in object storage: loaded from its copy in the cache
            from ..model.cache import fetch_model

            model = fetch_model(model)
        self.model_name = model
        self.options = options
        self.forward_seconds = 0.0
        self.tokens_seen = 0
        self.padded_tokens = 0
        self.sentences_tagged = 0
        self.stage_seconds = {"prepare": 0.0, "model": 0.0, "decode": 0.0}
        self.backend = None
        self._decoder: Decoder | None = None
        self._pieces: PieceCache | None = None
        self._settings: ModelSettings | None = None
        self._text_cutting: tuple[str, str] | None = None
        if resolve_model(model):  # a local folder: the settings come from its JSON files
            self._settings = read_folder_settings(
                model, max_length=options.max_length, context=options.context, stride=options.stride
            )
        # "auto" -> the precision measured fastest here, before anything reads options.precision
        self.options, self.precision_choice = resolve_precision(model, options)
        if self._settings is not None:
            self.check_label_map()

    def check_label_map(self) -> None:
        """Refuse a label map that names a type this model does not tag (exit 2, at the map's line)."""
        if self.options.label_map is not None:
            self.options.label_map.check_sources(tag_types(self.labels), f"the model {self.model_name} does not have")

    @classmethod
    def from_pretrained(cls, model: str, **options) -> "Tagger":
        """A tagger for ``model`` (a folder from ``nerbatch train``, or a hub id); ``options`` are
        :class:`TaggerOptions` fields (``precision="fp32"``, ``device="cpu"``, ``decode="argmax"``, ...).
        The model loads on first use."""
        return cls(model, TaggerOptions(**options))

    def tag(self, texts: Sequence[str] | str) -> list:
        """Tag raw texts: each is cut into words and sentences as the model's training text was (else
        CoNLL-style words, split into sentences), its sentences tagged as one document. Returns one
        :class:`~nerbatch.tagging.texts.Tagged` per text (words, tags, scores, entities with offsets)."""
        from .texts import results, sentences_of_text

        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"Tagger.tag takes strings, not {type(text).__name__}: "
                                "use tag_tokens for word lists, tag_sentences for Sentence streams")
        layout, words = self.text_cutting()
        docs = [sentences_of_text(text, i, layout, words) for i, text in enumerate(texts)]
        tagged = iter(self.tag_sentences([s for doc in docs for s in doc]))
        return [results(text, [next(tagged) for _ in doc]) for text, doc in zip(texts, docs)]

    def tag_tokens(self, sentences: Sequence[Sequence[str]]) -> list:
        """Tag sentences already split into words; each stands alone. Returns one
        :class:`~nerbatch.tagging.texts.Tagged` per sentence (entity offsets into the words joined by spaces)."""
        from .texts import results, sentences_of_tokens

        docs = [sentences_of_tokens(words, i) for i, words in enumerate(sentences)]
        tagged = iter(self.tag_sentences([s for doc in docs for s in doc]))
        return [results(" ".join(doc[0].tokens), [next(tagged)]) for doc in docs]

    def text_cutting(self) -> tuple[str, str]:
        """How raw text is cut for this model: (layout, word splitter), as recorded at training time
        (read from nerbatch.json once)."""
        if self._text_cutting is None:
            from ..io import ReadOptions
            from ..io.text import apply_contract
            from ..model.settings import read_model_config, text_contract

            options, _ = apply_contract(ReadOptions(), text_contract(read_model_config(self.model_name)), ["jsonl"])
            self._text_cutting = (options.layout_for("jsonl"), options.tokenizer)
        return self._text_cutting

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
        """Load the back-end (:func:`nerbatch.tagging.backends.load_backend`), once."""
        if self.backend is not None:
            return
        max_length = self._settings.max_length if self._settings else self.options.max_length
        casing = self._settings is not None and self._settings.casing == "shape"
        self.use_backend(load_backend(self.model_name, self.options, max_length=max_length, token_types=casing))

    def use_backend(self, backend) -> None:
        """Run with ``backend`` (what :meth:`load` loads; a feeding worker's
        :class:`~nerbatch.tagging.backends.FeedBackend`): the settings of a hub id come from it, the
        batch sizes from its device."""
        if self._settings is None:
            self._settings = settings_for(
                self.model_name, list(backend.labels), backend.positions, backend.tokenizer_max, {},
                max_length=self.options.max_length, context=self.options.context, stride=self.options.stride,
            )
            self.check_label_map()
        if self._settings.max_length > backend.max_width:
            raise ModelError(
                f"{self.model_name}: max_length {self._settings.max_length} exceeds the widest row the "
                f"{backend.kind} model takes ({backend.max_width} subwords)"
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
        """Whether this run uses a compiled model (see :func:`nerbatch.tagging.backends.compile_wanted`)."""
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
        t0 = time.perf_counter()
        budget = self.context_budget()
        if budget:  # a side cut short must still hold a full budget of subwords
            for side, cut, where in ((left, left_cut, "left"), (right, right_cut, "right")):
                if cut and int(self.pieces.flat([s.tokens for s in side])[1].sum()) < budget:
                    sent = core[0] if where == "left" else core[-1]
                    raise AssertionError(f"{sent.path}:{sent.line}: not enough {where} context carried")
        if budget and any(s.doc_id is None and s.tokens for s in chain(left, core, right)):
            return self.prepare_features(core, left, right)  # sentences outside any document: the general path
        out = []
        size = self.options.block
        for i in range(0, len(core), size):  # sort blocks, each with the neighbours its context needs
            part = core[i : i + size]
            before = enough([*left, *core[:i]], budget, backwards=True) if budget else []
            after = enough([*core[i + size :], *right], budget) if budget else []
            items = [*before, *part, *after]
            rows = block_rows(
                items, range(len(before), len(before) + len(part)), self.pieces, self.backend.specials,
                self.max_length, self.settings.stride, budget,
            )
            lengths = rows.lengths(self.backend.specials).tolist()
            out.append(PreparedBlock(list(part), rows, plan_batches(lengths, self.batch_tokens, self.max_batch)))
        self.stage_seconds["prepare"] += time.perf_counter() - t0
        return out

    def prepare_features(
        self, core: Sequence[Sentence], left: Sequence[Sentence] = (), right: Sequence[Sentence] = ()
    ) -> list[PreparedBlock]:
        """:meth:`prepare` through :func:`~nerbatch.tagging.align.in_context` and
        :func:`~nerbatch.tagging.align.features_for`, sentence by sentence: for streams where some
        sentences have no document (the flat arrays of :func:`~nerbatch.tagging.align.block_rows` assume one)."""
        t0 = time.perf_counter()
        backend = self.backend
        budget = self.context_budget()
        items = [*left, *core, *right]
        ctx = list(in_context(items, self.pieces_of, budget))[len(left) : len(left) + len(core)]
        out = []
        for block in chunked(ctx, self.options.block):
            feats: list[Feature] = []
            base = 0  # words are numbered across the block
            for k, (sent, p, lc, rc) in enumerate(block):
                for f in features_for(k, p, backend.specials, self.max_length, self.settings.stride, lc, rc):
                    feats.append(Feature(f.sent, f.input_ids, f.positions, [base + w for w in f.words]))
                base += len(sent.tokens)
            rows = rows_of_features(feats, backend.specials)
            batches = plan_batches(rows.lengths(backend.specials).tolist(), self.batch_tokens, self.max_batch)
            out.append(PreparedBlock([b[0] for b in block], rows, batches))
        self.stage_seconds["prepare"] += time.perf_counter() - t0
        return out

    @property
    def pieces(self) -> PieceCache:
        """The word pieces of the words seen so far (:class:`~nerbatch.tagging.align.PieceCache`)."""
        if self._pieces is None:
            self._pieces = PieceCache(self.pieces_of)
        return self._pieces

    def pieces_of(self, batch: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        """The word pieces of each word of each sentence, as the model takes them: with each word's
        shape in the ids for a model trained with casing (:func:`nerbatch.model.casing.mark`, as training does)."""
        pieces = self.backend.word_pieces(batch)
        return casing.mark(pieces, batch) if self.settings.casing == "shape" else pieces

    def run(self, prepared: PreparedBlock) -> list[Sentence]:
        """Predict every batch of a prepared block, then decode the block's words at once (each
        sentence's ``pred``, ``scores``)."""
        inputs = (self.model_inputs(prepared.rows, batch) for batch in prepared.batches)  # one batch's arrays at a time
        return self.finish(prepared, self.predict_block(inputs, prepared.sentences))

    def model_inputs(self, block: Rows, batch: Sequence[int]) -> "ModelInputs":
        """What the model takes for one batch of a block's rows, and where its word positions go."""
        import numpy as np

        t0 = time.perf_counter()
        backend = self.backend
        rows = np.asarray(batch, dtype=np.int64)
        ids, mask = block.matrix(rows, backend.specials, backend.pad_id)
        row_a, cols_a, words = block.take(rows)
        self.tokens_seen += int(mask.sum())
        self.padded_tokens += ids.size
        types = None
        if self.settings.casing == "shape":
            ids, types = casing.split(ids)
        self.stage_seconds["prepare"] += time.perf_counter() - t0
        return ModelInputs(ids, mask, types, row_a, cols_a, words)

    def predict_block(self, inputs: Iterable["ModelInputs"], sents: Sequence[Sentence]) -> "np.ndarray":
        """The label probabilities of every word of a prepared block's sentences (words x labels,
        float32), from the model run on each batch's inputs (:meth:`model_inputs`); each word predicted
        once (checked)."""
        import numpy as np

        if getattr(self.backend, "pending", None) is not None:  # a compiled copy building in the background
            compiled_backend = upgrade(self.backend, self.options)
            if compiled_backend is not None:
                self.backend = compiled_backend
        start = _word_starts(sents)
        probs = np.full((int(start[-1]), len(self.labels)), np.nan, dtype=np.float32)  # every word of the block
        seen = np.zeros(len(probs), dtype=np.int64)
        for batch in inputs:
            batch_probs = self.predict_inputs(batch)
            t0 = time.perf_counter()
            probs[batch.words] = batch_probs
            np.add.at(seen, batch.words, 1)  # (``seen[words] += 1`` would count a word twice in one batch once)
            self.stage_seconds["decode"] += time.perf_counter() - t0
        if (seen > 1).any():  # the core invariant: each word predicted at most once
            w = int(np.argmax(seen > 1))
            k = int(np.searchsorted(start, w, "right")) - 1
            raise AssertionError(f"{sents[k].path}:{sents[k].line}: word {w - int(start[k])} predicted twice")
        return probs

    def predict_inputs(self, batch: "ModelInputs"):
        """The back-end's label probabilities at one batch's word positions (positions x labels)."""
        t1 = time.perf_counter()
        probs = self.backend.predict(batch.ids, batch.mask, batch.rows, batch.cols, batch.types)
        t2 = time.perf_counter()
        self.forward_seconds += t2 - t1
        self.stage_seconds["model"] += t2 - t1
        return probs

    def finish(self, prepared: PreparedBlock, probs) -> list[Sentence]:
        """Decode a prepared block's word probabilities (:meth:`predict_block`) into each sentence's
        ``pred`` and ``scores``: the best tag sequences, calibrated scores, the label map."""
        import numpy as np

        t0 = time.perf_counter()
        sents = prepared.sentences
        start = _word_starts(sents)
        ids, scores = self.decoder.decode_block(probs, np.diff(start))
        names = np.array(self.decoder.tags, dtype=object)[ids].tolist()  # the labels as NER tags (LOC -> I-LOC)
        rounded = round4(scores)
        bounds = start.tolist()
        label_map = self.options.label_map
        calibration = None if self.options.raw_scores else self.settings.calibration
        for k, sent in enumerate(sents):
            a, b = bounds[k], bounds[k + 1]
            pred = names[a:b]
            sent.scores = rounded[a:b] if calibration is None else calibrate_scores(pred, rounded[a:b], calibration)
            sent.pred = pred if label_map is None else label_map.apply(pred)
        self.sentences_tagged += len(prepared.sentences)
        _trim_heap()
        self.stage_seconds["decode"] += time.perf_counter() - t0
        return prepared.sentences

    @property
    def decoder(self) -> Decoder:
        if self._decoder is None:
            self._decoder = Decoder(self.labels, self.options.decode)
        return self._decoder

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
        """Tag the ``core`` sentences (``pred``/``scores``) exactly as :meth:`tag_sentences` does in the whole
        stream, given the neighbours their document context needs (see :func:`~nerbatch.tagging.align.split_blocks`).

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

    def tag_sentences(self, sentences: Iterable[Sentence], skip: int = 0, block: int | None = None) -> Iterator[Sentence]:
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

        for ready in background(prepared):
            yield from self.run(ready)
