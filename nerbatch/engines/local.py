"""The local engine: each input file streams through the tagger into its own atomic output."""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field

from ..errors import InputError, Interrupted
from ..evaluate import READABLE_OUTPUTS, FileScore, score_output
from ..io import ReadOptions, open_writer, read
from ..io.base import STDIO
from ..plan import FileJob, PlannedJob, output_fingerprint, plan_run, rejects_path
from ..scoring import Scorer, conll_chunks


@dataclass
class TagSummary:
    files: int = 0
    sentences: int = 0
    tokens: int = 0
    entities: int = 0
    skipped: int = 0  # records (or whole files) rejected under --on-error skip
    up_to_date: int = 0  # outputs left alone by --resume
    tagged: int = 0  # sentences the model tagged in this run (not those of complete or resumed-over parts)
    seconds: float = 0.0
    forward_seconds: float = 0.0
    precision: str = ""  # the precision used and, for auto, why: "bf16 (auto: 3.1x fp32 here)"
    per_file: list[dict] = field(default_factory=list)

    def line(self) -> str:
        rate = self.sentences / self.seconds if self.seconds else 0.0
        extra = ""
        if self.skipped:
            extra += f", {self.skipped:,} skipped (see the .rejects.jsonl files)"
        if self.up_to_date:
            extra += f", {self.up_to_date} output(s) already complete"
        return (
            f"nerbatch: {self.files} file(s), {self.sentences:,} sentences, {self.tokens:,} tokens, "
            f"{self.entities:,} entities{extra} in {self.seconds:.1f} s ({rate:,.0f} sentences/s)"
            + (f"; precision {self.precision}" if self.precision else "")
        )


@dataclass(frozen=True)
class RunOptions:
    """How a run behaves unattended (see README "Running from cron")."""

    resume: bool = False  # skip complete outputs, continue partial ones from their last checkpoint
    checkpoint_every: int = 10_000  # sentences between checkpoints inside a file (0: never)
    log_json: str | None = None  # append one JSON record per file here


def plan(jobs: list[FileJob] | list[PlannedJob], tagger, options: ReadOptions, run: RunOptions) -> list[PlannedJob]:
    """The run plan of :mod:`nerbatch.plan` for these jobs (jobs already planned are kept as they are)."""
    if all(isinstance(j, PlannedJob) for j in jobs):
        return list(jobs)  # type: ignore[arg-type]
    o = tagger.options
    fp = output_fingerprint(options, tagger.settings, o.precision, o.compile, o.decode)
    return plan_run(list(jobs), tagger.model_name, fp, run.resume)


def tag_files(
    jobs: list[FileJob] | list[PlannedJob],
    tagger,
    *,
    options: ReadOptions = ReadOptions(),
    scorer: Scorer | None = None,
    progress: bool = True,
    run: RunOptions = RunOptions(),
) -> TagSummary:
    """Tag each job's input into its output.

    Outputs appear atomically (a failed file leaves no output behind); the output location is
    locked for the run; every ``run.checkpoint_every`` sentences the partial output is made durable
    so ``run.resume`` can continue it. When ``scorer`` is given, every output is scored
    (``tag --report``): a file output by reading it back once complete, so a resumed or already
    complete output counts whole (the numbers of ``nerbatch evaluate`` on it); stdout and HTML,
    which cannot be read back (nor resumed, for HTML with a scorer), are scored on the way.
    """
    from tqdm import tqdm

    from ..checkpoint import OutputLock, probe_locks

    summary = TagSummary()
    t0 = time.perf_counter()
    planned = plan(jobs, tagger, options, run)
    bar = tqdm(unit=" sent", disable=not progress or not sys.stderr.isatty(), dynamic_ncols=True, leave=False)
    probe_locks([p.job.output for p in planned if p.job.output != STDIO])
    try:
        for item in planned:
            bar.set_description(os.path.basename(item.job.input))
            if item.job.output == STDIO:
                stats = _run_job(item, tagger, options, scorer, run, bar)
            else:
                with OutputLock(item.job.output):
                    stats = _run_job(item, tagger, options, scorer, run, bar)
            summary.per_file.append(stats)
            if stats["status"] == "up to date":
                summary.up_to_date += 1
            else:
                summary.files += 1
            for key in ("sentences", "tokens", "entities", "skipped"):
                setattr(summary, key, getattr(summary, key) + stats[key])
            if run.log_json:
                _log(run.log_json, stats)
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t0
        summary.forward_seconds = tagger.forward_seconds
        summary.tagged = tagger.sentences_tagged
        choice = getattr(tagger, "precision_choice", None)
        summary.precision = choice.reason if choice is not None else ""
    return summary


def _log(path: str, record: dict) -> None:
    import json

    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError as exc:
        from ..errors import OutputError

        raise OutputError(f"{path}: cannot append the JSON log: {exc.strerror}") from None


def _finish_stats(stats: dict, tagger, before: dict, t1: float) -> None:
    stats["seconds"] = round(time.perf_counter() - t1, 3)
    # model-side counters of this file: time inside forward, subword tokens, padded batch slots
    stats["forward_seconds"] = round(getattr(tagger, "forward_seconds", 0) - before["forward_seconds"], 3)
    stats["subword_tokens"] = getattr(tagger, "tokens_seen", 0) - before["tokens_seen"]
    stats["padded_tokens"] = getattr(tagger, "padded_tokens", 0) - before["padded_tokens"]
    # what ran: the precision (``auto`` resolved) and the back-end at the file's end (a background
    # compile may have swapped "eager" for "compiled" during it)
    stats["precision"] = getattr(getattr(tagger, "options", None), "precision", None)
    stats["backend"] = getattr(getattr(tagger, "backend", None), "kind", None)


def _run_job(planned: PlannedJob, tagger, options: ReadOptions, scorer, run: RunOptions, bar) -> dict:
    import json

    from ..checkpoint import remove_manifest, save_manifest, sidecar
    from ..io.base import AtomicOutput

    job, fp = planned.job, planned.fingerprint
    stats = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "input": job.input,
        "output": job.output,
        "status": "done",
        "sentences": 0,
        "tokens": 0,
        "entities": 0,
        "skipped": 0,
        "seconds": 0.0,
    }
    t1 = time.perf_counter()
    counters = ("forward_seconds", "tokens_seen", "padded_tokens")
    before = {k: getattr(tagger, k, 0) for k in counters}
    stdout = job.output == STDIO
    resume = planned.checkpoint
    if planned.status == "up to date":
        stats.update(planned.stats or {}, status="up to date", seconds=0.0)
        if scorer is not None:
            score_output(job.output, job.output_format, scorer, input_fmt=job.input_format, options=options)
        return stats
    if resume:
        stats.update({k: resume["stats"][k] for k in ("sentences", "tokens", "entities", "skipped")})
        stats["status"] = f"resumed after {resume['sentences']} records"
    part = sidecar(job.output, "part") if fp else None
    rejects_file = rejects_path(job.output) if not stdout else None
    rejects: AtomicOutput | None = None
    writer = None
    done = resume["sentences"] if resume else 0
    durable = done if resume else None  # sentences a later --resume can continue after
    # a CoNLL output carries -DOCSTART- lines that conlleval counts; score them the same way
    docstart = "input" if job.input_format == job.output_format == "conll" else None
    on_the_way = None  # stdout and HTML outputs cannot be read back: score them while writing
    if scorer is not None and (stdout or job.output_format not in READABLE_OUTPUTS):
        if resume:
            raise InputError("an HTML output cannot be resumed with a report", path=job.output, hint="write CoNLL, JSONL or Parquet, or run without --resume")
        on_the_way = FileScore(scorer, job.input, job.input_format, options=options, docstart=docstart, pred_from="model", context="report", defer=True)
    try:
        writer = open_writer(
            job.output, job.output_format, input_path=job.input, input_fmt=job.input_format, part=part, resume=resume
        )
        if rejects_file and options.on_error == "skip":
            rejects = AtomicOutput(
                rejects_file,
                part=sidecar(rejects_file, "part"),
                resume_bytes=resume.get("rejects_bytes") if resume else None,
            )
        # blocks no larger than the checkpoint interval, so each checkpoint comes when its sentences are done
        every = run.checkpoint_every if fp else 0
        for sent in tagger.tag(read(job.input, job.input_format, options), skip=done, block=every or None):
            writer.write(sent)
            done += 1
            if sent.error is not None:
                stats["skipped"] += 1
                record = {"file": sent.path, "line": sent.line, "error": sent.error, "source": sent.source}
                if rejects is not None:
                    rejects.write(json.dumps(record, ensure_ascii=False) + "\n")
                else:
                    print(f"nerbatch: skipped {sent.error}", file=sys.stderr)
            elif sent.tokens:
                stats["sentences"] += 1
                stats["tokens"] += len(sent.tokens)
                stats["entities"] += len(conll_chunks(sent.pred or []))
                bar.update(1)
            if on_the_way is not None:
                on_the_way.add(sent)
            if fp and run.checkpoint_every and done % run.checkpoint_every == 0:
                ck = writer.checkpoint()
                if rejects is not None:
                    ck["rejects_bytes"] = rejects.sync()
                ck["sentences"] = done
                ck["stats"] = {k: stats[k] for k in ("sentences", "tokens", "entities", "skipped")}
                save_manifest(job.output, {"fingerprint": fp, "complete": False, "checkpoint": ck})
                durable = done

        def sealed(st) -> None:
            # the manifest says "complete" before the output appears, naming the file that will
            # appear (the rename keeps its inode): a kill between the two leaves nothing claimed
            _finish_stats(stats, tagger, before, t1)
            if fp:
                out = {"inode": st.st_ino, "size": st.st_size}
                save_manifest(job.output, {"fingerprint": fp, "complete": True, "output": out, "stats": stats})

        writer.commit(before_rename=sealed)
        if rejects is not None:
            if stats["skipped"]:
                rejects.commit()
            else:
                rejects.abort()
    except InputError as exc:
        # bad input: no output at all (nothing to resume; the same input would fail again)
        if writer is not None:
            writer.abort()
        if rejects is not None:
            rejects.abort()
        if fp:
            remove_manifest(job.output)
        if options.on_error != "skip":
            raise
        stats.update(status="skipped", error=str(exc), skipped=stats["skipped"] + 1)
        print(f"nerbatch: skipped {exc}", file=sys.stderr)
        return stats
    except BaseException as exc:
        # interrupted or failed for another reason: keep the partial output only where --resume
        # will use it (a checkpoint of it is in the manifest)
        keep = fp is not None and durable is not None
        if writer is not None:
            writer.abort(keep=keep)
        if rejects is not None:
            rejects.abort(keep=keep)
        if isinstance(exc, KeyboardInterrupt):
            kept = (part, durable) if keep and part else None
            if isinstance(exc, Interrupted):
                exc.kept = kept
                raise
            raise Interrupted(signal.SIGINT, kept) from exc
        raise
    if "subword_tokens" not in stats:
        _finish_stats(stats, tagger, before, t1)  # stdout: nothing was renamed
    if on_the_way is not None:
        on_the_way.finish()
    elif scorer is not None:
        score_output(job.output, job.output_format, scorer, input_fmt=job.input_format, options=options)
    return stats
