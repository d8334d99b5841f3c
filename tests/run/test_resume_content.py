"""`--resume` keys inputs by their contents, not by their size and mtime: an input edited in place
(same size, mtime set back with ``touch -r``) is tagged again, an unchanged one is still skipped, and
a partial output is continued only when the input still begins with the bytes its checkpoint was
made from; every output is byte-identical to an uninterrupted run on the input as it is now."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.errors import Interrupted
from nerbatch.io import ReadOptions
from nerbatch.run.local import RunOptions, plan, run_local
from nerbatch.run.manifest import load_manifest
from nerbatch.run.plan import plan_jobs
from nerbatch.tagging.tagger import TaggerOptions

from ..conftest import SAMPLE, stopping_tagger


def edit_in_place(path: Path, old: bytes, new: bytes, *, last: bool = False) -> None:
    """Replace one occurrence of ``old`` by ``new`` (same length), keeping the size and the mtime."""
    assert len(old) == len(new)
    st = path.stat()
    data = path.read_bytes()
    at = data.rindex(old) if last else data.index(old)
    path.write_bytes(data[:at] + new + data[at + len(old):])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # touch -r: the old mtime back
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def tag(*args) -> object:
    res = CliRunner().invoke(cli, ["tag", *map(str, args)])
    assert res.exit_code == 0, res.output
    return res


def compress(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    if dst.suffix == ".gz":
        dst.write_bytes(gzip.compress(data, mtime=0))
    elif dst.suffix == ".bz2":
        dst.write_bytes(bz2.compress(data))
    elif dst.suffix == ".xz":
        dst.write_bytes(lzma.compress(data))
    else:
        zstandard = pytest.importorskip("zstandard")
        dst.write_bytes(zstandard.ZstdCompressor().compress(data))


def test_same_size_edit_with_the_old_mtime_is_tagged_again(tiny_model, tmp_path):
    src = tmp_path / "in.conll"
    shutil.copy(SAMPLE / "test.conll", src)
    out = tmp_path / "out.conll"
    args = [src, "-o", out, "--model", tiny_model, "--resume"]
    tag(*args)
    assert "already complete" in tag(*args).stderr
    edit_in_place(src, b"SOCCER", b"ZOCCER")
    res = tag(*args)
    assert "already complete" not in res.stderr
    assert f"{src}: its contents differ from those {out} was made from: tagging it again" in res.stderr
    assert "ZOCCER" in out.read_text(encoding="utf-8").split()
    fresh = tmp_path / "fresh.conll"
    tag(src, "-o", fresh, "--model", tiny_model)
    assert out.read_bytes() == fresh.read_bytes()
    assert "already complete" in tag(*args).stderr  # and that output is complete for the edited input


@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2", ".xz", ".zst"])
def test_unchanged_input_is_still_skipped(tiny_model, tmp_path, suffix):
    src = tmp_path / f"in.conll{suffix}"
    compress(SAMPLE / "test.conll", src) if suffix else shutil.copy(SAMPLE / "test.conll", src)
    out = tmp_path / f"out.conll{suffix}"
    args = [src, "-o", out, "--model", tiny_model, "--resume"]
    tag(*args)
    recorded = load_manifest(str(out))["input"]
    assert recorded["bytes"] == src.stat().st_size  # every byte of the file, compressed as it is
    before = out.stat().st_mtime_ns
    os.utime(src)  # touched, not changed: the contents decide
    assert "1 output(s) already complete" in tag(*args).stderr
    assert out.stat().st_mtime_ns == before


def test_parquet_input_is_keyed_by_its_bytes(tiny_model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"tokens": [["Turku", "is", "old"], ["Pori", "too"]]}), src, compression="none")
    out = tmp_path / "out.jsonl"
    args = [src, "-o", out, "--model", tiny_model, "--resume"]
    tag(*args)
    assert "already complete" in tag(*args).stderr
    edit_in_place(src, b"Turku", b"Xurku")  # uncompressed pages: the string is in the file as is
    assert "already complete" not in tag(*args).stderr
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0])["tokens"][0] == "Xurku"


def test_dataset_folder_input_is_keyed_by_its_files(tiny_model, tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "ds"
    datasets.Dataset.from_dict({"tokens": [["Turku", "is", "old"], ["Pori", "too"]]}).save_to_disk(str(folder))
    out = tmp_path / "out.jsonl"
    args = [folder, "-o", out, "--model", tiny_model, "--resume"]
    tag(*args)
    assert "already complete" in tag(*args).stderr
    [arrow] = folder.glob("*.arrow")
    edit_in_place(arrow, b"Turku", b"Xurku")  # Arrow keeps the strings as they are
    assert "already complete" not in tag(*args).stderr
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0])["tokens"][0] == "Xurku"


def test_old_manifest_without_a_digest_is_redone(tiny_model, tmp_path):
    src = tmp_path / "in.conll"
    shutil.copy(SAMPLE / "test.conll", src)
    out = tmp_path / "out.conll"
    args = [src, "-o", out, "--model", tiny_model, "--resume"]
    tag(*args)
    sidecar = tmp_path / ".out.conll.nerbatch.json"
    manifest = json.loads(sidecar.read_text())
    del manifest["input"]
    sidecar.write_text(json.dumps(manifest))
    assert "already complete" not in tag(*args).stderr
    assert "already complete" in tag(*args).stderr


@pytest.fixture
def interrupted(tiny_model, tmp_path):
    """A 1,200-sentence CoNLL input whose output was interrupted after 300 sentences, just
    checkpointed; returns (input, output, the checkpoint)."""
    src = tmp_path / "big.conll"
    src.write_text((SAMPLE / "test.conll").read_text(encoding="utf-8") * 20, encoding="utf-8")
    out = tmp_path / "out" / "big.conll"
    out.parent.mkdir()
    [job] = plan_jobs([str(src)], str(out))
    with pytest.raises(Interrupted):
        tagger = stopping_tagger(tiny_model, TaggerOptions(device="cpu", block=16), 300)
        run = RunOptions(resume=True, checkpoint_every=50)
        run_local(plan([job], tagger, ReadOptions(), run), tagger, progress=False, run=run)
    ck = load_manifest(str(out))["checkpoint"]
    assert ck["sentences"] == 300 and not out.exists()
    return src, out, ck


def _resume(tiny_model, src: Path, out: Path):
    log = out.parent / "log.jsonl"
    res = tag(src, "-o", out, "--model", tiny_model, "--resume", "--checkpoint-every", "50", "--log-json", log)
    return res, json.loads(log.read_text().splitlines()[-1])["status"]


def test_partial_output_of_an_input_edited_before_its_checkpoint_starts_afresh(tiny_model, tmp_path, interrupted):
    src, out, ck = interrupted
    edit_in_place(src, b"SOCCER", b"ZOCCER")  # in the first sentence: long tagged by the checkpoint
    res, status = _resume(tiny_model, src, out)
    assert status == "done"  # not "resumed after 300 records"
    assert f"{src}: changed before the point where {out} was checkpointed (300 records): starting it afresh" in res.stderr
    reference = tmp_path / "reference.conll"
    tag(src, "-o", reference, "--model", tiny_model)
    assert out.read_bytes() == reference.read_bytes()


def test_partial_output_of_an_input_edited_after_its_checkpoint_is_continued(tiny_model, tmp_path, interrupted):
    src, out, ck = interrupted
    assert ck["input"]["bytes"] < src.stat().st_size  # the bytes read by the checkpoint: not the whole file
    edit_in_place(src, b"Thursday", b"Zhursday", last=True)  # in the last sentence: not read by the checkpoint
    res, status = _resume(tiny_model, src, out)
    assert status == "resumed after 300 records" and "afresh" not in res.stderr
    reference = tmp_path / "reference.conll"
    tag(src, "-o", reference, "--model", tiny_model)
    assert out.read_bytes() == reference.read_bytes()
