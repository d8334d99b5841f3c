"""The tagger spread over worker processes: ``nerbatch tag --workers N`` with the local engine.

Two ways, the same outputs (byte for byte, tested) as one process.

**Model copies** (the CPU, the default there)::

    this process   reader ──▶ blocks (Tagger.blocks: core sentences + context neighbours) ──▶ task queue
                                                                                                 │
    N workers      a Tagger each (its own model copy, 1 thread unless --threads): word pieces,   ◀┘
                   windows, batches, model, decoding of one block ──▶ each sentence's tags and scores
                                                                                                 │
    this process   results, back in block order ──▶ the sentences get pred/scores ──▶ writer  ◀──┘

**Feeding workers** (a GPU, the default there; ``--one-model`` on the CPU): the model runs once, in
this process, and the workers do everything around it::

    this process   reader ──▶ blocks ──▶ the worker holding the fewest blocks
    a worker       word pieces, windows, batch plan, the model's input arrays (Tagger.model_inputs) ──▶
    this process   the model on each batch (Tagger.predict_block) ──▶ the block's word probabilities ──▶
    that worker    decoding, calibration, label map (Tagger.finish) ──▶ each sentence's tags and scores ──▶
    this process   results, back in block order ──▶ writer

So one process's Python work around the model (which caps it at a few thousand sentences a second,
far below what a GPU runs) is spread over the workers, and the model is never copied: a worker holds
the tokenizer alone (:class:`~nerbatch.tagging.backends.FeedBackend`: the Rust tokenizer, no
transformers). A GPU run gets up to :data:`GPU_FEEDERS` of them by default (:func:`default_workers`).

Only what the tagger reads of a sentence travels (its words, document, position and line), and only
its tags and scores come back, so the reading process stays light. Everything the local engine does
around the tagger (atomic outputs, locks, manifests, checkpoints, ``--resume``, rejects, reports,
``--min-score``) is unchanged: :class:`TaggerPool` is a
:class:`~nerbatch.run.local.SentenceTagger`, and each block is tagged exactly as the whole stream tags it
(:meth:`~nerbatch.tagging.tagger.Tagger.tag_block`, or its stages split between a worker and this process).

**Starting the workers.** On Linux the workers are forked. A process that has
run OpenMP work (the ``auto`` precision's measurement, an earlier model in the same process) cannot
safely fork a child that runs it with several threads: libgomp's thread team does not survive a
fork, and the child hangs (so it does with torch's libgomp); with one thread OpenMP never starts a team. So a forked
worker runs torch with one intra-op thread, which is what one worker per core wants; where more
threads per worker are asked for (``--threads``, or more cores than workers) the model-copy workers are started with
``forkserver`` (a clean process that imports nerbatch once, then forks the workers). The slow
imports (torch, transformers and the model's own module; for a cached compiled copy torch alone,
for a cached ONNX Runtime copy, int8 or ``--runtime onnx``, onnxruntime alone) happen once, before the
workers start. For an ONNX Runtime copy the first worker loads the model before the others, so the copy
is exported once into the cache. Feeding workers run neither torch nor CUDA, so they are forked after
the model is on its device, as torch's ``DataLoader`` forks its workers.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import queue
import signal
import traceback
from collections import Counter, deque
from dataclasses import dataclass, replace
from typing import Iterable, Iterator

from ..core.record import Sentence
from ..errors import NerbatchError

__all__ = ["TaggerPool", "usable_cores", "default_workers", "on_gpu"]

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


class _Sender:
    """A worker's end of its own result pipe, written by a background thread (the worker goes on with
    the next block while this process is busy). A pipe of its own, not a queue shared by the workers:
    a worker killed in the middle of a message then leaves this process an end of file on that pipe
    (a dead worker, said in one line), never half a message on a shared one to wait on forever."""

    _STOP = object()

    def __init__(self, conn) -> None:
        import threading

        self.conn = conn
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="nerbatch-results", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (msg := self.queue.get()) is not self._STOP:
            try:
                self.conn.send(msg)
            except (OSError, ValueError):  # the reading process is gone
                return

    def put(self, msg) -> None:
        self.queue.put(msg)

    def close(self) -> None:
        """Send what is queued, then stop (a worker's last words reach the reading process)."""
        self.queue.put(self._STOP)
        self.thread.join(timeout=30)


def _start(control, parent: int, results: _Sender):
    """A worker's tagger, from the first message on its control queue: ``(model, options)`` loads the
    model (a model-copy worker), ``(model, options, FeedBackend)`` runs with the reading process's
    tokenizer and no model (a feeding worker). Says "ready" (with the back-end's kind) or the error;
    None when told to stop, when the reading process is gone, or after an error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the reading process's to handle
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # no Rust thread pool after a fork (and no warning about it)
    msg = _receive(control, parent)
    if msg is None:
        return None
    try:
        from ..core.collector import for_this_process
        from .tagger import Tagger

        tagger = Tagger(*msg[:2])
        if len(msg) > 2:
            tagger.use_backend(msg[2])
        else:
            tagger.load()
        for_this_process()
        results.put(("ready", None, tagger.backend.kind))
        return tagger
    except BaseException as exc:  # noqa: BLE001 - any failure travels back to be raised there
        results.put(("error", None, _portable(exc)))
        return None


def _worker(tasks, control, conn, parent: int) -> None:
    """A worker's loop: wait for its model, then tag blocks from ``tasks`` until told to stop."""
    results = _Sender(conn)
    try:
        tagger = _start(control, parent, results)
        while tagger is not None:
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
                counts, spent = _spent(tagger, before, stages)
                results.put(("done", k, ([s.pred for s in core], [s.scores for s in core], counts, spent)))
            except BaseException as exc:  # noqa: BLE001
                results.put(("error", k, _portable(exc)))
    finally:
        results.close()


def _spent(tagger, before: list, stages: dict) -> tuple[list, dict]:
    """What ``tagger`` counted (:data:`COUNTERS`, stage seconds) since ``before`` and ``stages``."""
    counts = [getattr(tagger, c) - b for c, b in zip(COUNTERS, before)]
    return counts, {key: tagger.stage_seconds[key] - stages.get(key, 0.0) for key in tagger.stage_seconds}


def _feeder(control, conn, parent: int, wid: int) -> None:
    """A feeding worker's loop (one model, in the reading process): word pieces, windows, batch plans
    and the model's input arrays of each block it is sent, then, once the model's probabilities come
    back, the block's decoding."""
    results = _Sender(conn)
    try:
        tagger = _start(control, parent, results)
        held: dict[int, tuple] = {}  # blocks whose inputs went to the model: (prepared blocks, core, counters, stages)
        while tagger is not None:
            msg = _receive(control, parent)
            if msg is None:
                return
            k = msg[1]
            try:
                before = [getattr(tagger, c) for c in COUNTERS]
                stages = dict(tagger.stage_seconds)
                if msg[0] == "block":
                    _, k, path, items, n_left, n_core, left_cut, right_cut = msg
                    sents = [Sentence(tokens, doc_id=doc, index=index, path=path, line=line) for tokens, doc, index, line in items]
                    core = sents[n_left : n_left + n_core]
                    prepared = tagger.prepare(core, sents[:n_left], sents[n_left + n_core :], left_cut=left_cut, right_cut=right_cut)
                    inputs = [(len(p.sentences), [tagger.model_inputs(p.rows, b) for b in p.batches]) for p in prepared]
                    held[k] = (prepared, core, _spent(tagger, before, stages))
                    results.put(("inputs", k, (wid, inputs)))
                else:  # ("decode", k, the probabilities of each prepared block; None: the block is given up)
                    prepared, core, (counts, spent) = held.pop(k)
                    if msg[2] is None:
                        continue
                    for block, probs in zip(prepared, msg[2], strict=True):
                        tagger.finish(block, probs)
                    more, later = _spent(tagger, before, stages)
                    counts = [a + b for a, b in zip(counts, more)]
                    spent = {key: spent.get(key, 0.0) + later.get(key, 0.0) for key in {*spent, *later}}
                    results.put(("done", k, ([s.pred for s in core], [s.scores for s in core], counts, spent)))
            except BaseException as exc:  # noqa: BLE001
                results.put(("error", k, _portable(exc)))
    finally:
        results.close()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def on_gpu(options) -> bool:
    """Whether a tagger with these options runs its model on a GPU (ONNX Runtime copies run on the CPU,
    so such a run need not import torch to look for one)."""
    from .backends import onnx_kind

    device = str(options.device)
    return device.startswith("cuda") or (device == "auto" and onnx_kind(options) is None and _cuda())


GPU_FEEDERS = 4  # feeding workers a GPU gets by default, at most (one core left to the reading process)


def default_workers(options) -> int:
    """``--workers`` when not given: on a GPU up to :data:`GPU_FEEDERS` feeding workers, a core each
    with one to spare for this process (one process alone tops out at the speed of its Python work
    around the model, far below what a GPU runs); on the CPU 1 (each worker would copy the model)."""
    cores = usable_cores()
    return max(1, min(GPU_FEEDERS, cores - 1)) if cores >= 3 and on_gpu(options) else 1


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

    def __init__(self, tagger, workers: int, threads: int | None = None, feed: bool | None = None) -> None:
        from .backends import FeedBackend, onnx_kind

        if workers < 2:
            raise ValueError("a pool has at least 2 workers")
        options = tagger.options
        self.feed = on_gpu(options) if feed is None else feed  # one model here, the workers feed it (module docstring)
        self.tagger = tagger
        self.workers = workers
        self.threads = threads or max(1, usable_cores() // workers)
        methods = multiprocessing.get_all_start_methods()
        self.tasks = None  # the blocks any worker takes (model copies); feeding workers get theirs on their control queue
        if self.feed:
            tagger.load()  # the one model, on its device, before any worker starts
            # forked as torch's DataLoader forks its workers from a process that holds a CUDA context:
            # a feeding worker runs neither CUDA nor OpenMP, only the tokenizer and numpy
            method = "fork" if "fork" in methods else "spawn"
            ctx = multiprocessing.get_context(method)
            self.message = (tagger.model_name, replace(options, threads=1), FeedBackend.of(tagger.backend))
            target, first_args = _feeder, ()
        else:
            # a forked child runs OpenMP safely with one thread only (module docstring)
            method = "fork" if self.threads == 1 and "fork" in methods else "forkserver" if "forkserver" in methods else "spawn"
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
            target, first_args = _worker, (self.tasks,)
        self.method = method  # how the workers were started
        self.controls = [ctx.Queue() for _ in range(workers)]
        self.procs, self.readers = [], []  # each worker's result pipe (_Sender): this process holds the read end only
        # A forked worker must never collect what it inherits: freeing an object of a library whose threads held
        # a lock at the fork (an ONNX Runtime session left by an earlier run) can hang the child. Frozen
        # objects are never collected, and the child keeps the freeze (Python's advice for fork without exec)
        thawed = gc.get_freeze_count() == 0
        gc.freeze()
        try:
            for i, control in enumerate(self.controls):
                reader, writer = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=target, args=(*first_args, control, writer, os.getpid(), *((i,) if self.feed else ())),
                                   daemon=True, name=f"nerbatch-{'feeder' if self.feed else 'tagger'}-{i}")
                proc.start()
                writer.close()  # (before the next worker starts, so that it does not hold this one's write end either)
                self.procs.append(proc)
                self.readers.append(reader)
        finally:
            if thawed:
                gc.unfreeze()
        # ONNX Runtime: the first worker loads alone, so the copy is exported once into the cache (a compiled copy
        # is built once anyway: a second build joins the first); else all load at once
        self.staggered = not self.feed and onnx_kind(options) is not None
        for control in self.controls[: 1 if self.staggered else workers]:
            control.put(self.message)
        self.started = 0
        # what the first worker ready runs; feeding workers: this process's model
        self.backend: WorkerBackend | None = WorkerBackend(tagger.backend.kind) if self.feed else None
        self.next = 0
        self.held: dict[int, tuple[int, list[Sentence]]] = {}  # feeding: block -> (the worker holding it, its core)
        self.turn = 0  # the worker whose message is read first when several are waiting
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
        """The next message from the workers. A worker that died (killed, out of memory) ends the run
        once its pipe has given all it holds (the block it held is lost)."""
        from multiprocessing.connection import wait

        n = len(self.readers)
        while True:
            ready = [self.readers.index(r) for r in wait(self.readers, timeout=POLL)]
            for i in sorted(ready, key=lambda i: (i - self.turn) % n):  # the workers in turn, none left waiting
                try:
                    msg = self.readers[i].recv()
                except (EOFError, OSError):  # its pipe ended: the worker is gone (maybe in mid-message)
                    self._died(self.procs[i])
                self.turn = i + 1
                return msg
            for proc in self.procs:  # (a pipe whose write end some other process still holds)
                if proc.exitcode is not None:
                    self._died(proc)

    def _died(self, proc) -> None:
        proc.join(timeout=5)
        raise WorkerDied(
            f"tagging worker {proc.name} ended with exit code {proc.exitcode}",
            hint="out of memory? try fewer --workers; --resume continues from the last checkpoint",
        )

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
            if self.feed:  # to the feeding worker that holds the fewest blocks (a few: two per worker)
                load = Counter(w for w, _ in self.held.values())
                w = min(range(self.workers), key=load.__getitem__)
                self.held[k] = (w, core)
                self.controls[w].put(("block", k, path, items, len(left), len(core), left_cut, right_cut))
            else:
                self.tasks.put((k, path, items, len(left), len(core), left_cut, right_cut))
            words = sum(len(s.tokens) for s in core)
            pending.append((k, core, words))
            held += words
            # two blocks per worker in flight; more while they hold few words (the workers are still
            # loading, or this process reads faster than they tag): memory stays bounded either way.
            # Feeding workers start at once (no model to load): two blocks each
            while len(pending) > 2 * max(1, self.started) and (self.feed or held > AHEAD_WORDS or len(pending) > AHEAD_BLOCKS):
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
                if kind == "inputs":  # the worker lets the block go
                    self.controls[payload[0]].put(("decode", j, None))
                self._release(j)
                continue
            elif kind == "error":
                raise payload
            elif kind == "inputs":
                self._predict(j, *payload)
            else:
                done[j] = payload
        self._release(k)
        preds, scores, counts, spent = done.pop(k)
        for sent, pred, score in zip(core, preds, scores):
            sent.pred, sent.scores = pred, score
        for c, n in zip(COUNTERS, counts):
            setattr(self, c, getattr(self, c) + n)
        for key, value in spent.items():
            self.stage_seconds[key] = self.stage_seconds.get(key, 0.0) + value
        return core

    def _predict(self, k: int, wid: int, inputs: list) -> None:
        """Feeding: run this process's model on block ``k``'s inputs and send the probabilities back
        to the worker that holds the block, for decoding."""
        tagger = self.tagger
        forward, stages = tagger.forward_seconds, dict(tagger.stage_seconds)
        core, at, probs = self.held[k][1], 0, []
        for n, batches in inputs:  # each prepared block of the block's core, in order
            probs.append(tagger.predict_block(batches, core[at : at + n]))
            at += n
        self.controls[wid].put(("decode", k, probs))
        self.forward_seconds += tagger.forward_seconds - forward
        for key, value in tagger.stage_seconds.items():
            self.stage_seconds[key] = self.stage_seconds.get(key, 0.0) + value - stages.get(key, 0.0)

    def _release(self, k: int) -> None:
        """Feeding: block ``k`` is no longer held by its worker."""
        self.held.pop(k, None)

    def close(self) -> None:
        """Stop the workers (those busy are terminated)."""
        for _ in self.procs if self.tasks is not None else ():
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
        for q in (*self.controls, *((self.tasks,) if self.tasks is not None else ())):
            q.cancel_join_thread()
            q.close()
        for reader in self.readers:
            reader.close()

    def __enter__(self) -> "TaggerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

