"""Slices of a big input read on their own as inside the whole file (nerbatch.io.split), and parts
folders read back as one input (nerbatch.io.parts)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nerbatch.errors import InputError
from nerbatch.io import ReadOptions, guess_format, read
from nerbatch.io.parts import is_parts_folder, part_paths, write_manifest
from nerbatch.io.paths import expand_inputs
from nerbatch.io.split import chunks, join_scans, parquet_slices, scan_chunk

from ..conftest import SAMPLE

OPTIONS = ReadOptions()


def slices_of(path: Path, fmt: str, part_size: int, rule: str, need: bool = True):
    size = path.stat().st_size
    if fmt == "parquet":
        return parquet_slices(str(path), OPTIONS, part_size, need)
    scans = [scan_chunk(str(path), fmt, OPTIONS, lo, hi, need) for lo, hi in chunks(size, part_size)]
    return join_scans(scans, fmt, rule, size)


def seen(sentences, index: bool):
    """What a sentence stream carries to the tagger and the writers (passthrough-only sentences left out:
    a slice's trailing blank lines come as one, the whole file's go with the next sentence)."""
    return [(s.tokens, s.tags, s.doc_id, s.index if index else None, s.line, s.source, s.error)
            for s in sentences if s.tokens or s.error]


def records(times: int = 4) -> list[dict]:
    sents = [s for s in read(str(SAMPLE / "train.conll")) if s.tokens]
    return [{"tokens": s.tokens, "tags": s.tags, "doc_id": f"d{n // 5}", "n": n}
            for n, s in enumerate(sents * times)]


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("big")
    conll = folder / "big.conll"
    conll.write_text((SAMPLE / "train.conll").read_text(encoding="utf-8") * 4, encoding="utf-8")
    jsonl = folder / "big.jsonl"
    rows = records()
    jsonl.write_text("".join(json.dumps(r) + ("\n\n" if i % 9 == 0 else "\n") for i, r in enumerate(rows)), encoding="utf-8")
    parquet = folder / "big.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=64)
    return {"conll": conll, "jsonl": jsonl, "parquet": parquet}


@pytest.mark.parametrize("fmt,rule,index", [
    ("conll", "document", True),  # at -DOCSTART- lines: documents numbered on, sentences within them too
    ("conll", "sentence", False),  # after any blank line (a CoNLL output only: sentence numbers restart)
    ("jsonl", "document", False),
    ("jsonl", "sentence", False),
    ("parquet", "document", False),
    ("parquet", "sentence", False),
])
def test_slices_read_as_inside_the_whole_file(big, fmt, rule, index):
    path = big[fmt]
    slices = slices_of(path, fmt, 9000, rule, need=rule == "document")
    assert len(slices) > 2
    assert [s.start for s in slices[1:]] == [s.end for s in slices[:-1]] or fmt == "parquet"
    whole = seen(read(str(path), fmt, OPTIONS), index)
    parts = [seen(read(str(path), fmt, OPTIONS, part=s), index) for s in slices]
    assert [x for p in parts for x in p] == whole
    if rule == "document":  # no document runs across a cut
        docs = [(p[0][2], p[-1][2]) for p in parts]
        assert all(a[1] != b[0] for a, b in zip(docs, docs[1:]))


def test_a_bad_line_in_a_later_slice_fails_with_the_whole_files_message(tmp_path):
    text = (SAMPLE / "train.conll").read_text(encoding="utf-8") * 3
    lines = text.split("\n")
    k = len(lines) * 3 // 4
    while not lines[k]:
        k += 1
    lines[k] += " extra"  # one column too many, far into the file
    path = tmp_path / "bad.conll"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(InputError) as whole:
        list(read(str(path)))
    errors = []
    for s in slices_of(path, "conll", 8000, "sentence", need=False):
        try:
            list(read(str(path), part=s))
        except InputError as exc:
            errors.append(str(exc))
    assert errors == [str(whole.value)] and f":{k + 1}:" in errors[0]


def test_a_file_whose_lines_end_in_cr_only_is_not_cut(tmp_path):
    path = tmp_path / "mac.conll"
    path.write_bytes((SAMPLE / "train.conll").read_bytes().replace(b"\n", b"\r") * 2)
    assert slices_of(path, "conll", 8000, "sentence", need=False) is None


def test_a_parts_folder_reads_as_one_input(big, tmp_path):
    src = big["conll"]
    data = src.read_bytes()
    folder = tmp_path / "out.conll"
    folder.mkdir()
    cuts = [s.start for s in slices_of(src, "conll", 9000, "document")] + [len(data)]
    names = [f"part-{i:05d}.conll" for i in range(len(cuts) - 1)]
    for name, a, b in zip(names, cuts, cuts[1:]):
        (folder / name).write_bytes(data[a:b])
    write_manifest(str(folder), "conll", names, complete=False)
    assert is_parts_folder(str(folder))
    with pytest.raises(InputError, match="has not finished"):
        list(read(str(folder)))
    write_manifest(str(folder), "conll", names, complete=True)
    got = [(s.tokens, s.doc_id, s.index, s.line, s.source, s.prefix) for s in read(str(folder))]
    want = [(s.tokens, s.doc_id, s.index, s.line, s.source, s.prefix) for s in read(str(src))]
    assert got == want
    assert guess_format(str(tmp_path / "out.conll")) == "conll"
    (tmp_path / "other.conll").write_bytes(data)
    assert [p for p, _ in expand_inputs([str(tmp_path)])] == [str(tmp_path / "other.conll"), str(folder)]  # in name order
    os.unlink(folder / names[-1])
    with pytest.raises(InputError, match="missing"):
        part_paths(str(folder))


def test_a_parquet_parts_folder_reads_its_rows_in_order(big, tmp_path):
    src = big["parquet"]
    table = pq.read_table(src)
    folder = tmp_path / "out.parquet"
    folder.mkdir()
    names = []
    for i, start in enumerate(range(0, table.num_rows, 100)):
        names.append(f"part-{i:05d}.parquet")
        pq.write_table(table.slice(start, 100), folder / names[-1])
    write_manifest(str(folder), "parquet", names, complete=True)
    got = [(s.tokens, s.doc_id, s.line) for s in read(str(folder))]
    assert got == [(s.tokens, s.doc_id, s.line) for s in read(str(src))]
