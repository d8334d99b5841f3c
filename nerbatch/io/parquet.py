"""Parquet: read by record batch (never the whole file); other columns pass through to the output.

A Parquet output of a JSONL input keeps the input's other keys as one JSON column, ``extra_json``
(the members' original JSON text, as an object): JSON records need not share keys or types, so
per-key columns could not be typed safely while streaming.
"""

from __future__ import annotations

import os
from typing import Iterator

from ..core.record import RecordParts, Sentence, rough_bytes
from ..errors import InputError
from .base import ReadOptions, Slice, Writer
from .jsonl import members, record_to_sentences

EXTRA_JSON = "extra_json"
PARQUET_OUTPUT_COLUMNS = ("pred_tags", "pred_scores")  # an input column of these names is replaced
ROWS_PER_GROUP = 4096
BATCH_BYTES = 32 << 20  # a record batch read holds about this much data (fewer rows when they are wide)
BYTES_PER_GROUP = 64 << 20  # a row group is written when the buffered rows hold this much data


def batch_rows(pf, most: int, budget: int = BATCH_BYTES) -> int:
    """Rows per record batch: ``most``, or fewer when the file's rows are wide, so that a batch holds
    about ``budget`` bytes of data (by the widest row group's uncompressed bytes per row)."""
    md = pf.metadata
    widest = max(
        (md.row_group(i).total_byte_size / md.row_group(i).num_rows for i in range(md.num_row_groups) if md.row_group(i).num_rows),
        default=0.0,
    )
    return max(1, min(most, int(budget // widest))) if widest else most


def _rows(batch, first_row: int, path: str):
    """The rows of a record batch as dicts; a row that cannot be converted (a date beyond year
    9999 ...) is an :class:`InputError` for that row, found by converting the batch row by row."""
    try:
        return batch.to_pylist()
    except (ValueError, OverflowError, TypeError):
        pass
    rows = []
    for i in range(batch.num_rows):
        try:
            rows.extend(batch.slice(i, 1).to_pylist())
        except (ValueError, OverflowError, TypeError) as exc:
            rows.append(InputError(f"cannot read this row: {exc}", path=path, line=first_row + i + 1))
    return rows


def read_parquet(path: str, options: ReadOptions = ReadOptions(), part: Slice | None = None) -> Iterator[Sentence]:
    """Stream sentences row by row; ``line`` is the 1-based row number. A parts folder
    (:mod:`nerbatch.io.parts`) reads as its part files' rows in order, numbered on; ``part``: the
    row groups of that slice only, numbered as in the whole file. A URL is read through fsspec."""
    from .base import open_binary
    from .parts import is_parts_folder, part_paths
    from .remote import is_url

    url = is_url(path)
    handle = open_binary(path, decompress=False)  # uniform "no such file"/"permission denied" errors
    if not url:
        handle.close()  # a local file: pyarrow opens it itself
    try:
        files = part_paths(path) if not url and is_parts_folder(path) else [path]
        row = part.line - 1 if part is not None else 0
        index = 0
        for name in files:
            source = handle if url else name
            for sent in _read_file(path, source, options, row, index, part.groups if part is not None else None):
                if isinstance(sent, tuple):  # the file's end: the counts to go on from
                    row, index = sent
                else:
                    yield sent
    finally:
        handle.close()


def _read_file(path: str, name, options: ReadOptions, row: int, index: int, groups: tuple[int, int] | None):
    """The sentences of one Parquet file (a name, or an open file; ``groups``: of those row groups), then
    ``(rows, index)`` counted on from ``row`` and ``index``; errors name ``path``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(name)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", path=path) from None
    schema = pf.schema_arrow
    names = schema.names
    key = options.tokens_key if options.tokens_key in names else None
    if key is None and options.text_key not in names:
        raise InputError(
            f"no {options.tokens_key!r} column (columns: {', '.join(names)})",
            path=path,
            hint="name it with --tokens-key",
        )
    if key is not None:
        typ = schema.field(key).type
        if not (pa.types.is_list(typ) or pa.types.is_large_list(typ)) or not pa.types.is_string(typ.value_type) and not pa.types.is_large_string(typ.value_type):
            raise InputError(f"column {key!r} has type {typ}; expected list<string>", path=path)
    chosen = {} if groups is None else {"row_groups": range(*groups)}
    try:
        for batch in pf.iter_batches(batch_size=batch_rows(pf, options.batch_rows), **chosen):
            for obj in _rows(batch, row, path):
                row += 1
                try:
                    if isinstance(obj, InputError):
                        raise obj
                    sents = record_to_sentences(obj, options, path, row, index, "parquet")
                except InputError as exc:
                    if options.on_error != "skip":
                        raise
                    source = "" if isinstance(obj, InputError) else repr(obj)[:2000]
                    yield Sentence(tokens=[], path=path, line=row, source=source, error=str(exc))
                    continue
                yield from sents
                index += len(sents)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"corrupt Parquet data after row {row}: {exc}", path=path) from None
    yield row, index


class ParquetWriter(Writer):
    """Passthrough columns plus ``pred_tags`` (list<string>) and ``pred_scores`` (list<float>).

    Rows are buffered and written a row group at a time: every ``rows_per_group`` rows, or sooner
    when the buffered rows hold ``bytes_per_group`` bytes of data (wide rows). The schema comes from
    the input Parquet file when there is one, else from the standard columns (plus ``extra_json``
    for a JSONL input: ``extra_json=True``, or a first row that has one). A Parquet file cannot be appended to,
    so with a fixed ``part`` name (resumable runs) every checkpoint seals a numbered part file
    (``<part>.NNNNN``); commit joins the parts, row group by row group, into the output.
    """

    binary = True

    def __init__(
        self,
        path: str,
        input_schema=None,
        rows_per_group: int = ROWS_PER_GROUP,
        bytes_per_group: int = BYTES_PER_GROUP,
        extra_json: bool = False,
        **kw,
    ) -> None:
        import pyarrow as pa

        self.pa = pa
        self.rows: list[dict] = []
        self.buffered = 0  # bytes of data in self.rows (roughly)
        self.rows_per_group = rows_per_group
        self.bytes_per_group = bytes_per_group
        self.extra_json = extra_json
        self.input_schema = input_schema
        self.keep_metadata = False  # the schema came with the rows (a dataset input): keep its features
        self.schema = None
        self.writer = None
        self.sealed = 0  # complete part files (resumable mode)
        self.part_writer = None
        self.part_file = None  # the open file of part_writer
        self.parts = RecordParts()  # the sentences of one raw-text row, joined back into the row
        super().__init__(path, **kw)
        if self.part is not None:
            for stale in self._parts(from_index=self.sealed):
                self._remove(stale)

    # -- parts (resumable mode; beside a URL output they are objects) -----------------------
    def _part_name(self, i: int) -> str:
        return f"{self.part}.{i:05d}"

    def _remote(self) -> bool:
        from .remote import is_url

        return is_url(self.part)

    def _remove(self, name: str) -> None:
        from .remote import remove

        if self._remote():
            remove(name)
        else:
            os.unlink(name)

    def _parts(self, from_index: int = 0) -> list[str]:
        if self._remote():
            from .remote import numbered

            return numbered(self.part, from_index)
        folder, base = os.path.split(self.part)
        names = sorted(n for n in os.listdir(folder) if n.startswith(base + ".") and n[len(base) + 1 :].isdigit())
        return [os.path.join(folder, n) for n in names if int(n[len(base) + 1 :]) >= from_index]

    def state(self) -> dict:
        return {"sealed": self.sealed, "parts": self.parts.state()}

    def restore(self, state: dict) -> None:
        self.sealed = int(state.get("sealed", 0))
        self.parts.restore(state.get("parts"))

    def checkpoint(self) -> dict:
        if self.part is None:
            return super().checkpoint()
        self._flush()
        if self.part_writer is not None:
            self._close_part()
            self.sealed += 1
        return {"bytes": 0, "state": self.state()}

    # -- rows ------------------------------------------------------------------------------
    def _schema_for(self, row: dict):
        pa = self.pa
        extra = [
            pa.field("pred_tags", pa.list_(pa.string())),
            pa.field("pred_scores", pa.list_(pa.float32())),
        ]
        if self.input_schema is not None:
            base = [f for f in self.input_schema if f.name not in PARQUET_OUTPUT_COLUMNS]
            if "tokens" in row and "tokens" not in self.input_schema.names:  # raw text: its tokens
                base.append(pa.field("tokens", pa.list_(pa.string())))
            return pa.schema(base + extra, metadata=self.input_schema.metadata if self.keep_metadata else None)
        fields = [
            pa.field("doc_id", pa.string()),
            pa.field("index", pa.int64()),
            pa.field("tokens", pa.list_(pa.string())),
        ]
        if "tags" in row:
            fields.append(pa.field("tags", pa.list_(pa.string())))
        if self.extra_json or EXTRA_JSON in row:
            fields.append(pa.field(EXTRA_JSON, pa.string()))
        return pa.schema(fields + extra)

    def write(self, sentence: Sentence) -> None:
        if not sentence.tokens and not isinstance(sentence.source, dict):
            return
        if len(sentence.pred or []) != len(sentence.tokens):
            raise AssertionError(f"{sentence.path}:{sentence.line}: tag count differs from token count")
        joined = self.parts.add(sentence)
        if joined is None:
            return
        sentence = joined
        row_schema = getattr(sentence.source, "arrow_schema", None)  # a dataset row (nerbatch.io.hf)
        if row_schema is not None and self.input_schema is None and self.schema is None:
            self.input_schema, self.keep_metadata = row_schema, True
        if isinstance(sentence.source, dict) and self.input_schema is not None:
            row = dict(sentence.source)
            if sentence.text is not None and "tokens" not in self.input_schema.names:
                row["tokens"] = sentence.tokens  # what pred_tags are aligned with
        else:
            row = {"doc_id": sentence.doc_id, "index": sentence.index, "tokens": sentence.tokens}
            if sentence.tags is not None:
                row["tags"] = sentence.tags
            if isinstance(sentence.source, dict):  # a JSON record: its other keys as one JSON column
                row[EXTRA_JSON] = self._extra(sentence.source, row)
        row["pred_tags"] = sentence.pred
        row["pred_scores"] = sentence.scores
        self.rows.append(row)
        self.buffered += rough_bytes(row)
        if len(self.rows) >= self.rows_per_group or self.buffered >= self.bytes_per_group:
            self._flush()

    @staticmethod
    def _extra(source: dict, row: dict) -> str:
        """The JSON object of the record's members that have no column of their own: all but
        ``doc_id``/``index``/``tokens``/``tags`` (or ``ner_tags``) holding what their column holds,
        and the columns this output writes in their place (``pred_tags``, ``pred_scores``: a
        previous run's predictions). Every other member is kept (``entities`` included)."""
        skip = list(PARQUET_OUTPUT_COLUMNS)
        for key, col in (("doc_id", "doc_id"), ("index", "index"), ("tokens", "tokens"), ("tags", "tags"), ("ner_tags", "tags")):
            if key in source and col in row:
                value, column = source[key], row[col]
                if value is column or (type(value) is type(column) and value == column):
                    skip.append(key)
        return "{" + ", ".join(members(source, skip=tuple(skip))) + "}"

    def _target(self):
        import pyarrow.parquet as pq

        if self.schema is None:
            self.schema = self._schema_for(self.rows[0] if self.rows else {})
        if self.part is None:
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.out.handle, self.schema)
            return self.writer
        if self.part_writer is None:  # a new file at the part's name, never through a planted link
            from .atomic import open_new
            from .remote import open_write

            name = self._part_name(self.sealed)
            self.part_file = open_write(name) if self._remote() else os.fdopen(open_new(name), "wb")
            self.part_writer = pq.ParquetWriter(self.part_file, self.schema)
        return self.part_writer

    def _close_part(self) -> None:
        """Close the part file being written and make it durable."""
        self.part_writer.close()
        self.part_writer = None
        self.part_file.flush()
        if not self._remote():
            os.fsync(self.part_file.fileno())
        self.part_file.close()  # an object: uploaded whole by now
        self.part_file = None

    def _flush(self) -> None:
        if not self.rows:
            return
        writer = self._target()
        writer.write_table(self.pa.Table.from_pylist(self.rows, schema=self.schema))
        self.rows = []
        self.buffered = 0

    def finish(self) -> None:
        import pyarrow.parquet as pq

        self._flush()
        if self.part is None:
            self._target().close()
            return
        if self.part_writer is not None:
            self._close_part()
            self.sealed += 1
        from .atomic import no_follow
        from .remote import open_read

        def opened(name: str):
            return open_read(name) if self._remote() else open(name, "rb", opener=no_follow)  # never through a planted link

        parts = self._parts()
        if self.schema is None:
            if parts:
                with opened(parts[0]) as fh:
                    self.schema = pq.read_schema(fh)
            else:
                self.schema = self._schema_for({})
        with pq.ParquetWriter(self.out.handle, self.schema) as joined:
            for name in parts:
                with opened(name) as fh:
                    pf = pq.ParquetFile(fh)
                    for i in range(pf.num_row_groups):
                        joined.write_table(pf.read_row_group(i))
        for name in parts:
            self._remove(name)

    def abort(self, keep: bool = False) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - best effort while failing
                pass
            self.writer = None
        if self.part_writer is not None and not keep:
            try:
                self.part_writer.close()
                self.part_file.close()
            except Exception:  # noqa: BLE001 - best effort while failing
                pass
            self.part_writer = None
        if not keep and self.part is not None:
            for name in self._parts():
                self._remove(name)
        super().abort(keep=keep)
