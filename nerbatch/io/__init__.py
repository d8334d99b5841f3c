"""Readers (streaming generators) and writers, one module per format; chosen by extension or option."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator

from ..core.record import Sentence
from ..errors import InputError
from .base import STDIO, ReadOptions, Slice, Writer
from .compress import compression_of, split_compression


@dataclass(frozen=True)
class Format:
    """One file format: its extensions, where its reader and writer live, and what the run may do with
    its files. Adding a format means adding one entry to :data:`FORMATS` and its module."""

    name: str
    extensions: tuple[str, ...]  # lower case, with the dot; the first is the one outputs get
    reader: str | None = None  # "module:function" under nerbatch.io (None: not an input format)
    writer: str | None = None  # "module:class" under nerbatch.io (None: not an output format)
    read_back: bool = False  # an output that `tag --report` can score by reading it back
    hashed_while_reading: bool = False  # the reader streams the file's bytes (--resume hashes them on the way)
    walked: bool = True  # picked by default from a folder input


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("conll", (".conll", ".conllu", ".iob", ".bio", ".tsv"), "conll:read_conll", "conll:ConllWriter",
               read_back=True, hashed_while_reading=True),
        Format("jsonl", (".jsonl", ".ndjson", ".json"), "jsonl:read_jsonl", "jsonl:JsonlWriter",
               read_back=True, hashed_while_reading=True),
        Format("parquet", (".parquet", ".pq"), "parquet:read_parquet", "parquet:ParquetWriter", read_back=True),
        Format("text", (".txt", ".text"), "text:read_text", None, hashed_while_reading=True),
        Format("html", (".html", ".htm"), None, "html:HtmlWriter", walked=False),
        Format("hf", ("",), "hf:read_dataset", "hf:DatasetWriter", walked=False),
    )
}
INPUT_FORMATS = tuple(name for name, f in FORMATS.items() if f.reader)
OUTPUT_FORMATS = tuple(name for name, f in FORMATS.items() if f.writer)
READABLE_OUTPUTS = tuple(name for name, f in FORMATS.items() if f.read_back)
WALKED_FORMATS = tuple(name for name, f in FORMATS.items() if f.walked and f.reader)
HASHED_WHILE_READING = tuple(name for name, f in FORMATS.items() if f.hashed_while_reading)
_EXTENSIONS = {ext: f.name for f in FORMATS.values() for ext in f.extensions if ext}
EXTENSION_FOR = {name: f.extensions[0] for name, f in FORMATS.items()}


def _load(spec: str):
    """The reader function or writer class named by a registry entry ("module:name" under nerbatch.io)."""
    import importlib

    module, name = spec.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def guess_format(path: str, default: str | None = None) -> str | None:
    """The format named by the file extension (``eng.testb``-style CoNLL names included); a
    compression suffix is looked under (``a.conll.gz`` is CoNLL); a Hugging Face dataset
    (``hf:ID``, a ``save_to_disk`` folder) is ``hf``."""
    from .hf import is_dataset
    from .parts import is_parts_folder, read_manifest

    if is_dataset(path):
        return "hf"
    if path != STDIO and is_parts_folder(path):
        fmt = read_manifest(path).get("format")
        return fmt if fmt in FORMATS else format_of_name(path, default)
    return format_of_name(path, default)


def format_of_name(path: str, default: str | None = None) -> str | None:
    """The format the file name says (:func:`guess_format` for a path known to be a file)."""
    name = os.path.basename(split_compression(path)[0]).lower()
    ext = os.path.splitext(name)[1]
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if name.startswith("eng.") or ext in (".train", ".testa", ".testb", ".dev", ".test"):
        return "conll"
    return default


def looks_like_conll(path: str, lines: int = 50) -> bool:
    """Sniff a ``.txt`` file: ``-DOCSTART-`` or token lines whose last column is a tag mean CoNLL."""
    from ..core.schemes import is_tag
    from .base import Overlong, open_binary, raw_lines
    from .compress import decompress_errors
    from .conll import split_columns

    seen = 0
    try:
        with open_binary(path) as fh:
            for raw in raw_lines(fh, 1 << 16):
                if isinstance(raw, Overlong):  # no CoNLL token line is that long
                    return False
                text = raw.decode("utf-8", "replace").strip(" \t\r\n").lstrip("\ufeff")
                if not text:
                    continue
                if text.startswith("-DOCSTART-"):
                    return True
                cols = split_columns(text)
                if len(cols) < 2 or not is_tag(cols[-1]):
                    return False
                seen += 1
                if seen >= lines:
                    break
    except (InputError, *decompress_errors()):
        return False
    return seen > 0


def input_format(path: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    if path == STDIO:
        return "text"
    from .remote import is_url

    fmt = guess_format(path)
    if fmt == "text" and (is_url(path) or os.path.isfile(path)) and looks_like_conll(path):
        return "conll"
    if fmt == "parquet" and compression_of(path):
        raise InputError(
            "a compressed Parquet file cannot be streamed (Parquet is read by row group, which needs seeking)",
            path=path,
            hint="decompress it: Parquet compresses its own pages",
        )
    if fmt is None or fmt not in INPUT_FORMATS:
        raise InputError(
            "cannot tell the input format from the extension",
            path=path,
            hint=f"pass --input-format ({', '.join(INPUT_FORMATS)})",
        )
    return fmt


def reader_for(fmt: str) -> Callable[[str, ReadOptions], Iterator[Sentence]]:
    return _load(FORMATS[fmt].reader)


def read(path: str, fmt: str | None = None, options: ReadOptions = ReadOptions(), part: Slice | None = None) -> Iterator[Sentence]:
    """Stream the sentences of one input file (``-`` is stdin; a parts folder, :mod:`nerbatch.io.parts`,
    is one input). ``part``: only that slice of the file (:mod:`nerbatch.io.split`)."""
    reader = reader_for(input_format(path, fmt))
    return reader(path, options) if part is None else reader(path, options, part=part)


def open_writer(
    path: str,
    fmt: str,
    *,
    input_path: str | None = None,
    input_fmt: str | None = None,
    part: str | None = None,
    resume: dict | None = None,
    scores: bool = False,
) -> Writer:
    """A writer for ``path`` (``-`` is stdout) in ``fmt``; Parquet keeps the input's columns.

    ``part``/``resume``: the fixed partial-file name and checkpoint of a resumable run. ``scores``:
    CoNLL gets a word-score column (the other formats carry scores anyway).
    """
    kw = {"part": part, "resume": resume}
    if fmt == "conll" and scores:
        kw["scores"] = True
    if fmt in ("parquet", "hf") and compression_of(path):
        raise InputError(
            f"a {fmt} output cannot be compressed as a whole", path=path, hint="Parquet compresses its own pages; drop the suffix"
        )
    if fmt == "hf" and path == STDIO:
        raise InputError("a Hugging Face dataset output needs -o FOLDER", hint="pass -o FOLDER --output-format hf")
    if fmt in FORMATS and FORMATS[fmt].writer and fmt != "parquet":
        return _load(FORMATS[fmt].writer)(path, **kw)
    if fmt == "parquet":
        if path == STDIO:
            raise InputError("Parquet output cannot go to stdout", hint="pass -o FILE.parquet")
        schema = None
        if input_fmt == "parquet" and input_path:
            import pyarrow as pa
            import pyarrow.parquet as pq

            from .parts import is_parts_folder, part_paths
            from .remote import is_url, open_read

            try:
                if is_url(input_path):
                    with open_read(input_path) as fh:
                        schema = pq.read_schema(fh)
                else:
                    schema = pq.read_schema(part_paths(input_path)[0] if is_parts_folder(input_path) else input_path)
            except FileNotFoundError:
                raise InputError("no such file", path=input_path, hint="check the path") from None
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputError(f"not a readable Parquet file: {exc}", path=input_path) from None
        return _load(FORMATS["parquet"].writer)(path, input_schema=schema, extra_json=input_fmt == "jsonl", **kw)
    raise InputError(f"unknown output format {fmt!r}", hint=f"use one of {', '.join(OUTPUT_FORMATS)}")


__all__ = [
    "EXTENSION_FOR",
    "FORMATS",
    "Format",
    "HASHED_WHILE_READING",
    "INPUT_FORMATS",
    "READABLE_OUTPUTS",
    "WALKED_FORMATS",
    "OUTPUT_FORMATS",
    "ReadOptions",
    "Slice",
    "Writer",
    "compression_of",
    "format_of_name",
    "guess_format",
    "input_format",
    "open_writer",
    "read",
    "reader_for",
    "split_compression",
]
