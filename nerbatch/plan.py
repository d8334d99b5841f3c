"""The run plan, made before any engine starts: which input goes to which output, and what is left to do.

1. :func:`plan_jobs` maps inputs to outputs (one file, stdout, or a folder of outputs named after the
   inputs);
2. :func:`check_write_paths` makes sure that nothing the run writes (outputs, reports, logs,
   rejects) is an input or another thing the run writes, comparing real paths and inodes, so a
   symlinked folder or a hard link cannot make an output replace an input;
3. :func:`plan_run` decides for each job, from its manifest (:mod:`nerbatch.checkpoint`), whether it
   is up to date (skipped), resumed from sentence N, or fresh. Both engines take these
   :class:`PlannedJob` s, so the Ray engine sends only the work that is left.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

from .errors import InputError
from .files import is_stream
from .io import EXTENSION_FOR, OUTPUT_FORMATS, format_of_name, guess_format, input_format
from .io.base import STDIO

__all__ = ["FileJob", "PlannedJob", "expand_inputs", "plan_jobs", "plan_run", "output_fingerprint", "check_write_paths", "rejects_path",
           "model_files"]


@dataclass(frozen=True)
class FileJob:
    input: str
    output: str
    input_format: str
    output_format: str


@dataclass(frozen=True)
class PlannedJob:
    """A job and what is left of it: ``status`` is "fresh", "resume" (from ``skip`` sentences) or
    "up to date"; ``fingerprint`` is what the manifest records (None: stdin or stdout, never resumed)."""

    job: FileJob
    status: str = "fresh"
    fingerprint: dict | None = None
    checkpoint: dict | None = None
    stats: dict | None = None  # the complete output's counts (up to date)

    @property
    def skip(self) -> int:
        return int(self.checkpoint["sentences"]) if self.checkpoint else 0


def output_fingerprint(read_options, settings, precision: str, compile_model: bool | None, decode: str = "viterbi") -> dict:
    """The options that change an output: reading, the model's settings, precision, compiling, decoding.

    ``precision`` is the one used, never ``auto``: the tagger resolves that first (:mod:`nerbatch.precision`)."""
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
    }


def plan_run(jobs: list[FileJob], model: str, options: dict, resume: bool) -> list[PlannedJob]:
    """What each job needs: with ``resume``, a complete output whose manifest matches is up to date,
    and a partial one with a checkpoint continues from it; everything else starts fresh."""
    from .cache import model_identity
    from .checkpoint import fingerprint, load_manifest, sidecar

    identity = model_identity(model)
    planned = []
    for job in jobs:
        if job.output == STDIO or job.input == STDIO or is_stream(job.output):
            planned.append(PlannedJob(job))
            continue
        try:
            fp = fingerprint(job.input, identity, {**options, "format": job.output_format})
        except OSError:  # a missing input is reported by the reader
            planned.append(PlannedJob(job))
            continue
        manifest = load_manifest(job.output) if resume else None
        if manifest and manifest.get("fingerprint") == fp:
            if manifest.get("complete") and _is_sealed(job.output, manifest.get("output")):
                planned.append(PlannedJob(job, "up to date", fp, stats=manifest.get("stats", {})))
                continue
            ck = manifest.get("checkpoint")
            if ck and _plain_file(sidecar(job.output, "part")):
                planned.append(PlannedJob(job, "resume", fp, checkpoint=ck))
                continue
        planned.append(PlannedJob(job, "fresh", fp))
    return planned


def _plain_file(path: str) -> bool:
    """A regular file at ``path`` itself (a link there is not followed)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_sealed(output: str, sealed: dict | None) -> bool:
    """Whether ``output`` is the file the manifest declared complete (same inode and size)."""
    try:
        st = os.stat(output)
    except OSError:
        return False
    if not sealed:  # a manifest from before outputs were sealed
        return True
    return st.st_ino == sealed.get("inode") and st.st_size == sealed.get("size")


def rejects_path(output: str) -> str:
    """Where ``--on-error skip`` logs the records it left out of ``output``."""
    return output + ".rejects.jsonl"


def _output_format(path: str, explicit: str | None, in_fmt: str) -> str:
    if explicit:
        return explicit
    fmt = guess_format(path) if path != STDIO else None
    if fmt in OUTPUT_FORMATS:
        return fmt
    if in_fmt == "hf":  # a dataset to a file or stdout: JSON lines, every column kept
        return "jsonl"
    return "conll" if in_fmt == "text" else in_fmt


def _known_input(path: str) -> bool:
    """A file a folder walk picks by default: one whose name says a readable input format."""
    return format_of_name(path) in ("conll", "jsonl", "parquet", "text")


def expand_inputs(inputs: list[str], glob: str | None = None, input_fmt: str | None = None) -> list[tuple[str, str]]:
    """Each input as ``(path, name under -o)``; a folder is walked recursively (sorted, hidden files
    and folders left out) for the files ``glob`` matches (default: every file of a known format),
    named by their path relative to the folder. A glob with a ``/`` is matched against that
    relative path, else against the file name. A Hugging Face dataset folder is one input."""
    import fnmatch

    from .io.hf import is_dataset

    out: list[tuple[str, str]] = []
    for path in inputs:
        if path == STDIO or not os.path.isdir(path) or input_fmt == "hf" or is_dataset(path):
            out.append((path, os.path.basename(os.path.normpath(path)) if path != STDIO else "stdin"))
            continue
        found = []
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            under = os.path.relpath(folder, path).replace(os.sep, "/")
            for name in sorted(files):
                if name.startswith("."):
                    continue
                full = os.path.join(folder, name)
                rel = name if under == "." else f"{under}/{name}"
                if glob is not None:
                    if not fnmatch.fnmatchcase(rel if "/" in glob else name, glob):
                        continue
                elif not (input_fmt or _known_input(full)):
                    continue
                found.append((full, rel))
        if not found:
            raise InputError(
                f"no input files in this folder{f' match --glob {glob}' if glob else ' have a known extension'}",
                path=path,
                hint="pass --glob PATTERN (e.g. '*.txt') or --input-format",
            )
        out.extend(found)
    return out


def _output_name(rel: str, in_path: str, out_fmt: str) -> str:
    """``rel`` (a name under -o) with the output format's extension; a compressed input keeps its
    compression (``a.conll.gz`` -> ``a.jsonl.gz``), except for Parquet and dataset outputs."""
    from .io import split_compression
    from .io.hf import is_dataset

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
) -> list[FileJob]:
    """Map inputs to outputs.

    One input file: ``output`` is a file (``-`` or None: stdout) or an existing folder. Several
    inputs, or a folder input (walked recursively, see :func:`expand_inputs`): ``output`` must be a
    folder (created if missing); each output keeps its input's name (its path under the input
    folder, subfolders mirrored), with the extension of the output format. No output may be an
    input (real paths compared), and no two inputs may map to one output: both are checked before
    anything is created. ``output_fmt="hf"`` with one input: ``output`` is the dataset folder.
    """
    if not inputs:
        raise InputError("no input files", hint="pass one or more files, or - for stdin")
    if STDIO in inputs and len(inputs) > 1:
        raise InputError("- (stdin) cannot be combined with other inputs")
    from .io.hf import is_dataset

    walked = any(p != STDIO and os.path.isdir(p) and input_fmt != "hf" and not is_dataset(p) for p in inputs)
    named = expand_inputs(inputs, glob, input_fmt)
    many = len(named) > 1 or walked
    if many and (output is None or output == STDIO):
        raise InputError(
            "several inputs need -o FOLDER" if not walked else "a folder input needs -o FOLDER",
            hint="outputs are written one per input into the folder",
        )
    folder = output is not None and output != STDIO and (
        many or (output_fmt != "hf" and (os.path.isdir(output) or output.endswith(os.sep)))
    )
    jobs: list[FileJob] = []
    seen: dict[str, str] = {}
    keys = _PathKeys()
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
        mode = keys.info(job.output)[2] if folder else None
        if mode is not None and not stat.S_ISREG(mode) and job.output_format != "hf":
            _check_own_output(job.output, f"the output of {job.input}")  # names nerbatch chose: plain files only
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
    _check_paths(jobs, keys=keys)
    if folder:
        assert output is not None
        for made in sorted({os.path.dirname(job.output) for job in jobs} | {output}):
            try:
                os.makedirs(made, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create output folder: {exc.strerror}", path=made) from None
    return jobs


def _replaceable_dataset(path: str) -> bool:
    from .io.hf import is_saved_dataset

    return is_saved_dataset(path) or (os.path.isdir(path) and not os.listdir(path))


class _PathKeys:
    """What identifies a file for :func:`check_write_paths`: its real path, and its device and
    inode when it exists (a hard link or a bind mount names the same inode by another path). The
    real path of each folder is worked out once, so many files in one folder cost one ``lstat``
    each."""

    def __init__(self) -> None:
        self.folders: dict[str, str] = {}
        self.seen: dict[str, tuple] = {}  # path -> info(path), for one plan

    def real_folder(self, folder: str) -> str:
        real = self.folders.get(folder)
        if real is None:
            real = self.folders[folder] = os.path.realpath(folder or os.curdir)
        return real

    def __call__(self, path: str) -> tuple[str, tuple | None]:
        """``(real path, (st_dev, st_ino) or None)`` of ``path``, links followed as
        :func:`os.path.realpath` and :func:`os.path.samefile` follow them."""
        return self.info(path)[:2]

    def info(self, path: str) -> tuple[str, tuple | None, int | None]:
        """:meth:`__call__` and the ``st_mode`` of ``path`` itself (``lstat``; None: nothing there)."""
        known = self.seen.get(path)
        if known is not None:
            return known
        folder, name = os.path.split(path)
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        mode = st.st_mode if st is not None else None
        if name in ("", os.curdir, os.pardir) or os.pardir in path.split(os.sep) or mode is not None and stat.S_ISLNK(mode):
            real = os.path.realpath(path)
            try:
                st = os.stat(path)
            except OSError:
                st = None
        else:
            real = os.path.join(self.real_folder(folder), name)
        info = self.seen[path] = (real, (st.st_dev, st.st_ino) if st is not None else None, mode)
        return info


# names nerbatch gives its own files beside an output (manifest, partial output and its Parquet
# parts, lock) and beside a model folder (training's work folder): never a target of a write
_OWN_NAME = re.compile(r"\..+\.nerbatch(\.(json|part|lock)(\.\d+)?|-train)")


def model_files(model: str | None) -> tuple[str | None, list[str]]:
    """``(folder, files)`` of a local model folder: every file in it, which no write may replace
    (``(None, [])`` for a hub id)."""
    if not model or not os.path.isdir(model):
        return None, []
    found = []
    for folder, dirs, names in os.walk(model):
        dirs.sort()
        found.extend(os.path.join(folder, n) for n in sorted(names))
    return model, found


def _model_name(name: str) -> bool:
    """A file name that transformers or nerbatch reads in a model folder (written there, even where
    absent now, it would change the model)."""
    import fnmatch

    from .train_output import MODEL_FILES

    return any(fnmatch.fnmatchcase(name, p) for p in MODEL_FILES if not p.startswith(".nerbatch"))


def check_write_paths(
    jobs: list[FileJob],
    extra: dict[str, str | None] | None = None,
    *,
    rejects: bool = False,
    models: list[str | None] = (),
) -> None:
    """Refuse a run where something it writes is one of its inputs, a file of its model, another
    thing it writes, or one of nerbatch's own files beside an output.

    ``extra`` names further files the run writes, by option (``{"--report": "r.txt"}``);
    ``rejects``: the run writes ``OUTPUT.rejects.jsonl`` beside each output (``--on-error skip``);
    ``models``: model folders the run reads (each of their files counts as an input, and no write
    may add a file transformers would read there). Paths are compared by real path and by inode,
    one dictionary look-up each (so a hard link, a symlinked folder or a bind mount cannot make a
    write replace an input). A device or FIFO written as a stream (``/dev/null``, ``/dev/stdout``)
    replaces nothing and may be named more than once.
    """
    _check_paths(jobs, extra, rejects=rejects, models=models, keys=_PathKeys())


def _check_paths(jobs, extra=None, *, rejects=False, models=(), keys: _PathKeys) -> None:
    from .files import is_stream, replace_target

    reads: dict = {}  # real path or (dev, ino) -> what the file is (the input X)
    for job in jobs:
        if job.input != STDIO:
            for k in keys(job.input):
                if k is not None:
                    reads.setdefault(k, f"the input {job.input}")
    model_dirs = set()
    for model in models:
        folder, found = model_files(model)
        if folder is None:
            continue
        model_dirs.add(os.path.realpath(folder))
        for path in found:
            for k in keys(path):
                if k is not None:
                    reads.setdefault(k, f"{path}, a file of the model {model}")
    writes: list[tuple[str, str, str | None]] = []  # (path, what, the output it is named after)
    for job in jobs:
        if job.output != STDIO:
            writes.append((job.output, f"the output of {job.input}", None))
            if rejects:
                writes.append((rejects_path(job.output), f"the rejects file of {job.input}", job.output))
    for option, path in (extra or {}).items():
        if path and path != STDIO:
            writes.append((path, option, None))
    seen: dict = {}
    streams: set[str] = set()
    for path, what, beside in writes:
        if beside in streams:  # a stream output has nothing beside it (its rejects go to stderr)
            continue
        real, inode, mode = keys.info(path)
        if mode is not None and not stat.S_ISREG(mode):  # a link, a device, a FIFO: one lstat told
            if is_stream(path):
                streams.add(path)
                continue
            if beside is None:
                replace_target(path)  # a link to nothing, a block device: refused
        for k in (real, inode):
            if k in reads:
                hint = "nerbatch never writes over its inputs" if reads[k].startswith("the input") else "nerbatch never writes into its model"
                raise InputError(f"{what} ({path}) would overwrite {reads[k]}", hint=f"choose another path: {hint}")
        folder, name = os.path.split(real)
        if _OWN_NAME.fullmatch(name):
            raise InputError(
                f"{what} ({path}) has the name of a file nerbatch keeps beside an output or a model "
                "(.NAME.nerbatch.json/.part/.lock)",
                hint="choose another name",
            )
        if folder in model_dirs and _model_name(name):
            raise InputError(
                f"{what} ({path}) would add {name} to the model folder {folder}, which changes the model",
                hint="choose another path: nerbatch never writes into its model",
            )
        for k in (real, inode):
            if k in seen:
                raise InputError(f"{what} and {seen[k][1]} are the same file ({path})", hint="give each its own path")
        for k in (real, inode):
            if k is not None:
                seen[k] = (path, what)
        if beside is not None and mode is not None and not stat.S_ISREG(mode):
            _check_own_output(path, what)


def _check_own_output(path: str, what: str) -> None:
    """A file whose name nerbatch chose (an output in a folder, a rejects file) is written only as
    a regular file: a link or a special file found there is refused, never followed or replaced."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode):
        return
    kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode) else "a special file"
    raise InputError(
        f"{what} ({path}) exists and is {kind}: nerbatch writes the files it names itself only as plain files",
        hint="remove it, or write to another folder",
    )
