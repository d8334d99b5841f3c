"""Model back-ends behind one small interface: word pieces in, label ids and scores out.

The tagging pipeline (:mod:`nerbatch.tagging.tagger`) only ever talks to a :class:`Backend`:

* ``word_pieces(batch)``: the subword ids of each word of each pre-split sentence;
* ``predict(ids, mask, rows, cols, types=None)``: for a padded batch (int64 numpy arrays), the
  label probabilities (float32 numpy, positions x labels) at each ``(rows[i], cols[i])`` position
  (a word's first subword); ``types`` are the token type ids of a model trained with casing
  (:mod:`nerbatch.model.casing`), None otherwise; decoding them into tags is the pipeline's job
  (:mod:`nerbatch.tagging.decode`), the same for every back-end.

Three implementations: :class:`TorchBackend` runs a torch callable (the eager transformers model,
or the AOTInductor package of :mod:`nerbatch.tagging.compiled`), :class:`OnnxBackend` runs an ONNX Runtime
model: the int8 copy of :mod:`nerbatch.tagging.int8`, or the fp32 copy of :mod:`nerbatch.tagging.onnx_fp32`
(``--runtime onnx``). :func:`load_backend` picks one for a model and the run's options, using the cache
(:mod:`nerbatch.model.cache`) where it can: a cached compiled entry loads with torch alone, a cached
ONNX entry with neither torch nor transformers.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from typing import Protocol, Sequence

from ..errors import ModelError
from ..model.casing import SHAPES
from ..model.loading import load_model
from ..model.settings import read_json
from .align import Specials, word_pieces
from .batching import DEFAULT_BATCH

__all__ = [
    "Backend", "TorchBackend", "OnnxBackend", "FeedBackend", "load_backend", "compile_wanted", "batch_sizes",
    "upgrade", "onnx_kind", "RUNTIMES",
]


class Backend(Protocol):
    """What the tagging pipeline needs from a model."""

    labels: list[str]
    specials: Specials
    pad_id: int
    device: str  # "cpu", "cuda", "cuda:1"
    kind: str  # "eager", "compiled", "int8" or "onnx" (fp32 on ONNX Runtime): for notices and the run's log
    max_width: int  # longest row the model takes, in subwords

    def word_pieces(self, batch: Sequence[Sequence[str]]) -> list[list[list[int]]]: ...

    def predict(self, ids, mask, rows, cols, types=None): ...  # -> float32 numpy (positions, labels)


@dataclass
class TorchBackend:
    """A torch callable ``forward(input_ids, attention_mask, token_type_ids) -> logits`` and its
    tokenizer (``token_type_ids`` None: the model's default)."""

    forward: object
    tokenizer: object
    labels: list[str]
    specials: Specials
    pad_id: int
    device: str
    kind: str
    max_width: int
    positions: int = 512  # the model's position embeddings (for a hub id's settings)
    tokenizer_max: int = 512  # the tokenizer's model_max_length
    pending: object = None  # a compiled.BackgroundBuild to swap in when ready (see upgrade())

    def word_pieces(self, batch: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        return word_pieces(self.tokenizer, batch)

    def predict(self, ids, mask, rows, cols, types=None):
        import torch

        dev = torch.device(self.device)
        # A batch without padding (most of them: rows are batched by length) goes without a mask: the
        # model then builds none (transformers' 4-D mask building took 20% of a tiny model's forward
        # here); the logits are the same bits (tested in fp32 and bf16).
        full = self.kind == "eager" and bool(mask.all())  # (a compiled package always takes its mask)
        t_ids, t_mask = torch.from_numpy(ids), None if full else torch.from_numpy(mask)
        t_types = None if types is None else torch.from_numpy(types)
        if dev.type == "cuda":
            t_ids = t_ids.pin_memory().to(dev, non_blocking=True)
            if t_mask is not None:
                t_mask = t_mask.pin_memory().to(dev, non_blocking=True)
            if t_types is not None:
                t_types = t_types.pin_memory().to(dev, non_blocking=True)
        with torch.inference_mode():
            logits = self.forward(t_ids, t_mask, t_types)
            picked = logits[torch.from_numpy(rows).to(dev), torch.from_numpy(cols).to(dev)]
            return picked.float().softmax(-1).cpu().numpy()


@dataclass
class OnnxBackend:
    """An ONNX Runtime session (int8, or fp32 with ``--runtime onnx``) run on numpy arrays; torch is never imported."""

    session: object
    tokenizer: object
    labels: list[str]
    specials: Specials
    pad_id: int
    max_width: int
    device: str = "cpu"
    kind: str = "int8"
    positions: int = 512
    tokenizer_max: int = 512

    def word_pieces(self, batch: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        return word_pieces(self.tokenizer, batch)

    def predict(self, ids, mask, rows, cols, types=None):
        import numpy as np

        from .int8 import run_session

        logits = run_session(self.session, ids, mask, types)
        picked = logits[rows, cols].astype(np.float32)
        picked = np.exp(picked - picked.max(-1, keepdims=True))
        return (picked / picked.sum(-1, keepdims=True)).astype(np.float32)


@dataclass
class FeedBackend:
    """What a feeding worker (:mod:`nerbatch.tagging.pool`, one model in the reading process) has of
    that process's back-end: its tokenizer, specials, labels and device (for the same batch plans), no
    model. Made with :meth:`of`, pickled to the workers; its tokenizer is the Rust tokenizer alone where
    there is one (:class:`~nerbatch.tagging.compiled.RawTokenizer`: a worker never imports transformers)."""

    tokenizer: object
    labels: list[str]
    specials: Specials
    pad_id: int
    max_width: int
    device: str
    kind: str  # the model's back-end kind, in the reading process
    positions: int = 512
    tokenizer_max: int = 512

    @classmethod
    def of(cls, backend) -> "FeedBackend":
        from .compiled import RawTokenizer

        tokenizer = backend.tokenizer
        if not isinstance(tokenizer, RawTokenizer) and getattr(tokenizer, "backend_tokenizer", None) is not None:
            tokenizer = RawTokenizer.of(tokenizer)
        return cls(tokenizer, list(backend.labels), backend.specials, backend.pad_id, backend.max_width,
                   str(backend.device), backend.kind, backend.positions, backend.tokenizer_max)

    def word_pieces(self, batch: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        return word_pieces(self.tokenizer, batch)

    def predict(self, ids, mask, rows, cols, types=None):
        raise RuntimeError("a feeding worker has no model: the reading process runs it")


# -- choosing a back-end ----------------------------------------------------------------------------


def compile_wanted(model: str, precision: str, want: bool | None, cuda: bool = False) -> bool:
    """Whether a run uses a compiled model (see :mod:`nerbatch.tagging.compiled`).

    ``want`` True/False decides; None reads ``$NERBATCH_COMPILE`` (0/1), else auto: a local model
    folder tagged in fp32 or bf16 on the CPU, with a C++ compiler present.
    """
    from .compiled import COMPILE_PRECISIONS, compiler_available

    explicit = want
    if want is None:
        env = os.environ.get("NERBATCH_COMPILE", "").strip().lower()
        want = None if env in ("", "auto") else env not in ("0", "no", "false", "off")
    fits = os.path.isdir(model) and precision in COMPILE_PRECISIONS and not cuda
    if want and not fits:
        if explicit:
            raise ModelError(
                "--compile applies to a local model folder in fp32 or bf16 on the CPU",
                hint="drop --compile, or use --device cpu with --precision fp32/bf16",
            )
        return False
    if want is None:
        return fits and compiler_available()
    return want


def _notice(verbose: bool, text: str) -> None:
    if verbose:
        print(f"nerbatch: {text}", file=sys.stderr, flush=True)


def _cached(model: str, precision: str, cache: str, threads: int | None, verbose: bool, token_types: bool,
            max_length: int | None = None):
    """The back-end of a cached entry, or None (none there, a damaged one, or one built for rows
    narrower than ``max_length`` subwords: removed, rebuilt by the caller)."""
    from ..model.cache import entry_key, find_entry

    entry = find_entry(cache, entry_key(model, precision), precision)
    if entry is None:
        return None
    try:
        meta = entry.meta
        if bool(meta.get("token_types")) != token_types:
            raise ModelError("built for other model inputs (token type ids)")
        if max_length and meta["max_width"] < max_length:
            raise ModelError(f"built for rows of at most {meta['max_width']} subwords, {max_length} asked")
        return _from_entry(entry, threads)
    except Exception as exc:  # noqa: BLE001 - a damaged or too narrow entry: rebuilt by the caller
        _notice(verbose, f"the cached {_KIND[precision]} model {entry.folder} cannot be used ({exc}); rebuilding it")
        shutil.rmtree(entry.folder, ignore_errors=True)
        return None


_KIND = {"int8": "int8", "onnx": "onnx", "fp32": "compiled", "bf16": "compiled"}  # what a cache entry of a precision holds


def _from_entry(entry, threads: int | None):
    from ..model.cache import ONNX_KINDS
    from . import compiled

    meta = entry.meta
    tokenizer = compiled.RawTokenizer(entry.tokenizer, meta["pad_id"])
    common = {
        "tokenizer": tokenizer,
        "labels": list(meta["labels"]),
        "specials": Specials(tuple(meta["prefix"]), tuple(meta["suffix"])),
        "pad_id": meta["pad_id"],
        "max_width": meta["max_width"],
    }
    if meta["precision"] in ONNX_KINDS:
        from .int8 import open_session

        return OnnxBackend(session=open_session(entry.package, threads), kind=_KIND[meta["precision"]], **common)
    model = compiled.CompiledModel(entry.package, meta)
    return TorchBackend(forward=model, device="cpu", kind="compiled", **common)


def load_backend(model: str, options, max_length: int | None = None, token_types: bool = False):
    """The back-end for ``model`` under ``options`` (a :class:`~nerbatch.tagging.tagger.TaggerOptions`);
    ``token_types``: the model takes casing ids (:mod:`nerbatch.model.casing`), compiled and int8 copies too.

    Order: a cached int8 entry (no torch); torch, then a cached compiled entry (no transformers);
    else the transformers model, compiled into the cache when compiling is wanted, quantized to
    int8 for ``--precision int8``, or placed on the device as it is.
    """
    from ..model.cache import default_cache_dir

    precision = options.precision
    local = os.path.isdir(model)
    cache = options.cache_dir or default_cache_dir()
    onnx = onnx_kind(options)  # "int8", "onnx" (fp32 on ONNX Runtime) or None (torch)
    if onnx and options.device.startswith("cuda"):
        what = "--precision int8" if onnx == "int8" else "--runtime onnx"
        raise ModelError(f"{what} runs on the CPU only", hint="use --device cpu, or --runtime torch with bf16/fp16 on a GPU")
    if onnx and local and options.device in ("auto", "cpu"):
        found = _cached(model, onnx, cache, options.threads, options.verbose, token_types, max_length)
        if found is not None:
            return found
    import torch

    if options.threads:
        torch.set_num_threads(options.threads)
    dev = options.device
    if dev == "auto":
        dev = "cuda" if onnx is None and torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda: no CUDA device is available", hint="use --device cpu")
    gpu = dev.startswith("cuda")
    if precision == "fp16" and not gpu:
        raise ModelError("--precision fp16 needs a GPU", hint="use fp32 or bf16 on CPU")
    # (int8 is never compiled: an explicit --compile with it is refused there; --runtime onnx's was, in onnx_kind)
    compile_it = onnx != "onnx" and compile_wanted(model, precision, options.compile, cuda=gpu)
    pending = None
    if compile_it:
        found = _cached(model, precision, cache, options.threads, options.verbose, token_types, max_length)
        if found is not None:
            return found
        if options.compile is None and os.environ.get("NERBATCH_COMPILE_WAIT", "") not in ("1", "yes", "true"):
            from . import compiled

            # auto: never make this run wait for the compiler (see compiled.build_in_background)
            try:
                pending = compiled.build_in_background(model, precision, cache, _width(model, max_length), token_types)
                compile_it = False
                _notice(options.verbose, "compiling the model for this CPU in the background (cached for the next "
                        f"runs in {cache}); tagging starts now with the uncompiled model")
            except OSError as exc:  # an unwritable cache, no fork: compile here as before
                _notice(options.verbose, f"cannot compile in the background ({exc}); compiling now")
    tokenizer, net = load_model(model)
    if token_types and (getattr(net.config, "type_vocab_size", 0) or 0) < SHAPES:
        raise ModelError(
            f"{model}: nerbatch.json says the model takes casing ids, but config.json has "
            f"type_vocab_size {getattr(net.config, 'type_vocab_size', None)} (needs {SHAPES})",
            hint="the folder was changed after training; retrain it",
        )
    labels = [net.config.id2label[i] for i in range(net.config.num_labels)]
    specials = Specials.of(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    positions = getattr(net.config, "max_position_embeddings", 512) or 512
    width = min(512, max(positions, max_length or 0))
    if compile_it:
        from . import compiled

        _notice(options.verbose, f"compiling the model for this CPU, once (about 20 s); cached in {cache}")
        try:
            entry = compiled.build(model, precision, tokenizer, net, specials, cache, max_width=width, token_types=token_types)
            return _from_entry(entry, options.threads)
        except compiled.CompileError as exc:
            _notice(options.verbose, f"running the model uncompiled: {exc}")
    if onnx:
        from .int8 import open_session, quantize_int8
        from .onnx_fp32 import onnx_fp32

        # the ONNX graph has a dynamic sequence axis: the entry takes any row the model does
        build = quantize_int8 if onnx == "int8" else onnx_fp32
        path = build(net.eval(), model if local else None, tokenizer, specials, cache, width, token_types)
        return OnnxBackend(
            session=open_session(path, options.threads), tokenizer=tokenizer, labels=labels, specials=specials,
            pad_id=pad_id, max_width=width, positions=positions, tokenizer_max=tokenizer.model_max_length, kind=onnx,
        )
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    net.to(device=torch.device(dev), dtype=dtype)
    net.eval()
    return TorchBackend(
        forward=logits_of(net), tokenizer=tokenizer, labels=labels, specials=specials, pad_id=pad_id, device=dev,
        kind="eager", max_width=width, positions=positions, tokenizer_max=tokenizer.model_max_length, pending=pending,
    )


RUNTIMES = ("torch", "onnx")
ONNX_PRECISIONS = ("fp32", "int8")


def onnx_kind(options) -> str | None:
    """Which ONNX Runtime copy a run uses: "int8" (``--precision int8``, always ONNX Runtime), "onnx"
    (fp32 with ``--runtime onnx``), else None (torch). Refuses what ONNX Runtime does not run here."""
    if options.precision == "int8":
        return "int8"
    if options.runtime == "torch":
        return None
    if options.precision not in ONNX_PRECISIONS:
        raise ModelError(f"--runtime onnx runs fp32 or int8, not {options.precision}",
                         hint="use --precision fp32 or int8 with --runtime onnx, or --runtime torch")
    if options.compile:
        raise ModelError("--compile builds a torch package; --runtime onnx runs its own exported copy",
                         hint="drop --compile, or use --runtime torch")
    return "onnx"


def logits_of(net):
    """``forward(input_ids, attention_mask, token_type_ids=None) -> logits`` of a transformers token
    classifier: the callable a :class:`TorchBackend` runs (casing ids passed only when given)."""

    def forward(ids, mask, types=None):
        if types is None:  # (not every architecture takes token_type_ids at all)
            return net(input_ids=ids, attention_mask=mask).logits
        return net(input_ids=ids, attention_mask=mask, token_type_ids=types).logits

    return forward


def _width(model: str, max_length: int | None) -> int:
    """The widest row a compiled copy takes: the model's positions (from its config.json), at most 512."""
    positions = read_json(os.path.join(model, "config.json")).get("max_position_embeddings") or 512
    return min(512, max(positions, max_length or 0))


def upgrade(backend, options):
    """The compiled back-end that a background build of ``backend``'s model has finished, or None
    (none pending, not ready yet, or failed: then the pending build is dropped and the run stays eager)."""
    pending = getattr(backend, "pending", None)
    if pending is None:
        return None
    entry = pending.ready()
    if entry is None:
        if not pending.running():
            backend.pending = None
            from .compiled import log_path

            _notice(options.verbose, "the background compile did not finish (see "
                    f"{log_path(pending.cache_dir, pending.key)}); running uncompiled")
        return None
    backend.pending = None
    try:
        if bool(entry.meta.get("token_types")) != pending.token_types:
            raise ModelError("built for other model inputs (token type ids)")
        found = _from_entry(entry, options.threads)
    except Exception as exc:  # noqa: BLE001 - a damaged entry: stay eager (the next run rebuilds it)
        _notice(options.verbose, f"the compiled model {entry.folder} does not load ({exc}); running uncompiled")
        return None
    if found.max_width < backend.max_width:
        return None
    return found


def batch_sizes(options, device: str) -> tuple[int, int]:
    """(padded tokens per batch, rows per batch) for a device: the options, else the defaults."""
    gpu = device.startswith("cuda")
    tokens, rows = DEFAULT_BATCH["gpu" if gpu else "cpu"]
    return options.batch_tokens or tokens, options.max_batch or rows
