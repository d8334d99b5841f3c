"""The Ray engine: the driver plans, Ray workers read, tag and write.

Data flow::

    driver   jobs (inputs listed, outputs named) ──▶ units ──▶ actor pool ──▶ small results, in unit order
               │ an input over ``part_size`` bytes:                             ──▶ summary, --log-json lines,
               │ scan tasks find its cuts ──▶ one unit per slice                    parts manifests, report scores
    worker   TagWorker (a Tagger, loaded once): plan_run of its unit (manifest, --resume, input contents)
               ──▶ the local engine's JobRun under the output's lock: read its input (or slice), tag,
               write atomically with checkpoints and rejects ──▶ stats, model counters, notes, error, scores

* **Planning.** The jobs come from :func:`nerbatch.run.plan.plan_jobs` (inputs listed, outputs named,
  paths checked). The driver reads the inputs' sizes only; an input of more than ``part_size`` bytes
  that can be cut (:func:`nerbatch.io.split.splittable`) is cut by Ray tasks: one per chunk of bytes
  (:func:`~nerbatch.io.split.scan_chunk`; Parquet: one reading the footer,
  :func:`~nerbatch.io.split.parquet_slices`) whose small results the driver joins into slices
  (:func:`~nerbatch.io.split.join_scans`). What is left to do of each unit (up to date, resumed from a
  checkpoint, fresh) is decided by the worker that runs it, with :func:`nerbatch.run.plan.plan_run`,
  so the inputs' contents are read where they are tagged.
* **Units.** A unit is a whole input, or one slice of a cut input written to one part file of a
  parts folder named after the output (:mod:`nerbatch.io.parts`: ``out.conll/part-00000.conll`` ...,
  ``out.conll/parts.json``). The parts concatenated in order are the local engine's output.
* **Workers.** :class:`TagWorker` actors (one GPU each on a GPU cluster, else ``threads or 1`` CPUs)
  each load ``Tagger(model, options)`` once and run the local engine's
  :class:`~nerbatch.run.local.JobRun` for one unit at a time: the same reader, tagger blocks, writer,
  atomic output, output lock, manifest, checkpoints and rejects file as ``--engine local``, so the
  outputs are the same bytes. A unit returns counts, seconds, the model's counters, the notes and
  messages it printed, its error (raised by the driver as the local engine would raise it) and, for
  a report, its outputs' scores (:class:`~nerbatch.evaluation.evaluate.ReportSink`, merged on the driver in job
  order). A cut input with a report is scored by a worker, reading its parts folder as one input,
  once all its parts are in place.
* **The driver** opens no input and no output. It writes the parts manifests, the ``--log-json``
  lines, and takes each output's lock once before the run (and holds a parts folder's for the run).
* **Failures.** A dead actor is restarted by Ray without limit and its unit retried (at most
  ``TASK_RETRIES`` times), from the start or, under ``--resume``, from its last checkpoint. A unit that
  fails (a bad input without ``--on-error skip``) stops the run: no further unit starts, those
  running finish, and the first error in job order is raised. If the driver dies, run again with
  ``--resume``: complete outputs and parts are skipped and partial ones continue from their checkpoints.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from ..errors import InputError, NerbatchError, OutputError
from ..io import EXTENSION_FOR, ReadOptions, split_compression
from ..io.base import STDIO
from ..io.split import PART_SIZE
from ..tagging.tagger import TaggerOptions
from .local import COUNTS, RunOptions, ScoreSink, TagSummary, append_log, streamed
from .plan import FileJob

RAY_HINT = "pip install 'nerbatch[ray]'"
# Upper bound on the context budget in subwords (a model window is at most 512 subwords).
MAX_WINDOW = 512
# A dead actor is restarted without limit (losing a node must not end the run), but one unit is
# retried at most this many times, so a unit that kills every actor fails the run instead of looping.
TASK_RETRIES = 3


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs Ray, which is not installed", hint=RAY_HINT) from None
    return ray


def context_need(tagger) -> int:
    """Words of neighbouring sentences the model's document context reaches (0: it uses none).

    For a model folder the driver can see, the settings come from its JSON files (the weights are
    not loaded on the driver). A hub id gets the safe bound.
    """
    if os.path.isdir(tagger.model_name):
        return tagger.settings.context_need()
    return 0 if tagger.options.context is False else MAX_WINDOW


# -- workers -----------------------------------------------------------------------------------


class _NoBar:
    """The progress bar :class:`~nerbatch.run.local.JobRun` updates: the driver's counts units instead."""

    def update(self, n: int = 1) -> None:
        pass


class TagWorker:
    """A Ray actor (made remote by :func:`run_ray`): loads the tagger once, then runs one unit per
    :meth:`run` call with the local engine's job code, and scores a parts folder per :meth:`score` call.

    ``driver_cwd``: the driver's working directory; a relative path that does not exist from the
    worker's own working directory but does from the driver's is taken from there (a local Ray, or
    a shared filesystem mounted at the same path), else as given (a Ray job's ``working_dir``).
    """

    def __init__(self, model: str, options: TaggerOptions, read_options: ReadOptions, run: RunOptions,
                 sink: bytes | None, driver_cwd: str) -> None:
        self.error: NerbatchError | None = None
        self.tagger = None
        self.read_options, self.run_options, self.sink, self.driver_cwd = read_options, run, sink, driver_cwd
        self.done = 0
        self.follow(model)
        try:
            from ..tagging.tagger import Tagger

            self.tagger = Tagger(model, options)
            self.tagger.load()  # weights now, once per actor
            from ..core.collector import for_this_process

            for_this_process()
        except NerbatchError as exc:  # travels as data, so the driver raises it as the local engine would
            self.error = exc

    def follow(self, *paths: str) -> None:
        """Work from the driver's directory when a relative path is missing here but found there."""
        here = os.getcwd()
        if self.driver_cwd == here or not os.path.isdir(self.driver_cwd):
            return
        for path in paths:
            if path and not os.path.isabs(path) and not os.path.exists(path) and os.path.exists(os.path.join(self.driver_cwd, path)):
                os.chdir(self.driver_cwd)
                return

    def run(self, job: FileJob, scored: bool) -> dict:
        """Tag one unit (``job``; ``scored``: score its output for a report) and say what happened."""
        if self.error is not None:
            return {"error": self.error}
        from .local import JobRun, plan
        from .manifest import OutputLock

        self.follow(job.input, os.path.dirname(job.output))
        tagger = self.tagger
        before = (tagger.sentences_tagged, tagger.forward_seconds)
        sink = pickle.loads(self.sink) if scored and self.sink is not None else None
        out: dict[str, Any] = {"sink": sink}
        printed = io.StringIO()
        try:
            with contextlib.redirect_stderr(printed):
                planned = plan([job], tagger, self.read_options, self.run_options)[0]
                out["note"] = planned.note
                run = self.run_options
                thresholds = None
                if run.min_score is not None:  # --min-score here, --review lines to the driver
                    from .review import Thresholds

                    thresholds = Thresholds(run.min_score, keep_lines=run.review is not None)
                unit = JobRun(planned, tagger, self.read_options, sink, run, _NoBar(), thresholds)
                if streamed(job.output):
                    out["stats"] = unit.run()
                else:
                    with OutputLock(job.output):
                        out["stats"] = unit.run()
            if thresholds is not None:
                out["dropped"], out["review"] = thresholds.dropped, thresholds.lines
        except NerbatchError as exc:
            out["error"] = exc
        out["printed"] = printed.getvalue()
        out["tagged"] = tagger.sentences_tagged - before[0]
        out["forward_seconds"] = tagger.forward_seconds - before[1]
        self.done += 1
        return out

    def score(self, job: FileJob) -> dict:
        """Score a complete parts folder (``job.output``) as one output, for a report."""
        sink = pickle.loads(self.sink)
        try:
            self.follow(job.output)
            sink.open(job).close()
        except NerbatchError as exc:
            return {"error": exc}
        return {"sink": sink}


# -- driver ------------------------------------------------------------------------------------


@dataclass
class _Job:
    """A job on the driver: its units (one, or one per slice) and what came back of them."""

    job: FileJob
    units: list[FileJob]
    parts: list[str] | None = None  # part file names, for a job written as a parts folder
    results: list[dict] | None = None


def _start_ray(ray, address: str | None, quiet: bool) -> bool:
    """Connect to ``address``, or reuse a Ray started in this process, or start a local one (then True).

    ``quiet``: the workers' output is not relayed.
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


def _cuts(ray, jobs: list[FileJob], options: ReadOptions, part_size: int, need: bool) -> dict[int, list]:
    """The slices of each job whose input is cut (job index -> slices), found by Ray tasks."""
    from ..io.remote import is_url
    from ..io.split import chunks, join_scans, parquet_slices, scan_chunk, splittable

    scan = ray.remote(num_cpus=0)(scan_chunk)
    row_groups = ray.remote(num_cpus=0)(parquet_slices)
    pending: dict[int, Any] = {}
    for i, job in enumerate(jobs):
        if streamed(job.output) or not splittable(job.input, job.input_format, job.output_format):
            continue
        if is_url(job.input) or is_url(job.output):  # object-store files are tagged whole: parts need a filesystem
            continue
        size = os.path.getsize(job.input)
        if size <= part_size:
            continue
        if os.path.lexists(job.output) and not os.path.isdir(job.output):
            continue  # a file is there (an earlier run's): the output stays one file
        if job.input_format == "parquet":
            pending[i] = row_groups.remote(job.input, options, part_size, need)
        else:
            # a CoNLL/JSONL output numbering sentences within documents needs cuts at documents
            rule = "sentence" if not need and (job.input_format == "jsonl" or job.output_format == "conll") else "document"
            refs = [scan.remote(job.input, job.input_format, options, lo, hi, need) for lo, hi in chunks(size, part_size)]
            pending[i] = (refs, job.input_format, rule, size)
    out = {}
    for i, what in pending.items():
        if isinstance(what, tuple):
            refs, fmt, rule, size = what
            slices = join_scans(ray.get(refs), fmt, rule, size)
        else:
            slices = ray.get(what)
        if slices and len(slices) > 1:
            out[i] = slices
    return out


def _part_extension(job: FileJob) -> str:
    """A part file's extension: the output format's, plus the output's compression suffix."""
    return EXTENSION_FOR[job.output_format] + split_compression(job.output)[1]


def _plan_units(jobs: list[FileJob], cuts: dict[int, list]) -> list[_Job]:
    from ..io.parts import is_parts_folder, part_name

    planned = []
    for i, job in enumerate(jobs):
        slices = cuts.get(i)
        if slices is None and not (os.path.isdir(job.output) and is_parts_folder(job.output)):
            planned.append(_Job(job, [job]))
            continue
        slices = slices or [None]  # a parts folder already there: this run's output is one part
        names = [part_name(k, _part_extension(job)) for k in range(len(slices))]
        units = [replace(job, output=os.path.join(job.output, name), part=part) for name, part in zip(names, slices)]
        planned.append(_Job(job, units, names))
    return planned


def _open_parts_folder(item: _Job) -> None:
    """Make the parts folder and say in its manifest that its parts are being written."""
    from ..io.parts import write_manifest

    try:
        os.makedirs(item.job.output, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{item.job.output}: cannot make the parts folder: {exc.strerror or exc}") from None
    write_manifest(item.job.output, item.job.output_format, item.parts, complete=False, source=item.job.input)


def _job_stats(item: _Job) -> dict:
    """One record per job, as the local engine logs it: a parts job's parts added up."""
    records = [r["stats"] for r in item.results]
    out = dict(records[0], input=item.job.input, output=item.job.output)
    if item.parts is not None:
        out["parts"] = len(records)
    if len(records) == 1:
        return out
    skipped = next((r for r in records if r["status"] == "skipped"), None)
    if skipped is not None:
        return dict(skipped, input=item.job.input, output=item.job.output, parts=len(records))
    statuses = [r["status"] for r in records]
    if len(set(statuses)) > 1:
        out["status"] = f"resumed ({sum(1 for s in statuses if s != 'done')} of {len(records)} parts complete or resumed)"
    for key in (*COUNTS, "subword_tokens", "padded_tokens"):
        out[key] = sum(r.get(key, 0) for r in records)
    for key in ("seconds", "forward_seconds"):
        out[key] = round(sum(r.get(key, 0.0) for r in records), 3)
    stages: dict = {}
    for r in records:
        for key, value in r.get("stage_seconds", {}).items():
            stages[key] = round(stages.get(key, 0.0) + value, 3)
    out["stage_seconds"] = stages
    return out


def _raise(exc: NerbatchError) -> None:
    if isinstance(exc, InputError) and exc.line is None and exc.path and os.path.exists(exc.path) and "Ray workers" not in (exc.hint or ""):
        exc.hint = (exc.hint + "; " if exc.hint else "") + (
            "the driver can read it but the Ray workers cannot: inputs must be on a filesystem "
            "that every node mounts at the same path"
        )
    raise exc


def run_ray(
    jobs: list[FileJob],
    tagger,
    *,
    options: ReadOptions = ReadOptions(),
    scores: ScoreSink | None = None,
    progress: bool = True,
    run: RunOptions = RunOptions(),
    workers: int | None = None,
    address: str | None = None,
    part_size: int = PART_SIZE,
    worker: type = TagWorker,
) -> TagSummary:
    """Tag each job's input into its output on Ray; the outputs are those of
    :func:`~nerbatch.run.local.run_local` on the same jobs, tagger and options (see the module docstring).

    ``tagger``: a :class:`~nerbatch.tagging.tagger.Tagger`; the driver reads its settings only, each worker
    loads its own copy. ``workers``: tagging actors (default: one per GPU of the cluster, else one per
    ``threads or 1`` CPUs; never more than there are units). ``address``: join that cluster (``auto``,
    ``ray://host:10001``) and leave it running; without it a Ray already initialised in this process is
    used, else a local one is started for the run and shut down after it. ``part_size``: an input of
    more bytes is cut into slices of about that size where it can be (see :mod:`nerbatch.io.split`).
    ``scores``: a :class:`~nerbatch.evaluation.evaluate.ReportSink`, which each worker's scores are
    merged into. ``worker``: the actor class (a subclass of :class:`TagWorker`).
    """
    from .manifest import OutputLock, probe_locks

    if any(j.input == STDIO for j in jobs):
        raise InputError("--engine ray cannot read stdin", hint="pass a file, or use --engine local")
    if any(j.output == STDIO for j in jobs):
        raise InputError("--engine ray writes its outputs on the Ray workers, not to stdout",
                         hint="pass -o FILE or -o FOLDER, or use --engine local")
    if workers is not None and workers < 1:
        raise InputError("--workers must be at least 1")
    if part_size < 1:
        raise InputError("--part-size must be at least 1 byte")
    ray = _import_ray()
    model, tagger_options = tagger.model_name, tagger.options
    need = context_need(tagger) > 0
    summary = TagSummary()
    t0 = time.perf_counter()
    started = _start_ray(ray, address, quiet=not progress)
    actors: list = []
    held: list[OutputLock] = []
    bar = None
    thresholds = None
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and tagger_options.device != "cpu"
        if workers is None:
            per_actor = 1 if use_gpu else max(1, tagger_options.threads or 1)
            workers = gpus if use_gpu else max(1, int(resources.get("CPU", 1) // per_actor))
        if use_gpu and tagger_options.device.startswith("cuda"):
            # Ray gives each actor one GPU and hides the others: it is always "cuda" (cuda:0) there
            tagger_options = replace(tagger_options, device="cuda")
        probe_locks([j.output for j in jobs if not streamed(j.output)])
        items = _plan_units(jobs, _cuts(ray, jobs, options, part_size, need))
        for item in items:
            if item.parts is not None:
                lock = OutputLock(item.job.output)
                lock.acquire()
                held.append(lock)
                _open_parts_folder(item)
        units = [(n, unit) for n, item in enumerate(items) for unit in item.units]
        cpus = 1 if use_gpu else max(1, tagger_options.threads or 1)
        remote = ray.remote(worker).options(num_cpus=cpus, num_gpus=1 if use_gpu else 0, max_restarts=-1,
                                            max_task_retries=TASK_RETRIES)
        sink = pickle.dumps(scores) if scores is not None else None  # each worker scores into a copy
        args = (model, tagger_options, options, run, sink, os.getcwd())
        actors = [remote.remote(*args) for _ in range(max(1, min(workers, len(units))))]
        from tqdm import tqdm

        bar = tqdm(unit=" sent", disable=not progress or not sys.stderr.isatty(), dynamic_ncols=True, leave=False)
        if run.min_score is not None:
            from .review import Thresholds

            thresholds = Thresholds(run.min_score, run.review)  # the review file, in unit order
        sinks = _dispatch(ray, actors, items, units, scores is not None, summary, run, bar, thresholds)
        if thresholds is not None:
            thresholds.commit()
            summary.dropped = thresholds.dropped
        if scores is not None:
            for one in sinks:
                scores.merge(one)
    except BaseException as exc:
        if thresholds is not None:
            thresholds.abort()
        if isinstance(exc, KeyboardInterrupt):
            for actor in actors:
                ray.kill(actor)
        raise
    finally:
        if bar is not None:
            bar.close()
        for lock in held:
            lock.release()
        if started:
            ray.shutdown()
    summary.seconds = time.perf_counter() - t0  # Ray and actor start-up included
    choice = getattr(tagger, "precision_choice", None)  # the actors run the driver's resolved options
    summary.precision = choice.reason if choice is not None else ""
    return summary


def _dispatch(ray, actors: list, items: list[_Job], units: list, scored: bool, summary: TagSummary,
              run: RunOptions, bar, thresholds=None) -> list:
    """Run the units on the actors, at most one each at a time, and take the results in unit order
    (job records, parts manifests, scoring of parts folders); returns the jobs' score sinks in job order."""
    from ..io.parts import write_manifest

    queue: deque = deque(("run", k) for k in range(len(units)))
    idle = list(actors)
    running: dict = {}
    results: dict[int, dict] = {}
    sinks: dict[int, Any] = {}
    error: NerbatchError | None = None
    handled = 0
    for item in items:
        item.results = []
    while queue or running:
        while idle and queue and error is None:
            kind, k = queue.popleft()
            actor = idle.pop()
            if kind == "run":
                n, unit = units[k]
                ref = actor.run.remote(unit, scored and items[n].parts is None)
            else:
                ref = actor.score.remote(items[k].job)
            running[ref] = (kind, k, actor)
        if not running:
            break
        done, _ = ray.wait(list(running), num_returns=1)
        kind, k, actor = running.pop(done[0])
        idle.append(actor)
        result = ray.get(done[0])
        if kind == "score":
            if "error" in result and error is None:
                error = result["error"]
            sinks[k] = result.get("sink")
            continue
        results[k] = result
        while handled in results and error is None:
            result = results.pop(handled)
            n, _unit = units[handled]
            handled += 1
            if result.get("printed"):
                sys.stderr.write(result["printed"])
            if result.get("note"):
                print(f"nerbatch: {result['note']}", file=sys.stderr)
            if "error" in result:
                error = result["error"]
                break
            item = items[n]
            item.results.append(result)
            if thresholds is not None:  # --min-score: the worker's count and --review lines
                thresholds.dropped += result.get("dropped", 0)
                for line in result.get("review") or ():
                    thresholds.add(line)
            summary.tagged += result["tagged"]
            summary.forward_seconds += result["forward_seconds"]
            bar.update(result["stats"].get("sentences", 0) if result["stats"]["status"] != "up to date" else 0)
            if len(item.results) < len(item.units):
                continue
            stats = _job_stats(item)
            if item.parts is not None:
                if stats["status"] == "skipped":  # a bad input skipped as a whole: no output, as locally
                    shutil.rmtree(item.job.output, ignore_errors=True)
                else:
                    write_manifest(item.job.output, item.job.output_format, item.parts, complete=True, source=item.job.input)
                    if scored:
                        queue.appendleft(("score", n))
            elif scored:
                sinks[n] = result.get("sink")
            summary.add(stats)
            if run.log_json:
                append_log(run.log_json, stats)
    if error is not None:
        _raise(error)
    return [sinks[n] for n in sorted(sinks) if sinks[n] is not None]
