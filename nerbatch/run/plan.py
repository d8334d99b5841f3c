"""The run plan, made before any engine starts: which input goes to which output, and what is left to do.

1. :func:`plan_jobs` maps inputs to outputs (one file, stdout, or a folder of outputs named after the
   inputs);
2. :func:`check_write_paths` makes sure that nothing the run writes (outputs, reports, logs,
   rejects) is an input or another thing the run writes, comparing real paths and inodes, so a
   symlinked folder or a hard link cannot make an output replace an input;
3. :func:`plan_run` decides for each job, from its manifest (:mod:`nerbatch.run.manifest`), whether it
   is up to date (skipped), resumed from sentence N, or fresh. Both engines take these
   :class:`PlannedJob` s, so the Ray engine sends only the work that is left.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from ..errors import InputError
from ..io import EXTENSION_FOR, OUTPUT_FORMATS, guess_format, input_format
from ..io.atomic import is_stream
from ..io.base import STDIO, Slice
from ..io.paths import PathKeys, check_own_output, check_paths, expand_inputs

__all__ = ["FileJob", "PlannedJob", "plan_jobs", "plan_run", "output_fingerprint"]


@dataclass(frozen=True)
class FileJob:
    """One input tagged into one output. ``part``: only that slice of the input (the Ray engine's
    parts of a big input, :mod:`nerbatch.io.split`), its output one part file of a parts folder."""

    input: str
    output: str
    input_format: str
    output_format: str
    part: Slice | None = None


@dataclass(frozen=True)
class PlannedJob:
    """A job and what is left of it: ``status`` is "fresh", "resume" (from ``skip`` sentences) or
    "up to date"; ``fingerprint`` is what the manifest records (None: stdin or stdout, never resumed);
    ``note``: why a ``--resume`` starts it afresh although its manifest matched (its input changed)."""

    job: FileJob
    status: str = "fresh"
    fingerprint: dict | None = None
    checkpoint: dict | None = None
    stats: dict | None = None  # the complete output's counts (up to date)
    note: str | None = None

    @property
    def skip(self) -> int:
        return int(self.checkpoint["sentences"]) if self.checkpoint else 0


def output_fingerprint(read_options, settings, precision: str, compile_model: bool | None, decode: str = "viterbi",
                       label_map=None, runtime: str = "torch") -> dict:
    """The options that change an output: reading, the model's settings, precision, compiling, decoding, a
    label map (:class:`~nerbatch.core.labelmap.LabelMap`), the runtime (these two only when not the default,
    so earlier outputs stay up to date).

    ``precision`` is the one used, never ``auto``: the tagger resolves that first (:mod:`nerbatch.tagging.precision`)."""
    from dataclasses import asdict

    if precision == "auto":
        raise ValueError("output_fingerprint needs the precision actually used, not 'auto'")
    fp = settings.fingerprint()
    return {
        "read": asdict(read_options),
        "max_length": fp["max_length"],
        "context": fp["context"],
        "stride": fp["stride"],
        "precision": precision,
        "compile": compile_model,
        "decode": decode,
    } | ({"label_map": label_map.fingerprint()} if label_map is not None else {}) | (
        {"runtime": runtime} if runtime != "torch" else {})


def plan_run(jobs: list[FileJob], model: str, options: dict, resume: bool) -> list[PlannedJob]:
    """What each job needs: with ``resume``, a complete output whose manifest matches is up to date
    when its input still has the recorded contents, and a partial one with a checkpoint continues
    from it when the input still begins with the bytes the checkpoint was made from (see
    :func:`nerbatch.run.manifest.same_input`: this reads each such input once, without parsing it);
    everything else starts fresh."""
    from dataclasses import asdict

    from ..io import HASHED_WHILE_READING
    from ..model.cache import model_identity
    from .manifest import fingerprint, load_manifest, same_input, sidecar

    identity = model_identity(model)
    planned = []
    for job in jobs:
        if job.output == STDIO or job.input == STDIO or is_stream(job.output):
            planned.append(PlannedJob(job))
            continue
        extra = {"format": job.output_format}
        if job.part is not None:
            extra["part"] = asdict(job.part)
        try:
            fp = fingerprint(job.input, identity, {**options, **extra})
        except OSError:  # a missing input is reported by the reader
            planned.append(PlannedJob(job))
            continue
        manifest = load_manifest(job.output) if resume else None
        note = None
        if manifest and manifest.get("fingerprint") == fp:
            if manifest.get("complete") and _is_sealed(job.output, manifest.get("output")):
                if same_input(job.input, manifest.get("input"), whole=True, part=job.part):
                    planned.append(PlannedJob(job, "up to date", fp, stats=manifest.get("stats", {})))
                    continue
                note = f"{job.input}: its contents differ from those {job.output} was made from: tagging it again"
            ck = manifest.get("checkpoint")
            if ck and _partial_output(sidecar(job.output, "part"), ck):
                if same_input(job.input, ck.get("input"), whole=job.input_format not in HASHED_WHILE_READING, part=job.part):
                    planned.append(PlannedJob(job, "resume", fp, checkpoint=ck))
                    continue
                note = (f"{job.input}: changed before the point where {job.output} was checkpointed "
                        f"({ck.get('sentences', '?')} records): starting it afresh")
        planned.append(PlannedJob(job, "fresh", fp, note=note))
    return planned


def _partial_output(part: str, checkpoint: dict) -> bool:
    """The partial output is there to continue: a regular file at ``part`` itself (a link there is
    not followed); at a URL, the chunk objects that hold the checkpoint's bytes."""
    from ..io.remote import chunks_upto, is_url

    if is_url(part):
        return isinstance(checkpoint.get("bytes"), int) and chunks_upto(part, checkpoint["bytes"]) is not None
    try:
        return stat.S_ISREG(os.lstat(part).st_mode)
    except OSError:
        return False


def _is_sealed(output: str, sealed: dict | None) -> bool:
    """Whether ``output`` is the file the manifest declared complete (same inode and size; an
    object at a URL: same size)."""
    from ..io.remote import is_url, size

    try:
        if is_url(output):
            return not sealed or size(output) == sealed.get("size")
        st = os.stat(output)
    except OSError:
        return False
    if not sealed:  # a manifest from before outputs were sealed
        return True
    return st.st_ino == sealed.get("inode") and st.st_size == sealed.get("size")


def _output_format(path: str, explicit: str | None, in_fmt: str) -> str:
    if explicit:
        return explicit
    fmt = guess_format(path) if path != STDIO else None
    if fmt in OUTPUT_FORMATS:
        return fmt
    if in_fmt == "hf":  # a dataset to a file or stdout: JSON lines, every column kept
        return "jsonl"
    return "conll" if in_fmt == "text" else in_fmt


def _output_name(rel: str, in_path: str, out_fmt: str) -> str:
    """``rel`` (a name under -o) with the output format's extension; a compressed input keeps its
    compression (``a.conll.gz`` -> ``a.jsonl.gz``), except for Parquet and dataset outputs."""
    from ..io import split_compression
    from ..io.hf import is_dataset

    base, comp = split_compression(rel)
    if in_path == STDIO or not os.path.isfile(in_path) and is_dataset(in_path):
        stem = base.replace(":", "_").replace("/", "_") if in_path.startswith("hf:") else base
    else:
        stem = os.path.splitext(base)[0]
    if out_fmt in ("parquet", "hf"):
        comp = ""
    return stem + EXTENSION_FOR[out_fmt] + comp


def plan_jobs(
    inputs: list[str],
    output: str | None,
    *,
    input_fmt: str | None = None,
    output_fmt: str | None = None,
    glob: str | None = None,
    skipped: list[str] | None = None,
) -> list[FileJob]:
    """Map inputs to outputs.

    One input file: ``output`` is a file (``-`` or None: stdout) or an existing folder. Several
    inputs, or a folder input (walked recursively, see :func:`expand_inputs`): ``output`` must be a
    folder (created if missing); each output keeps its input's name (its path under the input
    folder, subfolders mirrored), with the extension of the output format. No output may be an
    input (real paths compared), and no two inputs may map to one output: both are checked before
    anything is created. ``output_fmt="hf"`` with one input: ``output`` is the dataset folder.
    ``skipped``: gets the non-regular files left out of folders (see :func:`expand_inputs`).
    """
    if not inputs:
        raise InputError("no input files", hint="pass one or more files, or - for stdin")
    if STDIO in inputs and len(inputs) > 1:
        raise InputError("- (stdin) cannot be combined with other inputs")
    from ..io.hf import is_dataset
    from ..io.parts import is_parts_folder
    from ..io.remote import is_url, makedirs

    walked = any(
        p != STDIO and _is_folder(p) and input_fmt != "hf" and not is_dataset(p) and not is_parts_folder(p) for p in inputs
    )
    named = expand_inputs(inputs, glob, input_fmt, skipped)
    many = len(named) > 1 or walked
    if many and (output is None or output == STDIO):
        raise InputError(
            "several inputs need -o FOLDER" if not walked else "a folder input needs -o FOLDER",
            hint="outputs are written one per input into the folder",
        )
    folder = output is not None and output != STDIO and (
        many or (output_fmt != "hf" and (output.endswith(("/", os.sep)) or (_is_folder(output) and not is_parts_folder(output))))
    )
    jobs: list[FileJob] = []
    seen: dict[str, str] = {}
    keys = PathKeys()
    for path, rel in named:
        in_fmt = input_format(path, input_fmt)
        if folder:
            assert output is not None
            out_fmt = output_fmt or ("conll" if in_fmt == "text" else "parquet" if in_fmt == "hf" else in_fmt)
            target = os.path.join(output, *_output_name(rel, path, out_fmt).split("/"))
        else:
            target = output.rstrip(os.sep) or output if output else STDIO
            out_fmt = _output_format(target, output_fmt, in_fmt)
        key = keys(target)[0] if target != STDIO else STDIO
        if key in seen:
            raise InputError(
                f"{path} and {seen[key]} would both be written to {target}",
                hint="nothing was written; tag them into different folders, or pick files with --glob",
            )
        seen[key] = path
        jobs.append(FileJob(path, target, in_fmt, out_fmt))
    for job in jobs:
        if job.output_format == "hf" and is_url(job.output):
            raise InputError("a Hugging Face dataset output cannot go to a URL", path=job.output,
                             hint="write Parquet or JSONL there, or the dataset to a local folder")
        mode = keys.info(job.output)[2] if folder else None
        if mode is not None and not stat.S_ISREG(mode) and job.output_format != "hf" and not is_parts_folder(job.output):
            check_own_output(job.output, f"the output of {job.input}")  # names nerbatch chose: plain files only
        if job.output_format == "hf" and os.path.islink(job.output):
            raise InputError(
                "is a symbolic link: a dataset output is a folder renamed into place, which would replace the link",
                path=job.output,
                hint="give the real folder's path",
            )
        if job.output_format == "hf" and os.path.lexists(job.output) and not _replaceable_dataset(job.output):
            raise InputError(
                "exists and is not a Hugging Face dataset folder: a dataset output never replaces it",
                path=job.output,
                hint="choose a new folder for -o",
            )
    check_paths(jobs, keys=keys)
    if folder:
        assert output is not None
        for made in sorted({os.path.dirname(job.output) for job in jobs} | {output}):
            if is_url(made):
                makedirs(made)  # object stores have no folders to make
                continue
            try:
                os.makedirs(made, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create output folder: {exc.strerror}", path=made) from None
    return jobs


def _is_folder(path: str) -> bool:
    """A local folder, or a folder at a URL (a prefix with objects under it)."""
    from ..io.remote import is_url, isdir

    return isdir(path) if is_url(path) else os.path.isdir(path)


def _replaceable_dataset(path: str) -> bool:
    from ..io.hf import is_saved_dataset

    return is_saved_dataset(path) or (os.path.isdir(path) and not os.listdir(path))


