"""Parquet: read by record batch (never the whole file); other columns pass through to the output."""

from __future__ import annotations

import os
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
                try:
                    sent = record_to_sentence(obj, options, path, row, index)
                except InputError as exc:
                    if options.on_error != "skip":
                        raise
                    yield Sentence(tokens=[], path=path, line=row, source=repr(obj)[:2000], error=str(exc))
                    continue
                yield sent
                index += 1
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"corrupt Parquet data after row {row}: {exc}", path=path) from None


class ParquetWriter(Writer):
    """Passthrough columns plus ``pred_tags`` (list<string>) and ``pred_scores`` (list<float>).

    Rows are buffered and written a row group at a time. The schema comes from the input Parquet
    file when there is one, else from the standard columns. A Parquet file cannot be appended to,
    so with a fixed ``part`` name (resumable runs) every checkpoint seals a numbered part file
    (``<part>.NNNNN``); commit joins the parts, row group by row group, into the output.
    """

    binary = True

    def __init__(self, path: str, input_schema=None, rows_per_group: int = 4096, **kw) -> None:
        import pyarrow as pa

        self.pa = pa
        self.rows: list[dict] = []
        self.rows_per_group = rows_per_group
        self.input_schema = input_schema
        self.schema = None
        self.writer = None
        self.sealed = 0  # complete part files (resumable mode)
        self.part_writer = None
        super().__init__(path, **kw)
        if self.part is not None:
            for stale in self._parts(from_index=self.sealed):
                os.unlink(stale)

    # -- parts (resumable mode) ------------------------------------------------------------
    def _part_name(self, i: int) -> str:
        return f"{self.part}.{i:05d}"

    def _parts(self, from_index: int = 0) -> list[str]:
        folder, base = os.path.split(self.part)
        names = sorted(n for n in os.listdir(folder) if n.startswith(base + ".") and n[len(base) + 1 :].isdigit())
        return [os.path.join(folder, n) for n in names if int(n[len(base) + 1 :]) >= from_index]

    def state(self) -> dict:
        return {"sealed": self.sealed}

    def restore(self, state: dict) -> None:
        self.sealed = int(state.get("sealed", 0))

    def checkpoint(self) -> dict:
        if self.part is None:
            return super().checkpoint()
        self._flush()
        if self.part_writer is not None:
            self.part_writer.close()
            self.part_writer = None
            with open(self._part_name(self.sealed), "rb") as fh:
                os.fsync(fh.fileno())
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
            base = [f for f in self.input_schema if f.name not in ("pred_tags", "pred_scores")]
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
        if isinstance(sentence.source, dict) and self.input_schema is not None:
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

    def _target(self):
        import pyarrow.parquet as pq

        if self.schema is None:
            self.schema = self._schema_for(self.rows[0] if self.rows else {})
        if self.part is None:
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.out.handle, self.schema)
            return self.writer
        if self.part_writer is None:
            self.part_writer = pq.ParquetWriter(self._part_name(self.sealed), self.schema)
        return self.part_writer

    def _flush(self) -> None:
        if not self.rows:
            return
        writer = self._target()
        writer.write_table(self.pa.Table.from_pylist(self.rows, schema=self.schema))
        self.rows = []

    def finish(self) -> None:
        import pyarrow.parquet as pq

        self._flush()
        if self.part is None:
            self._target().close()
            return
        if self.part_writer is not None:
            self.part_writer.close()
            self.part_writer = None
            self.sealed += 1
        parts = self._parts()
        if self.schema is None:
            self.schema = pq.read_schema(parts[0]) if parts else self._schema_for({})
        with pq.ParquetWriter(self.out.handle, self.schema) as joined:
            for name in parts:
                pf = pq.ParquetFile(name)
                for i in range(pf.num_row_groups):
                    joined.write_table(pf.read_row_group(i))
        for name in parts:
            os.unlink(name)

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
            except Exception:  # noqa: BLE001 - best effort while failing
                pass
            self.part_writer = None
        if not keep and self.part is not None:
            for name in self._parts():
                os.unlink(name)
        super().abort(keep=keep)
