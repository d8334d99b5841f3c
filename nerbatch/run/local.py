"""The local engine: each input file streams through the tagger into its own atomic output."""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Protocol

from ..core.record import Sentence
from ..core.schemes import count_chunks
from ..errors import InputError, Interrupted
from ..io import ReadOptions, open_writer, read
from ..io.atomic import is_stream
from ..io.base import STDIO, unwatch_input
from ..io.conll import writable_as_conll
from ..io.paths import rejects_path
from .plan import FileJob, PlannedJob, output_fingerprint, plan_run


@dataclass
class TagSummary:
    files: int = 0
    sentences: int = 0
    tokens: int = 0
    entities: int = 0
    skipped: int = 0  # records (or whole files) rejected under --on-error skip
    up_to_date: int = 0  # outputs left alone by --resume
    dropped: int = 0  # entities turned into O by --min-score
    tagged: int = 0  # sentences the model tagged in this run (not those of complete or resumed-over parts)
    seconds: float = 0.0
    forward_seconds: float = 0.0
    precision: str = ""  # the precision used and, for auto, why: "bf16 (auto: 3.1x fp32 here)"
    stage_seconds: dict = field(default_factory=dict)  # seconds per stage (STAGES), summed over files
    per_file: list[dict] = field(default_factory=list)

    def add(self, stats: dict) -> None:
        """Count one job's record (a :class:`JobRun`'s stats) into the summary; both engines do."""
        self.per_file.append(stats)
        if stats["status"] == "up to date":
            self.up_to_date += 1
        else:
            self.files += 1
        for key in COUNTS:
            setattr(self, key, getattr(self, key) + stats[key])
        for key, value in stats.get("stage_seconds", {}).items():
            self.stage_seconds[key] = self.stage_seconds.get(key, 0.0) + value

    def line(self) -> str:
        rate = self.sentences / self.seconds if self.seconds else 0.0
        extra = ""
        if self.skipped:
            extra += f", {self.skipped:,} skipped (see the .rejects.jsonl files)"
        if self.up_to_date:
            extra += f", {self.up_to_date} output(s) already complete"
        if self.dropped:
            extra += f", {self.dropped:,} entities below --min-score dropped"
        return (
            f"nerbatch: {self.files} file(s), {self.sentences:,} sentences, {self.tokens:,} tokens, "
            f"{self.entities:,} entities{extra} in {self.seconds:.1f} s ({rate:,.0f} sentences/s)"
            + (f"; precision {self.precision}" if self.precision else "")
            + (f"; {stage_line(self.stage_seconds)}" if self.stage_seconds else "")
        )


STAGES = ("read", "prepare", "model", "decode", "write")


def stage_line(stages: dict) -> str:
    """``time: read 1.2 s, prepare ..., write 0.4 s; bound by prepare``: where the seconds went. The
    stages overlap (reading and preparing run in a background thread), so they need not sum to the wall time."""
    parts = ", ".join(f"{k} {stages.get(k, 0.0):.1f} s" for k in STAGES)
    return f"time: {parts}; bound by {max(STAGES, key=lambda k: stages.get(k, 0.0))}"


@dataclass(frozen=True)
class RunOptions:
    """How a run behaves unattended (see README "Running from cron")."""

    resume: bool = False  # skip complete outputs, continue partial ones from their last checkpoint
    checkpoint_every: int = 10_000  # sentences between checkpoints inside a file (0: never)
    log_json: str | None = None  # append one JSON record per file here
    min_score: float | None = None  # entities scored below it become O (nerbatch.run.review)
    review: str | None = None  # with min_score: the dropped and borderline entities go to this JSONL file
    scores: bool = False  # CoNLL outputs get a word-score column


class SentenceTagger(Protocol):
    """What an engine drives: the :class:`~nerbatch.tagging.tagger.Tagger`, or the Ray engine's
    stand-in on the driver. The counters are the model's work so far (the run's log reads them)."""

    model_name: str
    options: object
    forward_seconds: float  # seconds inside the model's forward
    tokens_seen: int  # subword tokens sent to the model
    padded_tokens: int  # batch slots, padding included
    sentences_tagged: int
    stage_seconds: dict  # seconds of the tagger's stages ("prepare", "model", "decode") so far

    def tag_sentences(self, sentences: Iterable[Sentence], skip: int = 0, block: int | None = None) -> Iterator[Sentence]: ...


class JobScore(Protocol):
    def add(self, sent: Sentence) -> None: ...

    def close(self) -> None: ...


class ScoreSink(Protocol):
    """Where ``tag --report`` scores go (:class:`nerbatch.evaluation.evaluate.ReportSink`): ``open``
    per output (``resumed``: it continues a checkpoint), then ``add`` per sentence written and
    ``close`` once the output is complete."""

    def open(self, job: FileJob, resumed: bool = False) -> JobScore: ...

    def merge(self, other: "ScoreSink") -> None:
        """Add the scores of another sink of the same run (a Ray worker's), after these."""


def plan(jobs: list[FileJob], tagger: SentenceTagger, options: ReadOptions, run: RunOptions) -> list[PlannedJob]:
    """The run plan of :mod:`nerbatch.run.plan` for these jobs and this tagger's output-changing options."""
    o = tagger.options
    fp = output_fingerprint(options, tagger.settings, o.precision, o.compile, o.decode, o.label_map, o.runtime)
    # what else changes an output (absent when unset, so outputs made before these existed stay current)
    more = {"min_score": run.min_score, "scores": run.scores or None, "raw_scores": getattr(o, "raw_scores", False) or None}
    fp.update({k: v for k, v in more.items() if v is not None})
    return plan_run(list(jobs), tagger.model_name, fp, run.resume)


def run_local(
    planned: list[PlannedJob],
    tagger: SentenceTagger,
    *,
    options: ReadOptions = ReadOptions(),
    scores: ScoreSink | None = None,
    progress: bool = True,
    run: RunOptions = RunOptions(),
) -> TagSummary:
    """Tag each planned job's input into its output, in this process.

    Outputs appear atomically (a failed file leaves no output behind); the output location is
    locked for the run; every ``run.checkpoint_every`` sentences the partial output is made durable
    so ``run.resume`` can continue it. ``scores``: every output is scored there (``tag --report``).
    """
    from ..core.collector import fewer_collections

    with fewer_collections():
        return _run_local(planned, tagger, options, scores, progress, run)


def _run_local(planned: list[PlannedJob], tagger: SentenceTagger, options: ReadOptions, scores: ScoreSink | None,
               progress: bool, run: RunOptions) -> TagSummary:
    from tqdm import tqdm

    from .manifest import OutputLock, probe_locks

    summary = TagSummary()
    t0 = time.perf_counter()
    bar = tqdm(unit=" sent", disable=not progress or not sys.stderr.isatty(), dynamic_ncols=True, leave=False)
    for item in planned:
        if item.note:
            print(f"nerbatch: {item.note}", file=sys.stderr)
    probe_locks([p.job.output for p in planned if not streamed(p.job.output)])
    thresholds = None
    if run.min_score is not None:
        from .review import Thresholds

        thresholds = Thresholds(run.min_score, run.review)
    try:
        for item in planned:
            bar.set_description(os.path.basename(item.job.input))
            job = JobRun(item, tagger, options, scores, run, bar, thresholds)
            if streamed(item.job.output):
                stats = job.run()
            else:
                with OutputLock(item.job.output):
                    stats = job.run()
            summary.add(stats)
            if run.log_json:
                append_log(run.log_json, stats)
        if thresholds is not None:
            thresholds.commit()
            summary.dropped = thresholds.dropped
    except BaseException:
        if thresholds is not None:
            thresholds.abort()
        raise
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t0
        summary.forward_seconds = tagger.forward_seconds
        summary.tagged = tagger.sentences_tagged
        choice = getattr(tagger, "precision_choice", None)
        summary.precision = choice.reason if choice is not None else ""
    return summary


def streamed(output: str) -> bool:
    """stdout, or a device or FIFO: written in place, with no lock, manifest or rejects file beside it."""
    return output == STDIO or is_stream(output)


def append_log(path: str, record: dict) -> None:
    """Append one JSON record to the ``--log-json`` file."""
    import json

    from ..io.remote import append_text, is_url

    try:
        if is_url(path):  # an object cannot be appended to: rewritten whole, one output at a time
            append_text(path, json.dumps(record) + "\n")
            return
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError as exc:
        from ..errors import OutputError

        raise OutputError(f"{path}: cannot append the JSON log: {exc.strerror}") from None


COUNTS = ("sentences", "tokens", "entities", "skipped")
MODEL_COUNTERS = ("forward_seconds", "tokens_seen", "padded_tokens")


class JobRun:
    """One planned job through the local engine, in four steps: :meth:`open` the writers (fresh or
    from the checkpoint), :meth:`stream` the tagged sentences into them (checkpoints on the way),
    :meth:`seal` the output (manifest first, then the rename), or :meth:`fail` (bad input: nothing
    left; interrupted: the partial output kept where ``--resume`` can use it)."""

    def __init__(self, planned: PlannedJob, tagger: SentenceTagger, options: ReadOptions,
                 scores: ScoreSink | None, run: RunOptions, bar, thresholds=None) -> None:
        self.planned, self.job, self.fp = planned, planned.job, planned.fingerprint
        self.tagger, self.options, self.scores, self.run_options, self.bar = tagger, options, scores, run, bar
        self.thresholds = thresholds  # nerbatch.run.review.Thresholds: --min-score, --review
        self.stats: dict = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "input": self.job.input, "output": self.job.output,
            "status": "done", "sentences": 0, "tokens": 0, "entities": 0, "skipped": 0, "seconds": 0.0,
        }
        self.t1 = time.perf_counter()
        self.before = {k: getattr(tagger, k) for k in MODEL_COUNTERS}
        self.stages_before = dict(getattr(tagger, "stage_seconds", {}))
        self.read_seconds = 0.0
        self.write_seconds = 0.0
        self.resume = planned.checkpoint
        self.writer = None
        self.rejects = None
        self.score: JobScore | None = None
        self.done = self.resume["sentences"] if self.resume else 0
        self.durable = self.done if self.resume else None  # sentences a later --resume can continue after
        self.part = None
        self.watched = None  # the digest of the input bytes read so far
        self.whole = None  # the digest of the whole input, taken before reading (Parquet, datasets)

    def contents(self):
        """The input's digest as the manifest records it (read beyond the checkpoint by now)."""
        return self.watched.value() if self.watched is not None else self.whole

    def run(self) -> dict:
        if self.planned.status == "up to date":
            self.stats.update(self.planned.stats or {}, status="up to date", seconds=0.0)
            if self.scores is not None:
                self.scores.open(self.job).close()
            return self.stats
        try:
            self.open()
            self.stream()
            self.seal()
        except BaseException as exc:
            if not self.fail(exc):
                raise
            return self.stats
        finally:
            if self.watched is not None:
                unwatch_input(self.job.input, self.watched)
        if self.score is not None:
            self.score.close()
        return self.stats

    def open(self) -> None:
        from ..io import HASHED_WHILE_READING
        from ..io.base import AtomicOutput, watch_input
        from .manifest import input_digest, sidecar

        job, resume = self.job, self.resume
        if resume:
            self.stats.update({k: resume["stats"][k] for k in COUNTS})
            self.stats["status"] = f"resumed after {resume['sentences']} records"
        if self.scores is not None:
            self.score = self.scores.open(job, resumed=bool(resume))
        self.part = sidecar(job.output, "part") if self.fp else None
        # the input's contents as the manifest records them: hashed as the reader reads them, else (a
        # Parquet file, a dataset folder) whole before they are read
        if self.fp and job.input_format in HASHED_WHILE_READING:
            self.watched = watch_input(job.input)
        elif self.fp:
            try:
                self.whole = input_digest(job.input, part=job.part)
            except OSError:
                pass  # unreadable: the reader says how
        self.writer = open_writer(
            job.output, job.output_format, input_path=job.input, input_fmt=job.input_format, part=self.part, resume=resume,
            scores=self.run_options.scores,
        )
        if not streamed(job.output) and self.options.on_error == "skip":
            rejects_file = rejects_path(job.output)
            self.rejects = AtomicOutput(
                rejects_file, part=sidecar(rejects_file, "part"),
                resume_bytes=resume.get("rejects_bytes") if resume else None,
            )

    def stream(self) -> None:
        import json

        stats, writer, rejects = self.stats, self.writer, self.rejects
        every = self.run_options.checkpoint_every if self.fp else 0
        sentences = self.timed_read(read(self.job.input, self.job.input_format, self.options, part=self.job.part))
        # blocks no larger than the checkpoint interval, so each checkpoint comes when its sentences are done
        tagged = self.tagger.tag_sentences(sentences, skip=self.done, block=every or None)
        if self.thresholds is not None:
            tagged = self.thresholds.apply(tagged)
        if self.job.output_format == "conll":  # words a CoNLL line cannot hold: an error, or rejects
            tagged = writable_as_conll(tagged, skip=self.options.on_error == "skip")
        clock = time.perf_counter
        for sent in tagged:
            t0 = clock()
            writer.write(sent)
            self.done += 1
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
                stats["entities"] += count_chunks(sent.pred or ())
                self.bar.update(1)
            if self.score is not None:
                self.score.add(sent)
            if every and self.done % every == 0:
                self.checkpoint()
            self.write_seconds += clock() - t0

    def timed_read(self, sentences: Iterable[Sentence], chunk: int = 256) -> Iterator[Sentence]:
        """The reader's sentences, its seconds counted in ``read_seconds`` (a chunk at a time)."""
        from itertools import islice

        it = iter(sentences)
        while True:
            t0 = time.perf_counter()
            part = list(islice(it, chunk))
            self.read_seconds += time.perf_counter() - t0
            if not part:
                return
            yield from part

    def checkpoint(self) -> None:
        from .manifest import save_manifest

        ck = self.writer.checkpoint()
        if self.rejects is not None:
            ck["rejects_bytes"] = self.rejects.sync()
        ck["sentences"] = self.done
        ck["stats"] = {k: self.stats[k] for k in COUNTS}
        ck["input"] = self.contents()
        save_manifest(self.job.output, {"fingerprint": self.fp, "complete": False, "checkpoint": ck})
        self.durable = self.done

    def seal(self) -> None:
        from .manifest import save_manifest

        def sealed(st) -> None:
            # the manifest says "complete" before the output appears, naming the file that will
            # appear (the rename keeps its inode): a kill between the two leaves nothing claimed
            self.finish_stats()
            if self.fp:
                out = {"inode": st.st_ino, "size": st.st_size}
                save_manifest(self.job.output, {"fingerprint": self.fp, "complete": True, "output": out,
                                                "input": self.contents(), "stats": self.stats})

        self.writer.commit(before_rename=sealed)
        if self.rejects is not None:
            if self.stats["skipped"]:
                self.rejects.commit()
            else:
                self.rejects.abort()
        if "subword_tokens" not in self.stats:
            self.finish_stats()  # stdout: nothing was renamed

    def fail(self, exc: BaseException) -> bool:
        """Clean up after ``exc``; True when the run goes on (a bad file skipped under ``--on-error skip``)."""
        from .manifest import remove_manifest

        if isinstance(exc, InputError):
            # bad input: no output at all (nothing to resume; the same input would fail again)
            if self.writer is not None:
                self.writer.abort()
            if self.rejects is not None:
                self.rejects.abort()
            if self.fp:
                remove_manifest(self.job.output)
            if self.options.on_error != "skip":
                return False
            self.stats.update(status="skipped", error=str(exc), skipped=self.stats["skipped"] + 1)
            print(f"nerbatch: skipped {exc}", file=sys.stderr)
            return True
        # interrupted or failed for another reason: keep the partial output only where --resume
        # will use it (a checkpoint of it is in the manifest)
        keep = self.fp is not None and self.durable is not None
        if self.writer is not None:
            self.writer.abort(keep=keep)
        if self.rejects is not None:
            self.rejects.abort(keep=keep)
        if isinstance(exc, KeyboardInterrupt):
            kept = (self.part, self.durable) if keep and self.part else None
            if isinstance(exc, Interrupted):
                exc.kept = kept
                return False
            raise Interrupted(signal.SIGINT, kept) from exc
        return False

    def finish_stats(self) -> None:
        stats, tagger = self.stats, self.tagger
        stats["seconds"] = round(time.perf_counter() - self.t1, 3)
        # model-side counters of this file: time inside forward, subword tokens, padded batch slots
        stats["forward_seconds"] = round(tagger.forward_seconds - self.before["forward_seconds"], 3)
        stats["subword_tokens"] = tagger.tokens_seen - self.before["tokens_seen"]
        stats["padded_tokens"] = tagger.padded_tokens - self.before["padded_tokens"]
        # seconds per stage; read and prepare run in the background thread, beside the others
        now = getattr(tagger, "stage_seconds", {})
        tagged = {k: now.get(k, 0.0) - self.stages_before.get(k, 0.0) for k in ("prepare", "model", "decode")}
        stages = {"read": self.read_seconds, **tagged, "write": self.write_seconds}
        stats["stage_seconds"] = {k: round(v, 3) for k, v in stages.items()}
        # what ran: the precision (``auto`` resolved) and the back-end at the file's end (a background
        # compile may have swapped "eager" for "compiled" during it)
        stats["precision"] = getattr(tagger.options, "precision", None)
        stats["backend"] = getattr(getattr(tagger, "backend", None), "kind", None)
