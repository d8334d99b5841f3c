"""Which files a run reads and writes: folder inputs walked, and no write onto an input or twice.

Every command that writes (``tag``, ``evaluate``, ``train``) checks its write paths here before it
creates anything.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ..errors import InputError
from . import guess_format
from .atomic import same_file
from .base import STDIO

__all__ = ["Access", "expand_inputs", "check_write_paths", "rejects_path", "skipped_note"]


class Access(NamedTuple):
    """An input and what is written from it (``-``: stdout, nothing on disk)."""

    input: str
    output: str = STDIO


def rejects_path(output: str) -> str:
    """Where ``--on-error skip`` logs the records it left out of ``output``."""
    return output + ".rejects.jsonl"


def _known_input(path: str) -> bool:
    """A file a folder walk picks by default: one whose name says a readable input format."""
    return guess_format(path) in ("conll", "jsonl", "parquet", "text")


def expand_inputs(
    inputs: list[str], glob: str | None = None, input_fmt: str | None = None, skipped: list[str] | None = None
) -> list[tuple[str, str]]:
    """Each input as ``(path, name under -o)``; a folder is walked recursively (sorted, hidden files
    and folders left out) for the files ``glob`` matches (default: every file of a known format),
    named by their path relative to the folder. A glob with a ``/`` is matched against that
    relative path, else against the file name. A Hugging Face dataset folder is one input.

    A FIFO, socket or device found in a folder is left out (reading one would wait forever), its
    path added to ``skipped``; an input named on its own is taken as it is (``<(zcat a.gz)``).
    """
    import fnmatch
    import stat

    from .hf import is_dataset

    out: list[tuple[str, str]] = []
    for path in inputs:
        if path == STDIO or not os.path.isdir(path) or input_fmt == "hf" or is_dataset(path):
            out.append((path, os.path.basename(os.path.normpath(path)) if path != STDIO else "stdin"))
            continue
        found = []
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                full = os.path.join(folder, name)
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                if glob is not None:
                    if not fnmatch.fnmatchcase(rel if "/" in glob else name, glob):
                        continue
                elif not (input_fmt or _known_input(full)):
                    continue
                try:
                    regular = stat.S_ISREG(os.stat(full).st_mode)
                except OSError:
                    regular = True  # a dangling link: the reader says what is wrong with it
                if not regular:
                    if skipped is not None:
                        skipped.append(full)
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


def check_write_paths(jobs: "list[Access]", extra: dict[str, str | None] | None = None, *, rejects: bool = False) -> None:
    """Refuse a run where something it writes is one of its inputs or another thing it writes.

    ``jobs``: what the run reads and writes (anything with ``input`` and ``output``: :class:`Access`,
    :class:`nerbatch.run.plan.FileJob`).

    ``extra`` names further files the run writes, by option (``{"--report": "r.txt"}``);
    ``rejects``: the run writes ``OUTPUT.rejects.jsonl`` beside each output (``--on-error skip``).
    Paths are compared by real path and inode (:func:`nerbatch.io.atomic.same_file`).
    """
    inputs = [job.input for job in jobs if job.input != STDIO]
    writes: list[tuple[str, str]] = []
    for job in jobs:
        if job.output != STDIO:
            writes.append((job.output, f"the output of {job.input}"))
            if rejects:
                writes.append((rejects_path(job.output), f"the rejects file of {job.input}"))
    for option, path in (extra or {}).items():
        if path and path != STDIO:
            writes.append((path, option))
    for k, (path, what) in enumerate(writes):
        for other in inputs:
            if same_file(path, other):
                raise InputError(
                    f"{what} ({path}) would overwrite the input {other}",
                    hint="choose another path: nerbatch never writes over its inputs",
                )
        for other, other_what in writes[:k]:
            if same_file(path, other):
                raise InputError(
                    f"{what} and {other_what} are the same file ({path})",
                    hint="give each its own path",
                )


def skipped_note(skipped: list[str]) -> str:
    """The one-line notice for the files of input folders left out for not being regular files."""
    shown = ", ".join(skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
    return f"skipped {len(skipped)} input(s) that are not regular files (FIFO, socket or device): {shown}"
