"""One big input cut into slices that can be read, tagged and written apart (the Ray engine's parts).

A slice (:class:`~nerbatch.io.base.Slice`) is cut where the input's sentences are whole and, for a
model with document context, where no document goes on across the cut, so each slice tags alone as
it does inside the whole file:

* **CoNLL** (byte ranges): at a sentence end (after a blank line), or with document context or a
  JSONL/Parquet output (which number sentences within a document) at a ``-DOCSTART-`` line. A
  CoNLL file without ``-DOCSTART-`` lines is one document: it is cut only for a model without context.
* **JSONL** (byte ranges): at any line, or with document context before a record whose document
  differs from that of the last record before it that has one (a file whose records name no
  document is cut at any line).
* **Parquet** (row groups): between any two row groups, or with document context and a document
  column where the rows on each side belong to different documents.

The cuts are found without reading the whole file in one place: :func:`scan_chunk` reads one chunk
of bytes (the Ray engine runs one task per chunk) and :func:`join_scans` joins the small results
into slices, carrying line numbers and ``-DOCSTART-`` counts from chunk to chunk. A cut is never
placed before a line holding a lone CR (such a first line would make the reader split on CR).
:func:`splittable` says which inputs and outputs can be cut: uncompressed CoNLL into CoNLL, JSONL
or Parquet; JSONL into JSONL; Parquet into Parquet or JSONL (the outputs whose writers keep no
state from one record to the next that a slice cannot know).
"""

from __future__ import annotations

import json
import os
import re
from typing import BinaryIO, Iterator

from .base import ReadOptions, Slice
from .compress import compression_of

__all__ = ["PART_SIZE", "CUTS", "splittable", "chunks", "scan_chunk", "join_scans", "parquet_slices"]

PART_SIZE = 256 << 20  # an input larger than this many bytes is cut into slices of about this size
CUTS = {"conll": ("conll", "jsonl", "parquet"), "jsonl": ("jsonl",), "parquet": ("parquet", "jsonl")}
_DOCSTART = re.compile(rb"\n-DOCSTART-(?=[ \t\r\n])")
_PEEK = 1 << 16  # bytes of a line looked at (the rest is read past)
_BLOCK = 1 << 20


def splittable(path: str, input_fmt: str, output_fmt: str) -> bool:
    """Whether this input (a plain file) can be cut into slices for this output format."""
    return output_fmt in CUTS.get(input_fmt, ()) and compression_of(path) is None and os.path.isfile(path)


def chunks(size: int, part_size: int) -> list[tuple[int, int]]:
    """The byte ranges one scan each: ``part_size`` bytes (the last one shorter)."""
    step = max(1, part_size)
    return [(lo, min(size, lo + step)) for lo in range(0, max(size, 1), step)]


def _lines(fh: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """``(first bytes, length)`` of each line from the file's position on (a long line is read past)."""
    while True:
        head = fh.readline(_PEEK)
        if not head:
            return
        length = len(head)
        if not head.endswith(b"\n"):
            while True:
                more = fh.readline(_BLOCK)
                length += len(more)
                if not more or more.endswith(b"\n"):
                    break
        yield head, length


def _lone_cr(line: bytes) -> bool:
    """A CR that is not part of the line's CRLF end (a first line like this makes the reader split on CR)."""
    body = line[:-1] if line.endswith(b"\n") else line
    return b"\r" in body.removesuffix(b"\r") or (body.endswith(b"\r") and not line.endswith(b"\n"))


def _is_docstart(line: bytes) -> bool:
    return line.startswith(b"-DOCSTART-") and (len(line) == 10 or line[10:11] in (b" ", b"\t", b"\r", b"\n"))


def _blank(line: bytes) -> bool:
    return not line.strip(b" \t\r\n")


def _record_doc(line: bytes, options: ReadOptions, pos: int) -> str | None:
    """The document of a JSON record for cutting: its document id when it has tokens (or text) and one,
    else None (the reader gives it no document context of its own: other documents' context passes over it)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    words = obj.get(options.tokens_key)
    text = obj.get(options.text_key)
    if not (isinstance(words, list) and words) and not (isinstance(text, str) and text.strip()):
        return None
    for key in [options.doc_key] if options.doc_key else ["doc_id", "doc"]:
        if obj.get(key) is not None:
            return str(obj[key])
    return None


def _count(fh: BinaryIO, lo: int, hi: int, fmt: str) -> tuple[int, int]:
    """``(line ends, -DOCSTART- line starts)`` in bytes ``[lo, hi)`` (the counts go from chunk to chunk)."""
    ends = docs = 0
    fh.seek(max(0, lo - 1))
    carry = b"" if lo == 0 else fh.read(1)  # the byte before lo: a line start at lo shows as "\n-DOCSTART-"
    pos = lo
    while pos < hi:
        block = fh.read(min(_BLOCK, hi - pos))
        if not block:
            break
        ends += block.count(b"\n")
        if fmt == "conll":
            look = fh.read(11)  # the rest of a "-DOCSTART-" that begins in this block
            fh.seek(-len(look), os.SEEK_CUR)
            window = carry + block + look
            start = len(carry)
            # a match's "\n" sits at window index i; its line starts at pos + (i + 1 - start)
            docs += sum(1 for m in _DOCSTART.finditer(window) if start <= m.start() + 1 < start + len(block))
            carry = block[-1:]
        pos += len(block)
    if lo == 0 and fmt == "conll":
        fh.seek(0)
        head = fh.read(13)
        docs += _is_docstart(head.removeprefix(b"\xef\xbb\xbf")) and hi > 0
    return ends, docs


def scan_chunk(path: str, fmt: str, options: ReadOptions, lo: int, hi: int, need: bool) -> dict:
    """What :func:`join_scans` needs of bytes ``[lo, hi)`` of a CoNLL or JSONL file: the first place at or
    after ``lo`` (before ``hi``) where a slice may begin, by each rule, with the line ends (and
    ``-DOCSTART-`` lines) before it in the chunk, and the chunk's totals. ``need``: the model uses
    document context (JSONL: the records' documents are read to find where one ends)."""
    with open(path, "rb") as fh:
        ends, docs = _count(fh, lo, hi, fmt)
        out: dict = {"lo": lo, "hi": hi, "ends": ends, "docs": docs, "sentence": None, "document": None,
                     "has_docs": False, "cr": False, "columns": None}
        if lo == 0:
            fh.seek(0)
            first = fh.readline(_PEEK)
            out["cr"] = _lone_cr(first)
            out["sentence"] = out["document"] = (0, 0, 0)
            if fmt == "conll":
                conllu = options.conllu if options.conllu is not None else path.lower().endswith(".conllu")
                out["columns"] = _first_columns(fh, conllu)
            if not need or fmt != "jsonl":
                return out
        fh.seek(max(0, lo - 1))
        if lo > 0 and fh.read(1) != b"\n":
            fh.readline()  # lo is inside a line: the next line start is the first place a slice may begin
        pos = fh.tell()
        before_ends = 1 if lo > 0 and pos > lo else 0  # the end of the line lo was inside
        before_docs = 0
        prev: bytes | None = None
        last_doc: str | None = None
        for line, length in _lines(fh):
            if pos >= hi:
                break
            ok = pos > 0 and not _lone_cr(line)
            if fmt == "conll":
                if ok and out["sentence"] is None and prev is not None and _blank(prev):
                    out["sentence"] = (pos, before_ends, before_docs)
                if ok and out["document"] is None and _is_docstart(line):
                    out["document"] = (pos, before_ends, before_docs)
                before_docs += _is_docstart(line)
                if out["sentence"] is not None and out["document"] is not None:
                    break
            else:
                if ok and out["sentence"] is None:
                    out["sentence"] = (pos, before_ends, 0)
                if not need:
                    break
                if not _blank(line):
                    doc = _record_doc(line, options, pos)
                    if doc is not None:
                        out["has_docs"] = True
                        if ok and out["document"] is None and last_doc is not None and doc != last_doc:
                            out["document"] = (pos, before_ends, 0)
                        last_doc = doc
            before_ends += line.endswith(b"\n") or length > len(line)
            prev = line
            pos += length
        return out


def _first_columns(fh: BinaryIO, conllu: bool, lines: int = 1000) -> int | None:
    """The column count of the file's first token line (the CoNLL reader holds every line to it)."""
    from .conll import split_columns

    fh.seek(0)
    for n, (line, _) in enumerate(_lines(fh)):
        if n >= lines:
            return None
        text = line.decode("utf-8", "replace").removeprefix("\ufeff").rstrip("\r\n").rstrip(" \t")
        if not text or _is_docstart(text.encode()) or conllu and text.startswith("#"):
            continue
        return len(split_columns(text))
    return None


def join_scans(scans: list[dict], fmt: str, rule: str, size: int) -> list[Slice] | None:
    """The slices of a file from its chunks' scans (in order), cut by ``rule`` ("sentence" or
    "document"); None when it cannot be cut (a file whose lines end in CR only). A JSONL file none of
    whose records names a document is cut at any line whatever the rule."""
    if not scans or scans[0]["cr"]:
        return None
    if fmt == "jsonl" and rule == "document" and not any(s["has_docs"] for s in scans):
        rule = "sentence"
    columns = scans[0]["columns"]
    starts: list[tuple[int, int, int]] = []  # (byte, line, documents before)
    ends = docs = 0
    for scan in scans:
        cut = scan[rule]
        if cut is not None and (not starts or cut[0] > starts[-1][0]):
            pos, e, d = cut
            starts.append((pos, 1 + ends + e, docs + d))
        ends += scan["ends"]
        docs += scan["docs"]
    bounds = [s[0] for s in starts[1:]] + [size]
    return [Slice(start=pos, end=end, line=line, docs=d, columns=columns if fmt == "conll" else None, size=size)
            for (pos, line, d), end in zip(starts, bounds)]


def parquet_slices(path: str, options: ReadOptions, part_size: int, need: bool) -> list[Slice]:
    """Runs of row groups of about ``part_size`` bytes each, cut between row groups (with document
    context and a document column: only where the rows on each side belong to different documents)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    md = pf.metadata
    size = os.path.getsize(path)
    doc_keys = [options.doc_key] if options.doc_key else ["doc_id", "doc"]
    doc_col = next((k for k in doc_keys if k in pf.schema_arrow.names), None)
    word_cols = [c for c in (options.tokens_key, options.text_key) if c in pf.schema_arrow.names]

    def span(g: int) -> tuple[int, int]:
        rg = md.row_group(g)
        firsts, lasts = [], []
        for j in range(rg.num_columns):
            col = rg.column(j)
            first = col.dictionary_page_offset if col.has_dictionary_page and col.dictionary_page_offset else col.data_page_offset
            firsts.append(first)
            lasts.append(first + col.total_compressed_size)
        return min(firsts), max(lasts)

    def edge_doc(g: int, row: int) -> str | None:
        table = pf.read_row_group(g, columns=[doc_col, *word_cols])
        rec = table.slice(row if row >= 0 else table.num_rows + row, 1).to_pylist()[0]
        words = [rec.get(c) for c in word_cols]
        if rec.get(doc_col) is None or not any(w for w in words if not isinstance(w, str) or w.strip()):
            return None
        return str(rec[doc_col])

    def may_cut(g: int) -> bool:  # between row groups g - 1 and g
        if not need or doc_col is None:
            return True
        a, b = edge_doc(g - 1, -1), edge_doc(g, 0)
        return a is not None and b is not None and a != b

    slices: list[Slice] = []
    first = rows = rows_before = 0
    held = 0
    for g in range(md.num_row_groups):
        lo, hi = span(g)
        if g > first and held >= part_size and may_cut(g):
            slices.append(_groups(first, g, rows_before, size, span))
            first, rows_before, held = g, rows, 0
        held += hi - lo
        rows += md.row_group(g).num_rows
    slices.append(_groups(first, md.num_row_groups, rows_before, size, span))
    return slices


def _groups(first: int, end: int, rows_before: int, size: int, span) -> Slice:
    spans = [span(g) for g in range(first, end)] or [(0, 0)]
    return Slice(start=min(s[0] for s in spans), end=max(s[1] for s in spans), line=rows_before + 1,
                 groups=(first, end), size=size)
