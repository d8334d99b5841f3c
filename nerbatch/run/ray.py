"""The Ray engine: the run plan's jobs, with the model run by a pool of Ray actors.

Pipeline (one Ray Dataset, streamed)::

    from_items(files left to do) -> flat_map(read a file into shards) -> map_batches(TagActor) -> driver

* Planning happens before (:func:`nerbatch.run.plan.plan_run`, shared with the local engine): outputs
  already complete are not sent at all, and a resumed file is sent from its checkpoint on.
* Reading: one Ray task per input file runs nerbatch's own reader and cuts the sentence stream with
  :func:`nerbatch.tagging.align.split_blocks` into *shards* of ``k x TaggerOptions.block`` sentences, at the
  positions where the local tagger cuts its blocks, so every model batch holds exactly the rows it
  holds with the local engine. A shard carries tokens and document ids only, plus the neighbouring
  sentences its document context needs, so the context is identical too.
* Tagging: ``map_batches`` with :class:`TagActor`; each actor loads ``Tagger(model, options)`` once
  (one GPU per actor when the cluster has GPUs, else ``threads or 1`` CPUs) and runs the public
  :meth:`nerbatch.tagging.tagger.Tagger.tag_block` on each shard. A dead actor is restarted and its shard
  retried by Ray.
* Writing: the driver runs the local engine's :func:`~nerbatch.run.local.run_local` with
  :class:`RayTagger` as its tagger: the driver reads each file again with the same reader (for the
  passthrough columns, CoNLL lines, ``source``) and zips its sentences with the results, which
  arrive in input order (``preserve_order``) and are checked shard by shard (none lost or repeated)
  and sentence by sentence (same token count and checksum). Writers, atomic outputs, output locks,
  manifests, ``--resume``, ``--on-error skip`` and the summary are therefore exactly the local
  engine's.

Words: a *block* is what the tagger sorts and batches together (``TaggerOptions.block``
sentences); a *shard* is one Ray work item (a whole number of blocks); Ray's own dataset blocks are
called "Ray blocks".
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import warnings
import zlib
from dataclasses import replace
from itertools import chain
from typing import Any, Iterable, Iterator

from ..core.record import Sentence
from ..errors import InputError, NerbatchError
from ..io import ReadOptions, read
from ..io.base import STDIO
from ..tagging.align import from_sentence, split_blocks
from ..tagging.tagger import TaggerOptions
from .local import RunOptions, ScoreSink, TagSummary, run_local
from .plan import PlannedJob

RAY_HINT = "pip install 'nerbatch[ray]'"
# Upper bound on the context budget in subwords (a model window is at most 512 subwords).
MAX_WINDOW = 512
# A dead actor is restarted without limit (losing a node must not end the run), but one block is
# retried at most this many times, so a block that kills every actor fails the run instead of looping.
TASK_RETRIES = 3


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError("--engine ray needs Ray Data, which is not installed", hint=RAY_HINT) from None
    return ray


def checksum(tokens: list[str]) -> int:
    return zlib.crc32("\x1f".join(tokens).encode("utf-8", "surrogatepass"))


# -- reading (Ray tasks) -----------------------------------------------------------------------


def _row(file: int, block: int, kind: str, payload: bytes = b"", sentences: int = 0) -> dict:
    return {"file": file, "block": block, "kind": kind, "payload": payload, "sentences": sentences}


def _light_list(sents: list[Sentence]) -> list[tuple[list[str], str | None, int]]:
    return [(s.tokens, s.doc_id, s.line) for s in sents]


def _read_file(item: dict, options: ReadOptions, size: int, need: int) -> Iterator[dict]:
    """flat_map UDF: one input file -> one row per shard of sentences still to tag, then an ``end``
    row (or an ``error`` row). The first ``item["skip"]`` sentences (a resumed file's done part) are
    read, for the context of what follows, but not sent."""
    file, name, fmt, skip = int(item["file"]), item["name"], item["fmt"], int(item["skip"])
    # the path as given (local Ray, or a working_dir), else as the driver resolved it (shared filesystem)
    path = name if os.path.exists(name) or not os.path.exists(item["path"]) else item["path"]
    shard = 0
    n_sent = 0
    try:
        blocks = from_sentence(split_blocks(read(path, fmt, options), size, need), skip)
        for left, core, right, left_cut, right_cut in blocks:
            payload = {
                "left": _light_list(left),
                "core": _light_list(core),
                "right": _light_list(right),
                "left_cut": left_cut,
                "right_cut": right_cut,
                "need": need,
                "path": name,
            }
            n_sent += len(core)
            yield _row(file, shard, "block", pickle.dumps(payload, protocol=5), len(core))
            shard += 1
    except NerbatchError as exc:
        if isinstance(exc, InputError) and exc.path == path != name:
            exc.path = name  # the path the user gave, as the local engine reports it
        yield _row(file, shard, "error", pickle.dumps(exc))
        return
    yield _row(file, shard, "end", b"", n_sent)


# -- tagging (Ray actors) ----------------------------------------------------------------------


def _sentences(light: list[tuple[list[str], str | None, int]], path: str = "") -> list[Sentence]:
    return [Sentence(tokens=t, doc_id=d, path=path, line=n) for t, d, n in light]


class TagActor:
    """map_batches UDF: loads the tagger once per actor, then tags one shard per row with
    :meth:`nerbatch.tagging.tagger.Tagger.tag_block`."""

    def __init__(self, model: str, options: TaggerOptions, model_abs: str | None = None) -> None:
        self.error: NerbatchError | None = None
        self.tagger = None
        self.done = 0
        if model_abs and not os.path.isdir(model) and os.path.isdir(model_abs):
            model = model_abs  # a relative folder, from a node whose working directory differs
        try:
            from ..tagging.tagger import Tagger

            self.tagger = Tagger(model, options)
            self.tagger.load()  # weights now, once per actor
        except NerbatchError as exc:  # travels as data, so the driver raises it as the local engine would
            self.error = exc

    def tag(self, row: dict) -> dict:
        """One ``block`` row (a shard and its neighbours) -> the same row with the shard's tags."""
        if self.error is not None:
            return _row(row["file"], row["block"], "error", pickle.dumps(self.error))
        data = pickle.loads(row["payload"])
        core = _sentences(data["core"], data["path"])
        forward0 = self.tagger.forward_seconds
        try:
            self.tagger.tag_block(
                core, _sentences(data["left"]), _sentences(data["right"]),
                left_cut=data["left_cut"], right_cut=data["right_cut"], carried=data["need"],
            )
        except NerbatchError as exc:
            return _row(row["file"], row["block"], "error", pickle.dumps(exc))
        result = {
            "pred": [s.pred for s in core],
            "scores": [s.scores for s in core],
            "check": [(len(s.tokens), checksum(s.tokens)) for s in core],
            "forward_seconds": self.tagger.forward_seconds - forward0,
        }
        self.done += 1
        return dict(row, payload=pickle.dumps(result, protocol=5))

    def __call__(self, batch):
        import pyarrow as pa

        out = [self.tag(row) if row["kind"] == "block" else row for row in batch.to_pylist()]
        return pa.Table.from_pylist(out, schema=_schema())


def _schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("file", pa.int64()),
            pa.field("block", pa.int64()),
            pa.field("kind", pa.string()),
            pa.field("payload", pa.large_binary()),
            pa.field("sentences", pa.int64()),
        ]
    )


# -- driver ------------------------------------------------------------------------------------


class RayTagger:
    """The tagger :func:`~nerbatch.run.local.run_local` drives on the Ray engine's driver: ``tag`` zips the sentences the
    driver reads with the results of the Ray pipeline for the same file.

    Results arrive file by file in job order; ``tag`` finds its file from the sentences' ``path`` and
    drops the results of files the local engine did not ask for (up to date under ``--resume``,
    empty, or failed to read in the driver too).
    """

    def __init__(self, model_name: str, options, rows: Iterator[dict], files: dict[str, int]) -> None:
        self.model_name = model_name
        self.options = options
        # the model's counters live in the actors: the driver counts the sentences that came back only
        self.forward_seconds = 0.0
        self.tokens_seen = 0
        self.padded_tokens = 0
        self.sentences_tagged = 0  # sentences whose tags came from Ray in this run
        self._rows = rows
        self._files = files
        self._pending: dict | None = None
        self._next = (0, 0)  # (file, block) expected next

    def _peek(self) -> dict | None:
        while self._pending is None:
            row = next(self._rows, None)
            if row is None:
                return None
            key = (row["file"], row["block"])
            if key < self._next:
                continue  # a repeated block (never expected: a retried block replaces, it doesn't add)
            if key != self._next:  # every file gives blocks 0, 1, ... and one end (or error) row
                raise AssertionError(f"ray engine: block {key} arrived, {self._next} expected (a lost block)")
            self._pending = row
        return self._pending

    def _take(self) -> dict:
        row = self._pending
        assert row is not None
        self._pending = None
        if row["kind"] == "block":
            self._next = (row["file"], row["block"] + 1)
        else:
            self._next = (row["file"] + 1, 0)
        return row

    def _results(self, file: int) -> Iterator[tuple[list[str], list[float], tuple[int, int]]]:
        while True:
            row = self._peek()
            if row is None:
                raise AssertionError(f"ray engine: the results of file {file} ended early")
            if row["file"] < file:
                self._take()  # a file the local engine skipped
                continue
            if row["file"] > file:
                raise AssertionError(f"ray engine: the results of file {file} are missing")
            row = self._take()
            if row["kind"] == "error":
                exc = pickle.loads(row["payload"])
                if isinstance(exc, InputError) and exc.line is None and exc.path and os.path.exists(exc.path):
                    exc.hint = (exc.hint + "; " if exc.hint else "") + (
                        "the driver can read it but the Ray workers cannot: inputs must be on a filesystem "
                        "that every node mounts at the same path"
                    )
                raise exc
            if row["kind"] == "end":
                return
            data = pickle.loads(row["payload"])
            if not len(data["pred"]) == len(data["scores"]) == len(data["check"]) == row["sentences"]:
                raise AssertionError(f"ray engine: block {row['block']} of file {file} is incomplete")
            self.forward_seconds += data["forward_seconds"]
            yield from zip(data["pred"], data["scores"], data["check"], strict=True)

    def tag_sentences(self, sentences: Iterable[Sentence], skip: int = 0, block: int | None = None) -> Iterator[Sentence]:
        """Yield the sentences in order with ``pred``/``scores`` from Ray; the first ``skip`` (a resumed
        file's done part, never sent to Ray) are read and dropped. (``block`` is the local tagger's:
        here the sentences come as the shards' results arrive.)"""
        it = iter(sentences)
        for _ in range(skip):
            if next(it, None) is None:
                return
        first = next(it, None)
        if first is None:
            return
        if first.path not in self._files:
            raise AssertionError(f"ray engine: {first.path} is not one of the files sent to Ray")
        results = self._results(self._files[first.path])
        for sent in chain([first], it):
            got = next(results, None)
            if got is None:
                raise AssertionError(f"{sent.path}:{sent.line}: no result from Ray for this sentence")
            pred, scores, (n, crc) = got
            if n != len(sent.tokens) or crc != checksum(sent.tokens) or len(pred) != len(sent.tokens):
                raise AssertionError(f"{sent.path}:{sent.line}: the result from Ray is for another sentence")
            sent.pred, sent.scores = pred, scores
            self.sentences_tagged += 1
            yield sent
        if next(results, None) is not None:
            raise AssertionError(f"{first.path}: Ray tagged more sentences than the driver read")


def context_need(tagger) -> int:
    """Words of neighbouring sentences a shard carries (0: the model uses no document context).

    For a model folder the driver can see, the settings come from its JSON files (the weights are
    not loaded on the driver). A hub id gets the safe bound; the actors check it.
    """
    if os.path.isdir(tagger.model_name):
        return tagger.settings.context_need()
    return 0 if tagger.options.context is False else MAX_WINDOW


def _start_ray(ray, address: str | None, quiet: bool) -> bool:
    """Connect to ``address``, or reuse a Ray started in this process, or start a local one (then True).

    ``quiet``: the workers' output is not relayed (it would land on the driver's stdout, which may
    be the output itself with ``-o -``).
    """
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if quiet:
        kwargs["log_to_driver"] = False
    if address:
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # ConnectionError, RuntimeError, ... depending on the Ray version
            raise InputError(
                f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                hint="start one with `ray start --head`, or check the address",
            ) from None
        return False
    ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
    return True


def build_dataset(ray, planned: list[PlannedJob], model: str, tagger_options: TaggerOptions, options: ReadOptions,
                  workers: int, use_gpu: bool, size: int, need: int, actor: type):
    """The Ray Dataset of tagged shards: rows ``file, block, kind (block|end|error), payload, sentences``
    (``block`` numbers a file's shards), for the planned jobs' remaining sentences only."""
    items = [
        {"file": i, "name": p.job.input, "path": os.path.abspath(p.job.input), "fmt": p.job.input_format, "skip": p.skip}
        for i, p in enumerate(planned)
    ]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    readers = max(1, min(len(items), workers))
    if hasattr(ray.data, "TaskPoolStrategy"):
        read_compute: dict[str, Any] = {"compute": ray.data.TaskPoolStrategy(size=readers)}
    else:  # Ray < 2.51
        read_compute = {"concurrency": readers}
    ds = ds.flat_map(
        _read_file,
        fn_kwargs={"options": options, "size": size, "need": need},
        num_cpus=0,  # light work, and it must never wait behind the actors for a CPU
        **read_compute,
    )
    cpus = 1 if use_gpu else max(1, tagger_options.threads or 1)
    tag_args: dict[str, Any] = {
        "fn_constructor_args": (model, tagger_options, os.path.abspath(model) if os.path.isdir(model) else None),
        "batch_size": 1,
        "batch_format": "pyarrow",
        "compute": ray.data.ActorPoolStrategy(size=workers),
        "num_cpus": cpus,
    }
    if use_gpu:
        tag_args["num_gpus"] = 1
    try:
        with warnings.catch_warnings():  # Ray 2.60 deprecates passing actor options through
            warnings.simplefilter("ignore")
            return ds.map_batches(actor, max_restarts=-1, max_task_retries=TASK_RETRIES, **tag_args)
    except TypeError:  # a Ray without pass-through: its own defaults restart actors and retry tasks
        return ds.map_batches(actor, **tag_args)


def run_ray(
    planned: list[PlannedJob],
    tagger,
    *,
    options: ReadOptions = ReadOptions(),
    scores: ScoreSink | None = None,
    progress: bool = True,
    run: RunOptions = RunOptions(),
    workers: int | None = None,
    address: str | None = None,
    block_sentences: int = 2000,
    actor: type = TagActor,
) -> TagSummary:
    """Tag each job's input into its output on Ray Data; the outputs are those of :func:`~nerbatch.run.local.run_local`,
    which takes the same jobs, tagger and options.

    ``tagger``: a :class:`~nerbatch.tagging.tagger.Tagger`; the driver reads its settings only, each actor
    loads its own copy. Only what the run plan leaves to do is sent to Ray: outputs already complete
    are skipped and a resumed file starts at its checkpoint. ``workers``: tagging actors (default:
    one per GPU of the cluster, else one per ``threads or 1`` CPUs). ``address``: join that cluster
    (``auto``, ``ray://host:10001``) and leave it running; without it a Ray already initialised in
    this process is used, else a local one is started for the run and shut down after it.
    ``block_sentences`` is rounded up to a multiple of ``tagger.options.block`` so the model sees
    the local engine's batches. ``actor``: the map_batches class (a subclass of :class:`TagActor`).
    """
    if any(p.job.input == STDIO for p in planned):
        raise InputError("--engine ray cannot read stdin", hint="pass a file, or use --engine local")
    if workers is not None and workers < 1:
        raise InputError("--workers must be at least 1")
    ray = _import_ray()
    from ray.data import DataContext

    model, tagger_options = tagger.model_name, tagger.options
    tb = max(1, tagger_options.block)
    size = -(-max(1, block_sentences) // tb) * tb
    need = context_need(tagger)
    remaining = [p for p in planned if p.status != "up to date"]

    t0 = time.perf_counter()
    started = _start_ray(ray, address, quiet=not progress or any(p.job.output == STDIO for p in planned))
    ctx = DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.target_max_block_size, ctx.enable_progress_bars)
    data_log = logging.getLogger("ray.data")
    saved_level = data_log.level
    rows = None
    try:
        ctx.execution_options.preserve_order = True  # results in (file, shard) order
        ctx.target_max_block_size = 1  # one row (one shard of sentences) per Ray block: a file spreads over actors
        ctx.enable_progress_bars = False  # the local engine's bar counts written sentences
        if not progress:
            data_log.setLevel(logging.ERROR)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and tagger_options.device != "cpu"
        if workers is None:
            per_actor = 1 if use_gpu else max(1, tagger_options.threads or 1)
            workers = gpus if use_gpu else max(1, int(resources.get("CPU", 1) // per_actor))
        if use_gpu and tagger_options.device.startswith("cuda"):
            # Ray gives each actor one GPU and hides the others: it is always "cuda" (cuda:0) there
            tagger_options = replace(tagger_options, device="cuda")
        if remaining:
            ds = build_dataset(ray, remaining, model, tagger_options, options, workers, use_gpu, size, need, actor)
            rows = iter(ds.iter_rows())  # lazy: runs from the first result asked for
        else:
            rows = iter(())
        remote = RayTagger(model, tagger_options, rows, {p.job.input: i for i, p in enumerate(remaining)})
        summary = run_local(planned, remote, options=options, scores=scores, progress=progress, run=run)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # stops the execution if the run ended early
        ctx.execution_options.preserve_order, ctx.target_max_block_size, ctx.enable_progress_bars = saved
        data_log.setLevel(saved_level)
        if started:
            ray.shutdown()
    summary.seconds = time.perf_counter() - t0  # Ray and actor start-up included
    choice = getattr(tagger, "precision_choice", None)  # the actors run the driver's resolved options
    summary.precision = choice.reason if choice is not None else summary.precision
    return summary
