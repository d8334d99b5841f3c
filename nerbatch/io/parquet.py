"""Parquet: read by record batch (never the whole file); other columns pass through to the output."""

from __future__ import annotations

from typing import Iterator

from ..errors import InputError
from ..record import Sentence
from .base import ReadOptions, Writer
from .jsonl import record_to_sentence


def read_parquet(path: str, options: ReadOptions = ReadOptions()) -> Iterator[Sentence]:
    """Stream sentences row by row; ``line`` is the 1-based row number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .base import open_binary

    open_binary(path).close()  # uniform "no such file"/"permission denied" errors
    try:
        pf = pq.ParquetFile(path)
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
    row = 0
    index = 0
    try:
        for batch in pf.iter_batches(batch_size=options.batch_rows):
            for obj in batch.to_pylist():
                row += 1
                yield record_to_sentence(obj, options, path, row, index)
                index += 1
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"corrupt Parquet data after row {row}: {exc}", path=path) from None


class ParquetWriter(Writer):
    """Passthrough columns plus ``pred_tags`` (list<string>) and ``pred_scores`` (list<float>).

    Rows are buffered and written one row group at a time. The schema comes from the input
    Parquet file when there is one, else from the standard columns.
    """

    binary = True

    def __init__(self, path: str, input_schema=None, rows_per_group: int = 4096) -> None:
        import pyarrow as pa

        super().__init__(path)
        self.pa = pa
        self.rows: list[dict] = []
        self.rows_per_group = rows_per_group
        self.schema = input_schema
        self.writer = None

    def _schema_for(self, row: dict):
        pa = self.pa
        extra = [
            pa.field("pred_tags", pa.list_(pa.string())),
            pa.field("pred_scores", pa.list_(pa.float32())),
        ]
        if self.schema is not None:
            base = [f for f in self.schema if f.name not in ("pred_tags", "pred_scores")]
            return pa.schema(base + extra)
        fields = [
            pa.field("doc_id", pa.string()),
            pa.field("index", pa.int64()),
            pa.field("tokens", pa.list_(pa.string())),
        ]
        if "tags" in row:
            fields.append(pa.field("tags", pa.list_(pa.string())))
        return pa.schema(fields + extra)

    def write(self, sentence: Sentence) -> None:
        if not sentence.tokens and not isinstance(sentence.source, dict):
            return
        if len(sentence.pred or []) != len(sentence.tokens):
            raise AssertionError(f"{sentence.path}:{sentence.line}: tag count differs from token count")
        if isinstance(sentence.source, dict) and self.schema is not None:
            row = dict(sentence.source)
        else:
            row = {"doc_id": sentence.doc_id, "index": sentence.index, "tokens": sentence.tokens}
            if sentence.tags is not None:
                row["tags"] = sentence.tags
        row["pred_tags"] = sentence.pred
        row["pred_scores"] = sentence.scores
        self.rows.append(row)
        if len(self.rows) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        import pyarrow.parquet as pq

        if self.writer is None:
            self.schema = self._schema_for(self.rows[0])
            self.writer = pq.ParquetWriter(self.out.handle, self.schema)
        table = self.pa.Table.from_pylist(self.rows, schema=self.schema)
        self.writer.write_table(table)
        self.rows = []

    def finish(self) -> None:
        if self.writer is None and not self.rows:
            self.schema = self._schema_for({})
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(self.out.handle, self.schema)
        self._flush()
        self.writer.close()
