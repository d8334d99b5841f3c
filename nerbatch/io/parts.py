"""Parts folders: one output written as numbered part files, and read back as one input.

The Ray engine writes the output of an input it cut into slices (:mod:`nerbatch.io.split`) as a folder
named after the output: ``out.conll/part-00000.conll``, ``out.conll/part-00001.conll``, ... and
``out.conll/parts.json``, the manifest that lists the parts in order. It is written when the folder is
made (``"complete": false``) and again once every part is in place (``"complete": true``). The parts
concatenated in order are the bytes the local engine writes as one file; a Parquet part is a Parquet
file of its own, and the parts' rows in order are that file's rows.

A complete parts folder is one input to every command: :func:`open_parts` reads its parts' bytes
in order as one stream (line numbers run on across the parts), the Parquet reader reads the part
files one after another (:func:`part_paths`), and a folder walk takes the folder as one input.
"""

from __future__ import annotations

import io
import json
import os

from ..errors import InputError, OutputError

__all__ = ["MANIFEST", "is_parts_folder", "part_name", "part_paths", "read_manifest", "write_manifest", "open_parts"]

MANIFEST = "parts.json"


def is_parts_folder(path: str) -> bool:
    """A folder with a parts manifest (complete or still being written)."""
    return os.path.isfile(os.path.join(path, MANIFEST))


def part_name(index: int, extension: str) -> str:
    """``part-00003.conll``: the name of part ``index`` (``extension`` with its dot, and any compression suffix)."""
    return f"part-{index:05d}{extension}"


def write_manifest(folder: str, fmt: str, names: list[str], *, complete: bool, source: str | None = None) -> None:
    """Write ``folder``'s manifest atomically: the parts' names in order and whether all are in place."""
    from .atomic import atomic_write

    body = {"nerbatch_parts": 1, "format": fmt, "complete": complete, "parts": names, "input": source}
    try:
        atomic_write(os.path.join(folder, MANIFEST), json.dumps(body, indent=1) + "\n")
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write the parts manifest: {exc.strerror or exc}") from None


def read_manifest(folder: str) -> dict:
    """The manifest of a parts folder; an :class:`InputError` when it cannot be read or is not one."""
    where = os.path.join(folder, MANIFEST)
    try:
        with open(where, encoding="utf-8") as fh:
            body = json.load(fh)
    except OSError as exc:
        raise InputError(f"cannot read the parts manifest: {exc.strerror or exc}", path=where) from None
    except ValueError:
        raise InputError("the parts manifest is not valid JSON", path=where, hint="tag the input again") from None
    names = body.get("parts") if isinstance(body, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) and n and os.sep not in n for n in names):
        raise InputError("not a parts manifest of nerbatch (no list of part names)", path=where)
    return body


def part_paths(folder: str) -> list[str]:
    """The part files of a complete parts folder, in order; an :class:`InputError` for a folder whose
    run has not finished (or whose parts are missing)."""
    body = read_manifest(folder)
    if body.get("complete") is not True:
        raise InputError(
            "is a parts folder whose run has not finished: some parts are missing",
            path=folder,
            hint="finish it with `nerbatch tag ... --engine ray --resume`",
        )
    paths = [os.path.join(folder, n) for n in body["parts"]]
    for p in paths:
        if not os.path.isfile(p):
            raise InputError(f"the part {os.path.basename(p)} listed in {MANIFEST} is missing", path=folder,
                             hint="tag the input again")
    return paths


class _Concat(io.RawIOBase):
    """The bytes of several files one after another (not seekable)."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__()
        self._paths = list(reversed(paths))
        self._file = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self._file is None:
                if not self._paths:
                    return 0
                self._file = open(self._paths.pop(), "rb", buffering=0)
            n = self._file.readinto(buffer)
            if n:
                return n
            self._file.close()
            self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


def open_parts(folder: str) -> io.RawIOBase:
    """The parts of a complete parts folder as one raw stream of their bytes, in order."""
    return _Concat(part_paths(folder))
