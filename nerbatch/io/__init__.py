"""Readers (streaming generators) and writers, one module per format; chosen by extension or option."""

from __future__ import annotations

import os
from typing import Callable, Iterator

from ..errors import InputError
from ..record import Sentence
from .base import STDIO, ReadOptions, Writer
from .compress import compression_of, split_compression

INPUT_FORMATS = ("conll", "jsonl", "parquet", "text", "hf")
OUTPUT_FORMATS = ("conll", "jsonl", "parquet", "html", "hf")

_EXTENSIONS = {
    ".conll": "conll",
    ".conllu": "conll",
    ".iob": "conll",
    ".bio": "conll",
    ".tsv": "conll",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
}
EXTENSION_FOR = {"conll": ".conll", "jsonl": ".jsonl", "parquet": ".parquet", "html": ".html", "text": ".txt", "hf": ""}


def guess_format(path: str, default: str | None = None) -> str | None:
    """The format named by the file extension (``eng.testb``-style CoNLL names included); a
    compression suffix is looked under (``a.conll.gz`` is CoNLL); a Hugging Face dataset
    (``hf:ID``, a ``save_to_disk`` folder) is ``hf``."""
    from .compress import split_compression
    from .hf import is_dataset

    if is_dataset(path):
        return "hf"
    name = os.path.basename(split_compression(path)[0]).lower()
    ext = os.path.splitext(name)[1]
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if name.startswith("eng.") or ext in (".train", ".testa", ".testb", ".dev", ".test"):
        return "conll"
    return default


def looks_like_conll(path: str, lines: int = 50) -> bool:
    """Sniff a ``.txt`` file: ``-DOCSTART-`` or token lines whose last column is a tag mean CoNLL."""
    from ..record import is_tag
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
    fmt = guess_format(path)
    if fmt == "text" and os.path.isfile(path) and looks_like_conll(path):
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
    from .conll import read_conll
    from .hf import read_dataset
    from .jsonl import read_jsonl
    from .parquet import read_parquet
    from .text import read_text

    return {"conll": read_conll, "jsonl": read_jsonl, "parquet": read_parquet, "text": read_text, "hf": read_dataset}[fmt]


def read(path: str, fmt: str | None = None, options: ReadOptions = ReadOptions()) -> Iterator[Sentence]:
    """Stream the sentences of one input file (``-`` is stdin)."""
    return reader_for(input_format(path, fmt))(path, options)


def open_writer(
    path: str,
    fmt: str,
    *,
    input_path: str | None = None,
    input_fmt: str | None = None,
    part: str | None = None,
    resume: dict | None = None,
) -> Writer:
    """A writer for ``path`` (``-`` is stdout) in ``fmt``; Parquet keeps the input's columns.

    ``part``/``resume``: the fixed partial-file name and checkpoint of a resumable run.
    """
    kw = {"part": part, "resume": resume}
    if fmt in ("parquet", "hf") and compression_of(path):
        raise InputError(
            f"a {fmt} output cannot be compressed as a whole", path=path, hint="Parquet compresses its own pages; drop the suffix"
        )
    if fmt == "hf":
        if path == STDIO:
            raise InputError("a Hugging Face dataset output needs -o FOLDER", hint="pass -o FOLDER --output-format hf")
        from .hf import DatasetWriter

        return DatasetWriter(path, **kw)
    if fmt == "conll":
        from .conll import ConllWriter

        return ConllWriter(path, **kw)
    if fmt == "jsonl":
        from .jsonl import JsonlWriter

        return JsonlWriter(path, **kw)
    if fmt == "html":
        from .html import HtmlWriter

        return HtmlWriter(path, **kw)
    if fmt == "parquet":
        if path == STDIO:
            raise InputError("Parquet output cannot go to stdout", hint="pass -o FILE.parquet")
        from .parquet import ParquetWriter

        schema = None
        if input_fmt == "parquet" and input_path:
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                schema = pq.read_schema(input_path)
            except FileNotFoundError:
                raise InputError("no such file", path=input_path, hint="check the path") from None
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputError(f"not a readable Parquet file: {exc}", path=input_path) from None
        return ParquetWriter(path, input_schema=schema, extra_json=input_fmt == "jsonl", **kw)
    raise InputError(f"unknown output format {fmt!r}", hint=f"use one of {', '.join(OUTPUT_FORMATS)}")


__all__ = [
    "INPUT_FORMATS",
    "OUTPUT_FORMATS",
    "ReadOptions",
    "Writer",
    "compression_of",
    "guess_format",
    "input_format",
    "open_writer",
    "read",
    "reader_for",
    "split_compression",
]
