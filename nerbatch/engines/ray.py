"""The Ray engine: the same file jobs as the local engine, tagged by a pool of Ray actors.

Pipeline (one Ray Dataset)::

    from_items(jobs) -> flat_map(read one file into blocks) -> map_batches(tag, actor pool) -> driver writes

* Reading: one Ray task per input file runs nerbatch's own reader (so ``source`` passthrough, CoNLL
  prefixes and line numbers are exactly what the local engine sees) and cuts the sentence stream into
  blocks of ``k x TaggerOptions.block`` sentences, at the same positions where the local tagger cuts
  its sort blocks, so every model batch holds exactly the same rows as with the local engine.
  A block also carries the neighbouring sentences of the same document (token lists only) that the
  document context of its first and last sentences needs, so context is identical too.
* Tagging: ``map_batches`` with a callable class; each actor loads ``Tagger(model, options)`` once
  (one GPU per actor when the cluster has GPUs, else ``threads or 1`` CPUs). Actors are restarted
  and their in-flight block retried when they die; a block's result replaces nothing and is written
  once, because the driver checks the ``(file, block)`` sequence.
* Writing: results come back in input order (``preserve_order``) and the driver writes them with
  nerbatch's writers (temporary file + rename), checking that every token got exactly one tag.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import time
import warnings
from collections import deque
from typing import Any, Iterable, Iterator

from ..errors import InputError, NerbatchError
from ..io import ReadOptions, open_writer, read
from ..io.base import STDIO
from ..record import Sentence
from ..scoring import Scorer, conll_chunks
from ..tagger import TaggerOptions, read_model_config
from .local import FileJob, TagSummary

RAY_HINT = "pip install 'nerbatch[ray]'"
# Test hook: path of a file holding a number N; the first actor that finishes N blocks while the
# file exists renames it away and dies with os._exit (the actor is restarted, the block retried).
CRASH_ENV = "NERBATCH_RAY_TEST_CRASH"
# Upper bound on the context budget in subwords (a model window is at most 512 subwords).
MAX_WINDOW = 512
# A dying actor is restarted without limit (a lost node must not end the run), but one block is
# retried at most this many times, so a block that kills every actor fails the run instead of looping.
TASK_RETRIES = 3


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError("--engine ray needs Ray Data, which is not installed", hint=RAY_HINT) from None
    return ray


# -- reading (Ray tasks) -----------------------------------------------------------------------


def _words(sent: Sentence) -> int:
    """Words that surely give at least one subword (any letter or digit: at worst [UNK])."""
    return sum(1 for w in sent.tokens if any(c.isalnum() for c in w))


def _light(sent: Sentence) -> Sentence:
    """A neighbour only lends context: its tokens and document are all that travel."""
    return Sentence(tokens=sent.tokens, doc_id=sent.doc_id, index=sent.index, path=sent.path, line=sent.line)


def split_blocks(
    sentences: Iterable[Sentence], size: int, need: int
) -> Iterator[tuple[list[Sentence], list[Sentence], list[Sentence], bool, bool]]:
    """Cut a sentence stream into ``(left, core, right, left_cut, right_cut)`` blocks.

    ``core`` is ``size`` consecutive sentences (fewer at the end). ``left``/``right`` are the
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
        out = []
        while ahead and len(out) < n:
            out.append(ahead.popleft())
        while len(out) < n:
            s = next(it, None)
            if s is None:
                break
            out.append(s)
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
                        right.append(_light(s))
                        words += _words(s)
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
                left.append(_light(s))
                left_words += _words(s)
                while left and left_words - _words(left[0]) >= need:
                    left_words -= _words(left.popleft())
                    left_cut = True
        core = take(size)


def _row(file: int, block: int, kind: str, payload: bytes = b"", sentences: int = 0, tokens: int = 0) -> dict:
    return {"file": file, "block": block, "kind": kind, "payload": payload, "sentences": sentences, "tokens": tokens}


def _read_file(item: dict, options: ReadOptions, size: int, need: int) -> Iterator[dict]:
    """flat_map UDF: one input file -> rows of pickled blocks, then an ``end`` row (or an ``error`` row)."""
    file, name, path, fmt = int(item["file"]), item["name"], item["path"], item["fmt"]
    block = 0
    n_sent = n_tok = 0
    try:
        for left, core, right, left_cut, right_cut in split_blocks(read(path, fmt, options), size, need):
            for s in core:
                s.path = name
                n_sent += 1
                n_tok += len(s.tokens)
            payload = {"left": left, "core": core, "right": right, "left_cut": left_cut, "right_cut": right_cut, "need": need}
            yield _row(file, block, "block", pickle.dumps(payload, protocol=5), len(core))
            block += 1
    except NerbatchError as exc:
        if isinstance(exc, InputError) and exc.path == path:
            exc.path = name  # report the path the user gave, not the absolute one
        yield _row(file, block, "error", pickle.dumps(exc))
        return
    yield _row(file, block, "end", b"", n_sent, n_tok)


# -- tagging (Ray actors) ----------------------------------------------------------------------


def tag_block(tagger, left: list[Sentence], core: list[Sentence], right: list[Sentence],
              left_cut: bool = False, right_cut: bool = False, need: int = 0) -> list[Sentence]:
    """Fill ``pred``/``scores`` of the ``core`` sentences exactly as ``Tagger.tag`` does on the whole file.

    Subwords and document context are computed over ``left + core + right`` and only the core is
    tagged, in sort blocks of ``tagger.options.block`` sentences (the core starts at a multiple of it).
    """
    from ..align import assign, features_for, with_context, word_pieces
    from ..batching import chunked, plan_batches

    body = tagger.max_length - len(tagger.specials)
    budget = body if tagger.context else 0
    if budget > need:
        # the reader guessed the model's settings from the driver's copy of the model folder
        raise NerbatchError(
            f"{tagger.model_name}: the model uses document context of {budget} subwords but the blocks "
            f"carry neighbours for {need}",
            hint="the model folder differs between the driver and the workers; pass --context/--no-context "
            "and --max-length explicitly",
        )
    items = left + core + right
    pieces: list[list[list[int]]] = []
    for chunk in chunked(items, 256):
        pieces.extend(word_pieces(tagger.tokenizer, [s.tokens for s in chunk]))
    if budget:
        if left_cut and sum(len(p) for ws in pieces[: len(left)] for p in ws) < budget:
            raise AssertionError(f"{core[0].path}:{core[0].line}: not enough left context carried")
        if right_cut and sum(len(p) for ws in pieces[len(left) + len(core) :] for p in ws) < budget:
            raise AssertionError(f"{core[-1].path}:{core[-1].line}: not enough right context carried")
    ctx = list(with_context(zip(items, pieces, strict=True), budget))[len(left) : len(left) + len(core)]
    for block in chunked(ctx, tagger.options.block):
        feats = []
        for k, (_sent, p, lc, rc) in enumerate(block):
            feats.extend(features_for(k, p, tagger.specials, tagger.max_length, tagger.options.stride, lc, rc))
        parts: list[list] = [[] for _ in block]
        for batch in plan_batches([len(f.input_ids) for f in feats], tagger.batch_tokens, tagger.max_batch):
            fs = [feats[i] for i in batch]
            for f, (labs, probs) in zip(fs, tagger._forward(fs), strict=True):
                parts[f.sent].append((f, labs, probs))
        for k, (sent, *_rest) in enumerate(block):
            sent.pred, sent.scores = assign(len(sent.tokens), parts[k], tagger.labels)
            if len(sent.pred) != len(sent.tokens):  # the core invariant
                raise AssertionError(f"{sent.path}:{sent.line}: {len(sent.tokens)} tokens, {len(sent.pred)} tags")
    return core


class _TagActor:
    """map_batches UDF: loads the tagger once per actor; tags one block per row."""

    def __init__(self, model: str, options: TaggerOptions) -> None:
        self.error: NerbatchError | None = None
        self.tagger = None
        self.done = 0
        try:
            from ..tagger import Tagger

            self.tagger = Tagger(model, options)
        except NerbatchError as exc:  # reported through the data, so the driver raises it as is
            self.error = exc

    def _maybe_crash(self) -> None:
        path = os.environ.get(CRASH_ENV)
        if not path:
            return
        try:
            with open(path, encoding="utf-8") as fh:
                after = int(fh.read().strip() or 0)
        except (OSError, ValueError):
            return
        if self.done >= after:
            try:
                os.rename(path, path + ".fired")  # only one actor wins
            except OSError:
                return
            os._exit(1)

    def __call__(self, batch):
        import pyarrow as pa

        rows = batch.to_pylist()
        out = []
        for row in rows:
            if row["kind"] == "block":
                if self.error is not None:
                    row = _row(row["file"], row["block"], "error", pickle.dumps(self.error))
                else:
                    self._maybe_crash()
                    data = pickle.loads(row["payload"])
                    try:
                        core = tag_block(
                            self.tagger, data["left"], data["core"], data["right"],
                            data["left_cut"], data["right_cut"], data["need"],
                        )
                    except NerbatchError as exc:
                        out.append(_row(row["file"], row["block"], "error", pickle.dumps(exc)))
                        continue
                    row = dict(row, payload=pickle.dumps(core, protocol=5))
                    self.done += 1
            out.append(row)
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
            pa.field("tokens", pa.int64()),
        ]
    )


# -- driver ------------------------------------------------------------------------------------


def _context_need(model: str, options: TaggerOptions) -> int:
    """Words of neighbouring sentences each block carries (0 when the model uses no document context).

    Decided from the driver's view of the model folder (``nerbatch.json``); a hub id or a folder
    the driver cannot see gets the safe bound.
    """
    saved = read_model_config(model) if os.path.isdir(model) else None
    context = options.context
    if context is None:
        context = saved.get("context", False) if saved is not None else True
    if not context:
        return 0
    window = options.max_length or (saved or {}).get("max_length") or MAX_WINDOW
    return min(int(window), MAX_WINDOW)


def _start_ray(ray, address: str | None, quiet: bool) -> bool:
    """Connect to ``address``, reuse a running Ray in this process, or start a local one (returns True)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if quiet:
        kwargs["log_to_driver"] = False
    if address:
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # ConnectionError, RuntimeError, ... depending on the Ray version
            raise InputError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}",
                             hint="start it with `ray start --head`, or check the address") from None
        return False
    ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
    return True


def tag_files_ray(
    jobs: list[FileJob],
    model: str,
    tagger_options: TaggerOptions,
    *,
    options: ReadOptions = ReadOptions(),
    workers: int | None = None,
    address: str | None = None,
    scorer: Scorer | None = None,
    progress: bool = True,
    block_sentences: int = 2000,
) -> TagSummary:
    """Tag each job's input into its output on Ray Data; outputs are identical to :func:`tag_files`.

    ``workers``: tagging actors (default: one per GPU of the cluster, else one per ``threads or 1``
    CPUs). ``address``: an existing cluster (``auto``, ``ray://host:10001``); without it a local Ray
    is started for the run and shut down after it (a Ray already initialised in this process is used
    as is). ``block_sentences`` is rounded up to a multiple of ``tagger_options.block`` so that the
    model sees the same batches as with the local engine.
    """
    from tqdm import tqdm

    if any(job.input == STDIO for job in jobs):
        raise InputError("--engine ray cannot read stdin", hint="pass a file, or use --engine local")
    if workers is not None and workers < 1:
        raise InputError("--workers must be at least 1")
    ray = _import_ray()
    from ray.data import DataContext

    if os.path.isdir(model):
        model = os.path.abspath(model)
    tb = max(1, tagger_options.block)
    size = max(1, -(-max(1, block_sentences) // tb)) * tb
    need = _context_need(model, tagger_options)

    summary = TagSummary()
    t0 = time.perf_counter()
    started = _start_ray(ray, address, quiet=not progress)
    ctx = DataContext.get_current()
    saved_ctx = (ctx.execution_options.preserve_order, ctx.target_max_block_size, ctx.enable_progress_bars)
    data_log = logging.getLogger("ray.data")
    saved_level = data_log.level
    if not progress:
        data_log.setLevel(logging.WARNING)  # no "Starting execution ..." lines in quiet runs
    writer = None
    bar = tqdm(unit=" sent", disable=not progress or not sys.stderr.isatty(), dynamic_ncols=True, leave=False)
    try:
        ctx.execution_options.preserve_order = True  # results come back in (file, block) order
        ctx.target_max_block_size = 1  # one row (= one block of sentences) per Ray block: spreads a file over actors
        ctx.enable_progress_bars = False  # the driver's bar counts written sentences like the local engine's
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and tagger_options.device != "cpu"
        cpus_per_actor = 1 if use_gpu else max(1, tagger_options.threads or 1)
        if workers is None:
            workers = gpus if use_gpu else max(1, int(resources.get("CPU", 1) // cpus_per_actor))

        items = [
            {"file": i, "name": job.input, "path": os.path.abspath(job.input), "fmt": job.input_format}
            for i, job in enumerate(jobs)
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
            num_cpus=0,  # light work; must never wait behind the actors for a CPU
            **read_compute,
        )
        tag_args: dict[str, Any] = {
            "fn_constructor_args": (model, tagger_options),
            "batch_size": 1,
            "batch_format": "pyarrow",
            "compute": ray.data.ActorPoolStrategy(size=workers),
            "num_cpus": cpus_per_actor,
        }
        if use_gpu:
            tag_args["num_gpus"] = 1
        try:
            with warnings.catch_warnings():  # Ray >= 2.60 deprecates these pass-through actor options
                warnings.simplefilter("ignore")
                ds = ds.map_batches(_TagActor, max_restarts=-1, max_task_retries=TASK_RETRIES, **tag_args)
        except TypeError:  # a Ray that no longer passes them through: its defaults restart actors and retry
            ds = ds.map_batches(_TagActor, **tag_args)

        file, block = 0, 0
        stats: dict = {}
        t1 = time.perf_counter()
        for row in ds.iter_rows():
            key = (row["file"], row["block"])
            if key < (file, block):
                continue  # a duplicate of a block already written (never expected; harmless)
            if key != (file, block):
                raise AssertionError(f"ray engine: expected block {(file, block)} next, got {key}")
            if row["kind"] == "error":
                raise pickle.loads(row["payload"])
            job = jobs[file]
            if writer is None:
                stats = {"input": job.input, "output": job.output, "sentences": 0, "tokens": 0, "entities": 0}
                t1 = time.perf_counter()
                bar.set_description(os.path.basename(job.input))
                writer = open_writer(job.output, job.output_format, input_path=job.input, input_fmt=job.input_format)
                read_sentences = read_tokens = 0
            if row["kind"] == "end":
                if (read_sentences, read_tokens) != (row["sentences"], row["tokens"]):
                    raise AssertionError(
                        f"{job.input}: read {row['sentences']} sentences / {row['tokens']} tokens, "
                        f"wrote {read_sentences} / {read_tokens}"
                    )
                writer.commit()
                writer = None
                stats["seconds"] = round(time.perf_counter() - t1, 3)
                summary.per_file.append(stats)
                summary.files += 1
                summary.sentences += stats["sentences"]
                summary.tokens += stats["tokens"]
                summary.entities += stats["entities"]
                file, block = file + 1, 0
                continue
            core: list[Sentence] = pickle.loads(row["payload"])
            if len(core) != row["sentences"]:
                raise AssertionError(f"{job.input}: block {block} has {len(core)} sentences, expected {row['sentences']}")
            for sent in core:
                if len(sent.pred or []) != len(sent.tokens):
                    raise AssertionError(f"{sent.path}:{sent.line}: {len(sent.tokens)} tokens, {len(sent.pred or [])} tags")
                writer.write(sent)
                read_sentences += 1
                read_tokens += len(sent.tokens)
                if not sent.tokens:
                    continue
                stats["sentences"] += 1
                stats["tokens"] += len(sent.tokens)
                stats["entities"] += len(conll_chunks(sent.pred or []))
                if scorer is not None and sent.tags is not None:
                    scorer.add(sent.tags, sent.pred or [])
                bar.update(1)
            block += 1
        if file != len(jobs):
            raise AssertionError(f"ray engine: {len(jobs) - file} file(s) never finished")
    finally:
        if writer is not None:
            writer.abort()
        bar.close()
        ctx.execution_options.preserve_order, ctx.target_max_block_size, ctx.enable_progress_bars = saved_ctx
        data_log.setLevel(saved_level)
        if started:
            ray.shutdown()
        summary.seconds = time.perf_counter() - t0
    return summary
