"""The local engine: each input file streams through the tagger into its own atomic output."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from ..errors import InputError
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
    seconds: float = 0.0
    per_file: list[dict] = field(default_factory=list)

    def line(self) -> str:
        rate = self.sentences / self.seconds if self.seconds else 0.0
        return (
            f"nerbatch: {self.files} file(s), {self.sentences:,} sentences, {self.tokens:,} tokens, "
            f"{self.entities:,} entities in {self.seconds:.1f} s ({rate:,.0f} sentences/s)"
        )


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


def tag_files(
    jobs: list[FileJob],
    tagger,
    *,
    options: ReadOptions = ReadOptions(),
    scorer: Scorer | None = None,
    progress: bool = True,
) -> TagSummary:
    """Tag each job's input into its output (atomic: a failed file leaves no output behind).

    When ``scorer`` is given, sentences with gold tags are scored on the way (``tag --report``).
    """
    from tqdm import tqdm

    summary = TagSummary()
    t0 = time.perf_counter()
    bar = tqdm(unit=" sent", disable=not progress or not sys.stderr.isatty(), dynamic_ncols=True, leave=False)
    try:
        for job in jobs:
            stats = {"input": job.input, "output": job.output, "sentences": 0, "tokens": 0, "entities": 0}
            t1 = time.perf_counter()
            bar.set_description(os.path.basename(job.input))
            with open_writer(job.output, job.output_format, input_path=job.input, input_fmt=job.input_format) as writer:
                for sent in tagger.tag(read(job.input, job.input_format, options)):
                    writer.write(sent)
                    if not sent.tokens:
                        continue
                    stats["sentences"] += 1
                    stats["tokens"] += len(sent.tokens)
                    stats["entities"] += len(conll_chunks(sent.pred or []))
                    if scorer is not None and sent.tags is not None:
                        scorer.add(sent.tags, sent.pred or [])
                    bar.update(1)
            stats["seconds"] = round(time.perf_counter() - t1, 3)
            summary.per_file.append(stats)
            summary.files += 1
            summary.sentences += stats["sentences"]
            summary.tokens += stats["tokens"]
            summary.entities += stats["entities"]
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t0
    return summary
