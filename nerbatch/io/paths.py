"""Which files a run reads and writes: folder inputs walked, and no write onto an input or twice.

Every command that writes (``tag``, ``evaluate``, ``train``) checks its write paths here before it
creates anything.
"""

from __future__ import annotations

import os
import re
import stat
from typing import NamedTuple

from ..errors import InputError, OutputError
from . import WALKED_FORMATS, format_of_name
from .base import STDIO

# the files of a model folder: what transformers and nerbatch read there (a write there would change the model)
MODEL_FILES = (
    "config.json", "nerbatch.json", "metrics.json", "README.md", "generation_config.json", "training_args.bin",
    "model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json",
    "pytorch_model.bin", "pytorch_model-*-of-*.bin", "pytorch_model.bin.index.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "*.tiktoken",
    ".nerbatch*",
)

__all__ = ["Access", "MODEL_FILES", "PathKeys", "OWN_NAME", "model_files", "model_file_name", "check_own_output", "check_paths", "expand_inputs", "check_write_paths", "rejects_path", "skipped_note"]


class Access(NamedTuple):
    """An input and what is written from it (``-``: stdout, nothing on disk)."""

    input: str
    output: str = STDIO


def rejects_path(output: str) -> str:
    """Where ``--on-error skip`` logs the records it left out of ``output``."""
    return output + ".rejects.jsonl"


def _known_input(path: str) -> bool:
    """A file a folder walk picks by default: one whose name says a readable input format."""
    return format_of_name(path) in WALKED_FORMATS


def no_inputs(folder: str, glob: str | None) -> InputError:
    """The error for a folder that holds no input nerbatch can read."""
    return InputError(
        f"no input files in this folder{f' match --glob {glob}' if glob else ' have a known extension'}",
        path=folder,
        hint="pass --glob PATTERN (e.g. '*.txt') or --input-format",
    )


def expand_inputs(
    inputs: list[str], glob: str | None = None, input_fmt: str | None = None, skipped: list[str] | None = None
) -> list[tuple[str, str]]:
    """Each input as ``(path, name under -o)``; a folder is walked recursively (sorted, hidden files
    and folders left out) for the files ``glob`` matches (default: every file of a known format),
    named by their path relative to the folder. A glob with a ``/`` is matched against that
    relative path, else against the file name. A Hugging Face dataset folder is one input, and so
    is a parts folder (:mod:`nerbatch.io.parts`), named or found in a walk.

    A FIFO, socket or device found in a folder is left out (reading one would wait forever), its
    path added to ``skipped``; an input named on its own is taken as it is (``<(zcat a.gz)``).
    """
    import fnmatch
    import stat

    from .hf import is_dataset, saved_dataset_part
    from .parts import is_parts_folder
    from .remote import is_url, walk

    out: list[tuple[str, str]] = []
    for path in inputs:
        listed = walk(path, glob, input_fmt, _known_input) if is_url(path) else None
        if listed is not None:  # a folder at a URL
            if not listed:
                raise no_inputs(path, glob)
            out.extend(listed)
            continue
        if is_url(path) or path == STDIO or not os.path.isdir(path) or input_fmt == "hf" or is_dataset(path) or is_parts_folder(path):
            out.append((path, os.path.basename(os.path.normpath(path)) if path != STDIO else "stdin"))
            continue
        found = []
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            parts = [d for d in dirs if is_parts_folder(os.path.join(folder, d))]  # one input each, not walked
            dirs[:] = [d for d in dirs if d not in parts]
            under = os.path.relpath(folder, path).replace(os.sep, "/")
            for name in sorted(files + parts):
                if name.startswith("."):
                    continue
                full = os.path.join(folder, name)
                rel = name if under == "." else f"{under}/{name}"
                if glob is not None:
                    if not fnmatch.fnmatchcase(rel if "/" in glob else name, glob):
                        continue
                elif not (input_fmt or _known_input(full)):
                    continue
                try:
                    regular = name in parts or stat.S_ISREG(os.stat(full).st_mode)
                except OSError:
                    regular = True  # a dangling link: the reader says what is wrong with it
                if not regular:
                    if skipped is not None:
                        skipped.append(full)
                    continue
                if name == "dataset_info.json" and (problem := saved_dataset_part(folder, files)) is not None:
                    raise problem
                found.append((full, rel))
        if not found:
            raise no_inputs(path, glob)
        out.extend(found)
    return out


def skipped_note(skipped: list[str]) -> str:
    """The one-line notice for the files of input folders left out for not being regular files."""
    shown = ", ".join(skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
    return f"skipped {len(skipped)} input(s) that are not regular files (FIFO, socket or device): {shown}"


class PathKeys:
    """What identifies a file for :func:`check_write_paths`: its real path, and its device and
    inode when it exists (a hard link or a bind mount names the same inode by another path). The
    real path of each folder is worked out once; a folder asked about more than a few times is read
    once with ``os.scandir`` (inode and file type come with each entry on Linux), so a run over many
    files in one folder costs no ``lstat`` per file (measured: 100,000 outputs checked in about a
    third of the time of one ``lstat`` each)."""

    LIST_AFTER = 8  # look-ups in one folder before it is listed whole
    # (a listed entry's inode is that of the directory entry: a single file mounted over another one
    # is seen as the file underneath; folders bind-mounted elsewhere keep their files' inodes)

    def __init__(self) -> None:
        self.folders: dict[str, str] = {}
        self.seen: dict[str, tuple] = {}  # path -> info(path), for one plan
        self.listings: dict[str, dict | None] = {}  # folder -> {name: (inode, mode)} (None: not listed)
        self.asked: dict[str, int] = {}
        self.devices: dict[str, int] = {}

    def real_folder(self, folder: str) -> str:
        real = self.folders.get(folder)
        if real is None:
            real = self.folders[folder] = os.path.realpath(folder or os.curdir)
        return real

    def __call__(self, path: str) -> tuple[str, tuple | None]:
        """``(real path, (st_dev, st_ino) or None)`` of ``path``, links followed as
        :func:`os.path.realpath` and :func:`os.path.samefile` follow them."""
        return self.info(path)[:2]

    def listing(self, folder: str) -> dict | None:
        """``{name: (inode, mode)}`` of a folder's plain files and folders (None for other entries, links
        included: ``lstat`` tells) once it has been asked about :attr:`LIST_AFTER` times, else None."""
        if folder in self.listings:
            return self.listings[folder]
        asked = self.asked[folder] = self.asked.get(folder, 0) + 1
        if asked < self.LIST_AFTER:
            return None
        entries: dict | None = {}
        try:
            self.devices[folder] = os.stat(folder or os.curdir).st_dev
            with os.scandir(folder or os.curdir) as it:
                for entry in it:
                    if entry.is_file(follow_symlinks=False):
                        entries[entry.name] = (entry.inode(), stat.S_IFREG)
                    elif entry.is_dir(follow_symlinks=False):
                        entries[entry.name] = (entry.inode(), stat.S_IFDIR)
                    else:
                        entries[entry.name] = None  # a link, FIFO, device...: lstat tells
        except OSError:
            entries = None
        self.listings[folder] = entries
        return entries

    def info(self, path: str) -> tuple[str, tuple | None, int | None]:
        """:meth:`__call__` and the ``st_mode`` file type of ``path`` itself (as ``lstat`` gives it;
        None: nothing there)."""
        known = self.seen.get(path)
        if known is not None:
            return known
        from .remote import canonical, is_url

        if is_url(path):  # an object: its one spelling (no inodes, no links)
            info = self.seen[path] = (canonical(path), None, None)
            return info
        folder, name = os.path.split(path)
        plain = name not in ("", os.curdir, os.pardir) and os.pardir not in path.split(os.sep)
        listed = self.listing(folder) if plain else None
        entry = listed.get(name, ()) if listed is not None else None
        if entry:  # a plain file or folder: its inode from the listing
            info = (os.path.join(self.real_folder(folder), name), (self.devices[folder], entry[0]), entry[1])
        elif entry == ():  # not in the folder when it was listed
            info = (os.path.join(self.real_folder(folder), name), None, None)
        else:
            try:
                st = os.lstat(path)
            except OSError:
                st = None
            mode = st.st_mode if st is not None else None
            if not plain or mode is not None and stat.S_ISLNK(mode):
                real = os.path.realpath(path)
                try:
                    st = os.stat(path)
                except OSError:
                    st = None
            else:
                real = os.path.join(self.real_folder(folder), name)
            info = (real, (st.st_dev, st.st_ino) if st is not None else None, mode)
        self.seen[path] = info
        return info


# names nerbatch gives its own files beside an output (manifest, partial output and its Parquet
# parts or, beside a URL output, its chunk objects ``.part.c00000``; lock) and beside a model folder
# (training's work folder): never a target of a write
OWN_NAME = re.compile(r"\..+\.nerbatch(\.(json|part|lock)(\.c?\d+)?|-train)")


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


def model_file_name(name: str) -> bool:
    """A file name that transformers or nerbatch reads in a model folder (written there, even where
    absent now, it would change the model)."""
    import fnmatch

    return any(fnmatch.fnmatchcase(name, p) for p in MODEL_FILES if not p.startswith(".nerbatch"))


def check_write_paths(
    jobs: "list[Access]",
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
    write replace an input). A report or log target that is a folder is refused. A device or FIFO written as a stream (``/dev/null``, ``/dev/stdout``)
    replaces nothing and may be named more than once.
    """
    check_paths(jobs, extra, rejects=rejects, models=models, keys=PathKeys())


def check_own_output(path: str, what: str) -> None:
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


def check_paths(jobs, extra=None, *, rejects=False, models=(), keys: PathKeys) -> None:
    from .atomic import is_stream, replace_target

    reads: dict = {}  # real path or (dev, ino) -> what the file is (the input X)
    for job in jobs:
        if job.input != STDIO:
            for k in keys(job.input):
                if k is not None:
                    reads.setdefault(k, f"the input {job.input}")
    from .remote import canonical, is_url

    model_dirs = set()
    for model in models:
        if is_url(model):  # a model folder in object storage: no model file may be written into it
            model_dirs.add(canonical(model).rstrip("/"))
            continue
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
            if os.path.isdir(path):  # refused before anything runs, not after all the tagging
                raise OutputError(f"{option} {path}: is a folder, not a file", hint="name a file in it, or another path")
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
        if OWN_NAME.fullmatch(name):
            raise InputError(
                f"{what} ({path}) has the name of a file nerbatch keeps beside an output or a model "
                "(.NAME.nerbatch.json/.part/.lock)",
                hint="choose another name",
            )
        if folder in model_dirs and model_file_name(name):
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
            check_own_output(path, what)
