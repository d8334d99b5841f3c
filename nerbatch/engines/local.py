"""The local engine: each input file streams through the tagger into its own atomic output."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from ..errors import InputError
from ..evaluate import add_sentence
from ..io import EXTENSION_FOR, OUTPUT_FORMATS, ReadOptions, guess_format, input_format, open_writer, read
from ..io.base import STDIO
from ..scoring import Scorer, conll_chunks


@dataclass(frozen=True)
class FileJob:
    input: str
    output: str
    input_format: str
    output_format: str


@dataclass
class TagSummary:
    files: int = 0
    sentences: int = 0
    tokens: int = 0
    entities: int = 0
    skipped: int = 0  # records (or whole files) rejected under --on-error skip
    up_to_date: int = 0  # outputs left alone by --resume
    seconds: float = 0.0
    forward_seconds: float = 0.0
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
        )


@dataclass(frozen=True)
class RunOptions:
    """How a run behaves unattended (see README "Running from cron")."""

    resume: bool = False  # skip complete outputs, continue partial ones from their last checkpoint
    checkpoint_every: int = 10_000  # sentences between checkpoints inside a file (0: never)
    log_json: str | None = None  # append one JSON record per file here
    output_options: dict = field(default_factory=dict)  # options that change the output (for the manifest)


def _output_format(path: str, explicit: str | None, in_fmt: str) -> str:
    if explicit:
        return explicit
    fmt = guess_format(path) if path != STDIO else None
    if fmt in OUTPUT_FORMATS:
        return fmt
    return "conll" if in_fmt == "text" else in_fmt


def plan_jobs(
    inputs: list[str],
    output: str | None,
    *,
    input_fmt: str | None = None,
    output_fmt: str | None = None,
) -> list[FileJob]:
    """Map inputs to outputs.

    One input: ``output`` is a file (``-`` or None: stdout) or an existing folder. Several inputs:
    ``output`` must be a folder (created if missing); each output keeps its input's name, with the
    extension of the output format.
    """
    if not inputs:
        raise InputError("no input files", hint="pass one or more files, or - for stdin")
    folder = output is not None and output != STDIO and (
        len(inputs) > 1 or os.path.isdir(output) or output.endswith(os.sep)
    )
    if len(inputs) > 1 and (output is None or output == STDIO):
        raise InputError("several inputs need -o FOLDER", hint="outputs are written one per input into the folder")
    if STDIO in inputs and len(inputs) > 1:
        raise InputError("- (stdin) cannot be combined with other inputs")
    jobs: list[FileJob] = []
    seen: dict[str, str] = {}
    for path in inputs:
        in_fmt = input_format(path, input_fmt)
        if folder:
            assert output is not None
            out_fmt = output_fmt or ("conll" if in_fmt == "text" else in_fmt)
            stem = os.path.splitext(os.path.basename(path))[0] if path != STDIO else "stdin"
            target = os.path.join(output, stem + EXTENSION_FOR[out_fmt])
        else:
            target = output or STDIO
            out_fmt = _output_format(target, output_fmt, in_fmt)
        if target in seen:
            raise InputError(f"{path} and {seen[target]} would both be written to {target}")
        if target != STDIO and os.path.abspath(target) == os.path.abspath(path):
            raise InputError("the output would overwrite the input", path=path)
        seen[target] = path
        jobs.append(FileJob(path, target, in_fmt, out_fmt))
    if folder:
        assert output is not None
        try:
            os.makedirs(output, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create output folder: {exc.strerror}", path=output) from None
    return jobs


def lock_target(jobs: list[FileJob]) -> str | None:
    """The location to lock: the output folder for several outputs, else the output file."""
    outs = [j.output for j in jobs if j.output != STDIO]
    if not outs:
        return None
    if len(outs) == 1:
        return outs[0]
    return os.path.dirname(os.path.abspath(outs[0]))


def tag_files(
    jobs: list[FileJob],
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
    so ``run.resume`` can continue it. When ``scorer`` is given, sentences with gold tags are scored
    on the way (``tag --report``).
    """
    from tqdm import tqdm

    from ..checkpoint import OutputLock

    summary = TagSummary()
    t0 = time.perf_counter()
    bar = tqdm(unit=" sent", disable=not progress or not sys.stderr.isatty(), dynamic_ncols=True, leave=False)
    target = lock_target(jobs)
    lock = OutputLock(target) if target else None
    if lock:
        lock.acquire()
    try:
        for job in jobs:
            bar.set_description(os.path.basename(job.input))
            stats = _run_job(job, tagger, options, scorer, run, bar)
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
        if lock:
            lock.release()
        summary.seconds = time.perf_counter() - t0
        summary.forward_seconds = getattr(tagger, "forward_seconds", 0.0)
    return summary


def _log(path: str, record: dict) -> None:
    import json

    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError as exc:
        from ..errors import OutputError

        raise OutputError(f"{path}: cannot append the JSON log: {exc.strerror}") from None


def _run_job(job: FileJob, tagger, options: ReadOptions, scorer, run: RunOptions, bar) -> dict:
    import json

    from ..checkpoint import fingerprint, load_manifest, remove_manifest, save_manifest, sidecar
    from ..io.base import AtomicOutput

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
    fp = None
    resume = None
    if not stdout and job.input != STDIO:
        try:
            fp = fingerprint(job.input, tagger.model_name, {**run.output_options, "format": job.output_format})
        except OSError:
            fp = None  # a missing input is reported by the reader below
        manifest = load_manifest(job.output) if run.resume and fp else None
        if manifest and manifest.get("fingerprint") == fp:
            if manifest.get("complete") and os.path.exists(job.output):
                stats.update(manifest.get("stats", {}), status="up to date", seconds=0.0)
                return stats
            ck = manifest.get("checkpoint")
            if ck and os.path.exists(sidecar(job.output, "part")):
                resume = ck
                stats.update({k: ck["stats"][k] for k in ("sentences", "tokens", "entities", "skipped")})
                stats["status"] = f"resumed after {ck['sentences']} records"
    part = sidecar(job.output, "part") if fp else None
    rejects_path = job.output + ".rejects.jsonl" if not stdout else None
    rejects: AtomicOutput | None = None
    writer = None
    done = resume["sentences"] if resume else 0
    # a CoNLL output carries -DOCSTART- lines that conlleval counts; score them the same way
    docstart = "input" if job.input_format == job.output_format == "conll" else None
    try:
        writer = open_writer(
            job.output, job.output_format, input_path=job.input, input_fmt=job.input_format, part=part, resume=resume
        )
        if rejects_path and options.on_error == "skip":
            rejects = AtomicOutput(
                rejects_path,
                part=sidecar(rejects_path, "part"),
                resume_bytes=resume.get("rejects_bytes") if resume else None,
            )
        for sent in tagger.tag(read(job.input, job.input_format, options), skip=done):
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
            if scorer is not None and sent.error is None:
                add_sentence(scorer, sent, docstart)
            if fp and run.checkpoint_every and done % run.checkpoint_every == 0:
                ck = writer.checkpoint()
                if rejects is not None:
                    ck["rejects_bytes"] = rejects.sync()
                ck["sentences"] = done
                ck["stats"] = {k: stats[k] for k in ("sentences", "tokens", "entities", "skipped")}
                save_manifest(job.output, {"fingerprint": fp, "complete": False, "checkpoint": ck})
        writer.commit()
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
    except BaseException:
        # interrupted or failed for another reason: keep the partial output for --resume
        if writer is not None:
            writer.abort(keep=fp is not None)
        if rejects is not None:
            rejects.abort(keep=fp is not None)
        raise
    stats["seconds"] = round(time.perf_counter() - t1, 3)
    # model-side counters of this file: time inside forward, subword tokens, padded batch slots
    stats["forward_seconds"] = round(getattr(tagger, "forward_seconds", 0) - before["forward_seconds"], 3)
    stats["subword_tokens"] = getattr(tagger, "tokens_seen", 0) - before["tokens_seen"]
    stats["padded_tokens"] = getattr(tagger, "padded_tokens", 0) - before["padded_tokens"]
    if fp:
        save_manifest(job.output, {"fingerprint": fp, "complete": True, "stats": stats})
    return stats
