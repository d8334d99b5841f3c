"""The tagger spread over worker processes: ``nerbatch tag --workers N`` with the local engine.

Data flow::

    this process   reader ──▶ blocks (Tagger.blocks: core sentences + context neighbours) ──▶ task queue
                                                                                                 │
    N workers      a Tagger each (its own model copy, 1 thread unless --threads): word pieces,   ◀┘
                   windows, batches, model, decoding of one block ──▶ each sentence's tags and scores
                                                                                                 │
    this process   results, back in block order ──▶ the sentences get pred/scores ──▶ writer  ◀──┘

Only what the tagger reads of a sentence travels (its words, document, position and line), and only
its tags and scores come back, so the reading process stays light. Everything the local engine does
around the tagger (atomic outputs, locks, manifests, checkpoints, ``--resume``, rejects, reports,
``--min-score``) is unchanged: :class:`TaggerPool` is a
:class:`~nerbatch.run.local.SentenceTagger`, and each block is tagged by
:meth:`~nerbatch.tagging.tagger.Tagger.tag_block`, exactly as the whole stream tags it, so outputs are
the same bytes as with one process (tested).

**Starting the workers.** On Linux the workers are forked when the pool is made. A process that has
run OpenMP work (the ``auto`` precision's measurement, an earlier model in the same process) cannot
safely fork a child that runs it with several threads: libgomp's thread team does not survive a
fork, and the child hangs (so it does with torch's libgomp); with one thread OpenMP never starts a team. So a forked
worker runs torch with one intra-op thread, which is what one worker per core wants; where more
threads per worker are asked for (``--threads``, or more cores than workers) the workers are started with
``forkserver`` (a clean process that imports nerbatch once, then forks the workers). The slow
imports (torch, transformers and the model's own module; for a cached compiled copy torch alone,
for a cached ONNX Runtime copy, int8 or ``--runtime onnx``, onnxruntime alone) happen once, before the
workers start. For an ONNX Runtime copy the first worker loads the model before the others, so the copy
is exported once into the cache.

**A GPU** runs one model: ``--workers`` above 1 is refused there (the model is never copied per
worker onto a device).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import traceback
from collections import deque
from dataclasses import dataclass, replace
from typing import Iterable, Iterator

from ..core.record import Sentence
from ..errors import NerbatchError

__all__ = ["TaggerPool", "usable_cores"]

COUNTERS = ("forward_seconds", "tokens_seen", "padded_tokens", "sentences_tagged")
POLL = 1.0  # seconds between checks that the other side is still alive
AHEAD_WORDS = 250_000  # words this process may read ahead of the workers (some 25 MB of sentences) ...
AHEAD_BLOCKS = 64  # ... in at most this many blocks


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class WorkerDied(NerbatchError):
    """A worker process ended without being asked to (killed, out of memory)."""


@dataclass(frozen=True)
class WorkerBackend:
    """What the reading process knows of the workers' back-end: its kind ("eager", "compiled", "int8", "onnx")."""

    kind: str


def _receive(q, parent: int):
    """The next message on ``q``; None when told to stop, or once the reading process is gone."""
    while True:
        try:
            return q.get(timeout=POLL)
        except queue.Empty:
            if os.getppid() != parent:
                return None


def _worker(tasks, control, results, parent: int) -> None:
    """A worker's loop: wait for its model, then tag blocks from ``tasks`` until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the reading process's to handle
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # no Rust thread pool after a fork (and no warning about it)
    msg = _receive(control, parent)
    if msg is None:
        return
    try:
        from ..core.collector import for_this_process
        from .tagger import Tagger

        tagger = Tagger(*msg)
        tagger.load()
        for_this_process()
        results.put(("ready", None, tagger.backend.kind))
    except BaseException as exc:  # noqa: BLE001 - any failure travels back to be raised there
        results.put(("error", None, _portable(exc)))
        return
    while True:
        msg = _receive(tasks, parent)
        if msg is None:
            return
        k, path, items, n_left, n_core, left_cut, right_cut = msg
        try:
            before = [getattr(tagger, c) for c in COUNTERS]
            stages = dict(tagger.stage_seconds)
            sents = [Sentence(tokens, doc_id=doc, index=index, path=path, line=line) for tokens, doc, index, line in items]
            core = sents[n_left : n_left + n_core]
            tagger.tag_block(core, sents[:n_left], sents[n_left + n_core :], left_cut=left_cut, right_cut=right_cut)
            counts = [getattr(tagger, c) - b for c, b in zip(COUNTERS, before)]
            spent = {key: tagger.stage_seconds[key] - stages.get(key, 0.0) for key in tagger.stage_seconds}
            results.put(("done", k, ([s.pred for s in core], [s.scores for s in core], counts, spent)))
        except BaseException as exc:  # noqa: BLE001
            results.put(("error", k, _portable(exc)))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def preload_modules(model: str, options) -> list[str]:
    """The modules a worker's back-end imports for this model and options (the slow ones): only
    those of the cached copy it will load when there is one (a compiled package: torch alone; an
    int8 model: onnxruntime alone), else torch, transformers and the model's own module."""
    import json

    from ..model.cache import ONNX_KINDS
    from .backends import onnx_kind

    onnx = onnx_kind(options)
    cached = _cached_kind(model, options)
    if cached in ONNX_KINDS:
        return ["onnxruntime", "tokenizers"]
    if cached == "compiled":
        return ["torch", "tokenizers"]
    names = ["transformers"] if onnx else ["torch", "transformers"]
    if onnx:
        names.append("onnxruntime")
    try:  # (named, not looked up in transformers' tables; one that is not there is skipped)
        with open(os.path.join(model, "config.json"), encoding="utf-8") as fh:
            model_type = json.load(fh).get("model_type")
        if not onnx and isinstance(model_type, str) and model_type.replace("-", "_").isidentifier():
            name = model_type.replace("-", "_")
            names.append(f"transformers.models.{name}.modeling_{name}")
    except (OSError, ValueError, AttributeError):
        pass  # a hub id, or no config: the worker imports what it needs
    return names


def _cached_kind(model: str, options) -> str | None:
    """"int8", "onnx" or "compiled" when the workers will load a cached copy of ``model`` (see
    :func:`nerbatch.tagging.backends.load_backend`), else None."""
    if not os.path.isdir(model) or options.device not in ("auto", "cpu"):
        return None
    from ..model.cache import default_cache_dir, entry_key, find_entry
    from .backends import compile_wanted, onnx_kind

    cache = options.cache_dir or default_cache_dir()
    try:
        onnx = onnx_kind(options)
        if onnx:
            return onnx if find_entry(cache, entry_key(model, onnx), onnx) else None
        if compile_wanted(model, options.precision, options.compile):
            return "compiled" if find_entry(cache, entry_key(model, options.precision), options.precision) else None
    except Exception:  # noqa: BLE001 - anything odd: the workers import what they need
        return None
    return None


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it pickles (nerbatch's errors do), else a :class:`NerbatchError` with its traceback."""
    import pickle

    if isinstance(exc, NerbatchError):
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:  # noqa: BLE001
            pass
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    return NerbatchError(f"a tagging worker failed: {type(exc).__name__}: {exc}\n{text}")


class TaggerPool:
    """``workers`` processes that tag blocks of sentences for this one (see the module docstring).

    Make it before the :class:`~nerbatch.tagging.tagger.Tagger` it will run (the workers are forked
    then), :meth:`start` it with that tagger, pass it to the local engine as the tagger, and
    :meth:`close` it (or use it as a context manager). ``threads``: torch threads per worker (default:
    the usable cores divided among the workers, at least 1).
    """

    def __init__(self, tagger, workers: int, threads: int | None = None) -> None:
        from .backends import onnx_kind

        if workers < 2:
            raise ValueError("a pool has at least 2 workers")
        options = tagger.options
        # (ONNX Runtime runs on the CPU with or without a GPU, so that run need not import torch to look for one)
        if str(options.device).startswith("cuda") or (options.device == "auto" and onnx_kind(options) is None and _cuda()):
            raise NerbatchError("--workers above 1 runs on the CPU: a GPU runs one copy of the model",
                                hint="drop --workers, or pass --device cpu")
        self.tagger = tagger
        self.workers = workers
        self.threads = threads or max(1, usable_cores() // workers)
        methods = multiprocessing.get_all_start_methods()
        # a forked child runs OpenMP safely with one thread only (module docstring)
        method = "fork" if self.threads == 1 and "fork" in methods else "forkserver" if "forkserver" in methods else "spawn"
        self.method = method  # how the workers were started
        modules = preload_modules(tagger.model_name, options)
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["nerbatch.tagging.tagger", *modules])
        else:
            import importlib

            for name in modules:  # imported once here, not once per worker (torch and transformers: seconds)
                try:
                    importlib.import_module(name)
                except ImportError:  # left to the worker that needs it to say why
                    pass
        self.message = (tagger.model_name, replace(options, threads=self.threads, device="cpu"))
        self.tasks = ctx.Queue()
        self.results = ctx.Queue()
        self.controls = [ctx.Queue() for _ in range(workers)]
        self.procs = [
            ctx.Process(target=_worker, args=(self.tasks, c, self.results, os.getpid()), daemon=True, name=f"nerbatch-tagger-{i}")
            for i, c in enumerate(self.controls)
        ]
        for proc in self.procs:
            proc.start()
        # ONNX Runtime: the first worker loads alone, so the copy is exported once into the cache (a compiled copy
        # is built once anyway: a second build joins the first); else all load at once
        self.staggered = onnx_kind(options) is not None
        for control in self.controls[: 1 if self.staggered else workers]:
            control.put(self.message)
        self.started = 0
        self.backend: WorkerBackend | None = None  # what the first worker ready runs
        self.next = 0
        for c in COUNTERS:
            setattr(self, c, 0 if c != "forward_seconds" else 0.0)
        self.stage_seconds = {"prepare": 0.0, "model": 0.0, "decode": 0.0}

    # -- what the local engine reads of a tagger ---------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.tagger.model_name

    @property
    def options(self):
        return self.tagger.options

    @property
    def settings(self):
        return self.tagger.settings

    @property
    def labels(self) -> list[str]:
        return self.tagger.labels

    @property
    def precision_choice(self):
        return getattr(self.tagger, "precision_choice", None)

    # -- running ----------------------------------------------------------------------------------

    def _get(self):
        """The next message from the workers; once a worker has died and nothing is left to read, the
        run ends (the block it held is lost)."""
        while True:
            dead = [p for p in self.procs if p.exitcode is not None]
            try:
                return self.results.get(timeout=0.1 if dead else POLL)  # a dead worker's last words first
            except queue.Empty:
                if dead:
                    raise WorkerDied(
                        f"tagging worker {dead[0].name} ended with exit code {dead[0].exitcode}",
                        hint="out of memory? try fewer --workers; --resume continues from the last checkpoint",
                    ) from None

    def tag_sentences(self, sentences: Iterable[Sentence], skip: int = 0, block: int | None = None) -> Iterator[Sentence]:
        """What :meth:`~nerbatch.tagging.tagger.Tagger.tag_sentences` yields, tagged by the workers:
        blocks go out as soon as they are read (two per worker in flight, more while they hold fewer than
        :data:`AHEAD_WORDS` words) and come back in order."""
        stream = iter(sentences)
        first = next(stream, None)
        if first is None:
            return
        if self.staggered and self.started < 1:  # the others load once the first has filled the cache
            self._ready_first()
        from itertools import chain

        pending: deque = deque()
        done: dict[int, tuple] = {}
        floor = self.next  # blocks before it belong to a stream given up on (its file failed): their results are dropped
        held = 0  # words in the blocks sent and not yet collected
        for left, core, right, left_cut, right_cut in self.tagger.blocks(chain([first], stream), skip, block):
            k = self.next
            self.next += 1
            items = [(s.tokens, s.doc_id, s.index, s.line) for s in (*left, *core, *right)]
            path = core[0].path if core else ""
            self.tasks.put((k, path, items, len(left), len(core), left_cut, right_cut))
            words = sum(len(s.tokens) for s in core)
            pending.append((k, core, words))
            held += words
            # two blocks per worker in flight; more while they hold few words (the workers are still
            # loading, or this process reads faster than they tag): memory stays bounded either way
            while len(pending) > 2 * max(1, self.started) and (held > AHEAD_WORDS or len(pending) > AHEAD_BLOCKS):
                held -= pending[0][2]
                yield from self._collect(pending.popleft(), done, floor)
        while pending:
            yield from self._collect(pending.popleft(), done, floor)

    def _ready_first(self) -> None:
        kind, _k, payload = self._get()
        if kind == "error":
            raise payload
        self.started = 1
        self.backend = WorkerBackend(payload)
        if self.staggered:
            for control in self.controls[1:]:
                control.put(self.message)

    def _collect(self, item: tuple, done: dict, floor: int) -> list[Sentence]:
        k, core, _words = item
        while k not in done:
            kind, j, payload = self._get()
            if kind == "ready":
                self.started += 1
                self.backend = self.backend or WorkerBackend(payload)
            elif j is not None and j < floor:
                continue
            elif kind == "error":
                raise payload
            else:
                done[j] = payload
        preds, scores, counts, spent = done.pop(k)
        for sent, pred, score in zip(core, preds, scores):
            sent.pred, sent.scores = pred, score
        for c, n in zip(COUNTERS, counts):
            setattr(self, c, getattr(self, c) + n)
        for key, value in spent.items():
            self.stage_seconds[key] = self.stage_seconds.get(key, 0.0) + value
        return core

    def close(self) -> None:
        """Stop the workers (those busy are terminated)."""
        for _ in self.procs:
            try:
                self.tasks.put(None)
            except (OSError, ValueError):
                pass
        for control in self.controls:
            try:
                control.put(None)
            except (OSError, ValueError):
                pass
        for proc in self.procs:
            proc.join(timeout=2)
            if proc.exitcode is None:
                proc.terminate()
                proc.join(timeout=2)
        for q in (self.tasks, self.results, *self.controls):
            q.cancel_join_thread()
            q.close()

    def __enter__(self) -> "TaggerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

