"""The tagger: loads a token-classification model and turns a sentence stream into tagged sentences.

``Tagger.tag`` keeps input order, gives every token exactly one tag, and streams: a background
thread reads, tokenises, builds windows/context and plans length-sorted batches for one block of
sentences while the model runs the previous block.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from itertools import chain, islice
from typing import Iterable, Iterator

from .align import Feature, Specials, assign, check_fast, features_for, with_context, word_pieces
from .batching import background, chunked, plan_batches
from .errors import ModelError
from .record import Sentence

NERBATCH_CONFIG = "nerbatch.json"
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


@dataclass(frozen=True)
class TaggerOptions:
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", "cuda:1"
    precision: str = "fp32"
    max_length: int | None = None  # default: what the model was trained with, else its limit (<= 512)
    stride: int | None = None  # window step for long sentences, in subwords (default: half a window)
    context: bool | None = None  # document context; default: what the model was trained with
    batch_tokens: int | None = None  # padded tokens per batch (default 4096 on CPU, 32768 on GPU)
    max_batch: int | None = None  # rows per batch (default 128 on CPU, 1024 on GPU)
    block: int = 2048  # sentences sorted together (bounded window of the stream)
    threads: int | None = None  # torch intra-op threads on CPU
    compile: bool | None = None  # compiled CPU model (nerbatch.compiled); None: $NERBATCH_COMPILE, else auto
    verbose: bool = False  # one-line notices on stderr (compiling, falling back)


def read_model_config(model: str) -> dict:
    """nerbatch's own settings saved beside a trained model (empty for other models)."""
    path = os.path.join(model, NERBATCH_CONFIG)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    return {}


def load_model(model: str):
    """Tokenizer and token-classification model from a folder or hub id, with clear errors."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    local = os.path.isdir(model)
    if not local and (os.sep in model and os.path.exists(os.path.dirname(model)) or model.startswith(".")):
        raise ModelError(f"{model}: model folder not found")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local)
    except Exception as exc:  # transformers raises OSError/ValueError/etc.
        raise ModelError(f"{model}: cannot load the tokenizer: {str(exc).splitlines()[0]}") from None
    check_fast(tokenizer, model)
    try:
        net = AutoModelForTokenClassification.from_pretrained(model, local_files_only=local)
    except Exception as exc:
        raise ModelError(f"{model}: cannot load a token-classification model: {str(exc).splitlines()[0]}") from None
    labels = [net.config.id2label[i] for i in range(net.config.num_labels)]
    if all(lab.startswith("LABEL_") for lab in labels):
        raise ModelError(
            f"{model}: the model config has no NER labels (id2label is LABEL_0, LABEL_1, ...)",
            hint="train one with `nerbatch train`, or set id2label in config.json",
        )
    return tokenizer, net


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


def _split(feats: list[Feature], labels: list[int], probs: list[float]) -> list[tuple[list[int], list[float]]]:
    """Per-feature (label ids, scores rounded to 4 places) from the flat predictions of a batch."""
    out = []
    k = 0
    for f in feats:
        n = len(f.positions)
        out.append((labels[k : k + n], [round(p, 4) for p in probs[k : k + n]]))
        k += n
    return out


class _CpuDevice:
    """Stands in for ``torch.device("cpu")`` where torch is not loaded (int8 from the cache)."""

    type = "cpu"
    index = None

    def __str__(self) -> str:
        return "cpu"


_CPU = _CpuDevice()


def _json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


class Tagger:
    """Tag sentences with a token-classification model.

    For a local model folder, settings (labels, window, context) come from its JSON files and the
    weights load on the first sentence to tag, so an empty input never pays for torch.
    """

    def __init__(self, model: str, options: TaggerOptions = TaggerOptions()) -> None:
        self.model_name = model
        self.options = options
        self.forward_seconds = 0.0
        self.tokens_seen = 0
        self.padded_tokens = 0
        self.loaded = False
        if options.precision not in PRECISIONS:
            raise ModelError(f"unknown precision {options.precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
        if not os.path.isdir(model):
            self.load()  # a hub id: nothing to read before loading
            return
        config = _json(os.path.join(model, "config.json"))
        if not config:
            raise ModelError(f"{model}: no config.json: not a transformers model folder")
        id2label = config.get("id2label") or {}
        self.labels = [id2label.get(str(i), f"LABEL_{i}") for i in range(len(id2label))]
        if not self.labels or all(lab.startswith("LABEL_") for lab in self.labels):
            raise ModelError(
                f"{model}: the model config has no NER labels (id2label is missing or LABEL_0, LABEL_1, ...)",
                hint="train one with `nerbatch train`, or set id2label in config.json",
            )
        tok_max = _json(os.path.join(model, "tokenizer_config.json")).get("model_max_length") or 512
        self._settings(config.get("max_position_embeddings") or 512, tok_max, read_model_config(model))

    def _settings(self, positions: int, tok_max: int, saved: dict) -> None:
        self.saved = saved
        limit = min(positions, tok_max if tok_max < 100_000 else 512, 512)
        self.max_length = self.options.max_length or saved.get("max_length") or limit
        if self.max_length > limit:
            raise ModelError(f"{self.model_name}: max_length {self.max_length} exceeds the model's limit of {limit}")
        self.context = saved.get("context", False) if self.options.context is None else self.options.context

    def compile_wanted(self, cuda: bool = False) -> bool:
        """Whether this run uses a compiled model (see :mod:`nerbatch.compiled`).

        ``TaggerOptions.compile`` True/False decides; None reads ``$NERBATCH_COMPILE`` (0/1), else
        auto: a local model folder tagged in fp32 or bf16 on the CPU, with a C++ compiler present.
        """
        from .compiled import COMPILE_PRECISIONS, compiler_available

        want = self.options.compile
        if want is None:
            env = os.environ.get("NERBATCH_COMPILE", "").strip().lower()
            want = None if env in ("", "auto") else env not in ("0", "no", "false", "off")
        fits = os.path.isdir(self.model_name) and self.options.precision in COMPILE_PRECISIONS and not cuda
        if want and not fits:
            if self.options.compile:
                raise ModelError(
                    "--compile applies to a local model folder in fp32 or bf16 on the CPU",
                    hint="drop --compile, or use --device cpu with --precision fp32/bf16",
                )
            return False
        if want is None:
            return fits and compiler_available()
        return want

    def _notice(self, text: str) -> None:
        if self.options.verbose:
            print(f"nerbatch: {text}", file=sys.stderr, flush=True)

    def load(self) -> None:
        """Import torch, load tokenizer and weights, place them on the device.

        With a compiled model in the cache only torch is imported (not transformers); without one,
        the model loads through transformers and, where compiling is wanted, is compiled into the
        cache for the next runs.
        """
        if self.loaded:
            return
        options = self.options
        if options.precision == "int8" and options.device in ("auto", "cpu") and os.path.isdir(self.model_name):
            if self._load_int8_entry():  # neither torch nor transformers needed
                return
        import torch

        if options.threads:
            torch.set_num_threads(options.threads)
        dev = options.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError("--device cuda: no CUDA device is available", hint="use --device cpu")
        self.device = torch.device(dev)
        gpu = self.device.type == "cuda"
        self._batch_sizes(gpu)
        self.compiled = False
        compile_it = self.compile_wanted(cuda=gpu)
        # int8 on the CPU: the quantized model is cached per model folder as well (no compiler needed)
        int8_entry = options.precision == "int8" and not gpu and os.path.isdir(self.model_name)
        cache = None
        if compile_it or int8_entry:
            from . import compiled
            from .quantize import default_cache_dir

            cache = default_cache_dir()
            if compile_it and self._use_entry(cache):
                return
        self.tokenizer, self.model = load_model(self.model_name)
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        if not hasattr(self, "max_length"):
            self._settings(getattr(self.model.config, "max_position_embeddings", 512) or 512, self.tokenizer.model_max_length, {})
        self.specials = Specials.of(self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        if options.precision == "fp16" and not gpu:
            raise ModelError("--precision fp16 needs a GPU", hint="use fp32 or bf16 on CPU")
        if compile_it:
            from .compiled import CompileError

            self._notice(f"compiling the model for this CPU, once (about 20 s); cached in {cache}")
            try:
                positions = getattr(self.model.config, "max_position_embeddings", 512) or 512
                entry = compiled.build(self.model_name, options.precision, self.tokenizer, self.model, self.specials, cache,
                                       max_width=min(512, max(positions, self.max_length)))
                self._use_compiled(entry)
                return
            except CompileError as exc:
                self._notice(f"running the model uncompiled: {exc}")
        if options.precision == "int8":
            if gpu:
                raise ModelError("--precision int8 runs on the CPU only", hint="use --device cpu, or bf16/fp16 on a GPU")
            from .quantize import quantize_int8

            self.model = quantize_int8(self.model.eval(), threads=options.threads)
            if int8_entry and self.model.path:
                try:  # so the next run starts without transformers
                    compiled.save_int8(self.model_name, cache, self.tokenizer, self.model, self.specials, self.model.path,
                                       max_width=self.max_length)
                except compiled.CompileError:
                    pass
        else:
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[options.precision]
            self.model.to(device=self.device, dtype=dtype)
            self.model.eval()
        self.loaded = True

    def _load_int8_entry(self) -> bool:
        """Load a cached int8 entry without importing torch; False when there is none (or it is damaged)."""
        from .quantize import default_cache_dir

        if not self._use_entry(default_cache_dir()):
            return False
        self.device = _CPU
        self._batch_sizes(gpu=False)
        return True

    def _batch_sizes(self, gpu: bool) -> None:
        self.batch_tokens = self.options.batch_tokens or (32768 if gpu else 4096)
        self.max_batch = self.options.max_batch or (1024 if gpu else 128)

    def _use_entry(self, cache: str) -> bool:
        """Use the cached entry (nerbatch.compiled) for this model and precision; False when there is
        none, or when it does not load (it is removed then, and the caller rebuilds it)."""
        import shutil

        from . import compiled

        entry = compiled.find(self.model_name, self.options.precision, cache)
        if entry is None:
            return False
        try:
            self._use_compiled(entry)
            return True
        except Exception as exc:  # noqa: BLE001 - a damaged entry: rebuilt by the caller
            self._notice(f"the cached model {entry.folder} does not load ({exc}); rebuilding it")
            shutil.rmtree(entry.folder, ignore_errors=True)
            return False

    def _use_compiled(self, entry) -> None:
        from . import compiled

        model, tokenizer, meta = compiled.load(entry, threads=self.options.threads)
        if self.max_length > meta["max_width"]:
            raise ModelError(f"{self.model_name}: max_length {self.max_length} exceeds the compiled model's {meta['max_width']}")
        self.model, self.tokenizer = model, tokenizer
        self.labels = list(meta["labels"])
        self.specials = Specials(tuple(meta["prefix"]), tuple(meta["suffix"]))
        self.pad_id = meta["pad_id"]
        self.compiled = meta["precision"] != "int8"  # int8 entries are ONNX Runtime models, not compiled
        self.loaded = True

    # -- producer side (background thread) -------------------------------------------------
    def _jobs(
        self, sentences: Iterable[Sentence], skip: int = 0
    ) -> Iterator[tuple[list[Sentence], list[Feature], list[list[int]]]]:
        tok = self.tokenizer
        body = self.max_length - len(self.specials)
        budget = body if self.context else 0

        def pieces() -> Iterator[tuple[Sentence, list[list[int]]]]:
            for chunk in chunked(sentences, 256):
                yield from zip(chunk, word_pieces(tok, [s.tokens for s in chunk]))

        stream = with_context(pieces(), budget)
        if skip:  # already done (resume): still read, for the context of what follows
            stream = islice(stream, skip, None)
        for block in chunked(stream, self.options.block):
            feats: list[Feature] = []
            for k, (_sent, p, left, right) in enumerate(block):
                feats.extend(features_for(k, p, self.specials, self.max_length, self.options.stride, left, right))
            batches = plan_batches([len(f.input_ids) for f in feats], self.batch_tokens, self.max_batch)
            yield [b[0] for b in block], feats, batches

    # -- model side ------------------------------------------------------------------------
    def _forward(self, feats: list[Feature]) -> list[tuple[list[int], list[float]]]:
        if getattr(self.model, "runs_numpy", False):
            return self._forward_numpy(feats)
        import torch

        ids, mask, rows, cols = self._inputs(feats)
        gpu = self.device.type == "cuda"
        t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
        if gpu:
            t_ids = t_ids.pin_memory().to(self.device, non_blocking=True)
            t_mask = t_mask.pin_memory().to(self.device, non_blocking=True)
        t0 = time.perf_counter()
        with torch.inference_mode():
            logits = self.model(input_ids=t_ids, attention_mask=t_mask).logits
            picked = logits[torch.tensor(rows, device=self.device), torch.tensor(cols, device=self.device)]
            probs, labels = picked.float().softmax(-1).max(-1)
            probs, labels = probs.cpu().tolist(), labels.cpu().tolist()
        self.forward_seconds += time.perf_counter() - t0
        return _split(feats, labels, probs)

    def _inputs(self, feats: list[Feature]):
        import numpy as np

        width = max(len(f.input_ids) for f in feats)
        ids = np.full((len(feats), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(feats), width), dtype=np.int64)
        rows, cols = [], []
        for r, f in enumerate(feats):
            n = len(f.input_ids)
            ids[r, :n] = f.input_ids
            mask[r, :n] = 1
            rows.extend([r] * len(f.positions))
            cols.extend(f.positions)
            self.tokens_seen += n
        self.padded_tokens += ids.size
        return ids, mask, rows, cols

    def _forward_numpy(self, feats: list[Feature]) -> list[tuple[list[int], list[float]]]:
        """The same as :meth:`_forward` for a model that runs on numpy arrays (ONNX Runtime int8)."""
        import numpy as np

        ids, mask, rows, cols = self._inputs(feats)
        t0 = time.perf_counter()
        logits = self.model.run_numpy(ids, mask)
        picked = logits[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)].astype(np.float32)
        picked = np.exp(picked - picked.max(-1, keepdims=True))
        probs_all = picked / picked.sum(-1, keepdims=True)
        labels, probs = probs_all.argmax(-1).tolist(), probs_all.max(-1).tolist()
        self.forward_seconds += time.perf_counter() - t0
        return _split(feats, labels, probs)

    def tag(self, sentences: Iterable[Sentence], skip: int = 0) -> Iterator[Sentence]:
        """Yield the input sentences in order, each with ``pred`` and ``scores`` (one per token).

        The first ``skip`` sentences are read (they give context to the next ones) but not tagged
        or yielded: resuming a file that was interrupted after ``skip`` sentences.
        """
        stream = iter(sentences)
        first = next(stream, None)
        if first is None:
            return
        self.load()
        sentences = chain([first], stream)
        for block, feats, batches in background(lambda: self._jobs(sentences, skip)):
            parts: list[list[tuple[Feature, list[int], list[float]]]] = [[] for _ in block]
            for batch in batches:
                fs = [feats[i] for i in batch]
                for f, (labs, probs) in zip(fs, self._forward(fs)):
                    parts[f.sent].append((f, labs, probs))
            _trim_heap()
            for k, sent in enumerate(block):
                sent.pred, sent.scores = assign(len(sent.tokens), parts[k], self.labels)
                if len(sent.pred) != len(sent.tokens):  # the core invariant
                    raise AssertionError(f"{sent.path}:{sent.line}: {len(sent.tokens)} tokens, {len(sent.pred)} tags")
                yield sent
