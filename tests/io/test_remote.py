"""Outputs, inputs and locks at URLs (nerbatch.io.remote), on fsspec's in-memory filesystem: fast,
no server. The same code talks to S3 in tests/run/test_object_store.py."""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import subprocess
import sys
import uuid

import fsspec
import pytest

from nerbatch.errors import Interrupted, LockedError
from nerbatch.io.base import AtomicOutput
from nerbatch.io.paths import expand_inputs
from nerbatch.io.remote import ObjectLock, is_url, walk

from ..conftest import SAMPLE, stopping_tagger

MEM = fsspec.filesystem("memory")


@pytest.fixture()
def root() -> str:
    """A fresh folder of the in-memory filesystem (it is one per process)."""
    name = f"/t-{uuid.uuid4().hex[:8]}"
    yield name
    if MEM.exists(name):
        MEM.rm(name, recursive=True)


def keys(root: str) -> list[str]:
    return sorted(p[len(root) + 1:] for p in MEM.find(root))


def test_is_url():
    assert is_url("s3://b/k") and is_url("memory://x") and is_url("file:///tmp/a")
    assert not is_url("/tmp/a") and not is_url("hf:conll2003") and not is_url("a.conll") and not is_url("-")


def test_output_appears_only_when_complete_and_resumes_from_its_chunks(root, tmp_path):
    """Checkpoints ship chunk objects beside the output; nothing is under the final name until
    commit; a resumed output continues after the checkpoint's chunks and, compressed, is byte for
    byte what a local file written with the same checkpoints is."""
    url = f"memory://{root}/o.conll.gz"
    part = f"memory://{root}/.o.conll.gz.nerbatch.part"
    out = AtomicOutput(url, part=part)
    out.handle.write("one\n")
    first = out.sync()
    out.handle.write("two\n")
    second = out.sync()
    out.handle.write("lost after the checkpoint\n")
    assert keys(root) == [".o.conll.gz.nerbatch.part.c00000", ".o.conll.gz.nerbatch.part.c00001"]
    out.abort(keep=True)  # interrupted: the chunks stay for --resume
    assert keys(root) == [".o.conll.gz.nerbatch.part.c00000", ".o.conll.gz.nerbatch.part.c00001"]

    resumed = AtomicOutput(url, part=part, resume_bytes=first)  # the manifest's checkpoint was the first
    resumed.handle.write("two again\n")
    resumed.sync()
    resumed.handle.write("three\n")
    resumed.commit()
    assert keys(root) == ["o.conll.gz"]  # chunks, spool and temporary key all gone
    data = MEM.cat_file(f"{root}/o.conll.gz")
    assert gzip.decompress(data) == b"one\ntwo again\nthree\n"

    local = AtomicOutput(str(tmp_path / "o.conll.gz"), part=str(tmp_path / ".o.conll.gz.nerbatch.part"))
    for text in ("one\n", "two again\n"):
        local.handle.write(text)
        local.sync()
    local.handle.write("three\n")
    local.commit()
    assert (tmp_path / "o.conll.gz").read_bytes() == data
    assert second > first


def test_failed_output_leaves_nothing(root):
    out = AtomicOutput(f"memory://{root}/o.jsonl", part=f"memory://{root}/.o.jsonl.nerbatch.part")
    out.handle.write("{}\n")
    out.sync()
    out.abort()
    assert keys(root) == []


def test_lock_object(root):
    url = f"memory://{root}/.o.conll.nerbatch.lock"
    first = ObjectLock(url)
    first.acquire()
    with pytest.raises(LockedError, match="another nerbatch run"):
        ObjectLock(url).acquire()
    first.release()
    assert keys(root) == []
    # a lock left by a dead process of this host is taken over; one of another host is not
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    MEM.pipe_file(url[len("memory://"):], json.dumps({"pid": dead.pid, "host": socket.gethostname()}).encode())
    second = ObjectLock(url)
    second.acquire()
    assert json.loads(MEM.cat_file(url[len("memory://"):]))["pid"] != dead.pid
    second.release()
    MEM.pipe_file(url[len("memory://"):], json.dumps({"pid": 1, "host": "elsewhere"}).encode())
    with pytest.raises(LockedError, match="delete the lock object"):
        ObjectLock(url).acquire()


def test_folder_walk_matches_a_local_walk(root, tmp_path):
    names = ["z.conll", "a.jsonl", "sub/b.conll", "sub/deeper/c.conll", "sub/.hidden.conll", ".dot/x.conll", "notes.md"]
    for name in names:
        MEM.pipe_file(f"{root}/in/{name}", b"x\n")
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"x\n")
    for glob in (None, "*.conll", "sub/*.conll"):
        remote = [rel for _, rel in expand_inputs([f"memory://{root}/in/"], glob)]
        local = [rel for _, rel in expand_inputs([str(tmp_path / "in")], glob)]
        assert remote == local and remote
    assert walk(f"memory://{root}/in/z.conll", None, None, lambda p: True) is None  # a file


def test_tag_to_memory_interrupted_and_resumed_matches_local(root, tiny_model, tmp_path):
    """tag_files from and to URLs: CoNLL, JSONL, Parquet, gzip and zstd inputs, interrupted inside the
    first file, resumed: every output is byte for byte the local engine's on local files."""
    from nerbatch import TaggerOptions, tag_files

    local_in = tmp_path / "in"
    local_in.mkdir()
    (local_in / "a.conll").write_bytes((SAMPLE / "test.conll").read_bytes() * 3)
    shutil.copy(SAMPLE / "test.jsonl", local_in / "b.jsonl")
    shutil.copy(SAMPLE / "test.parquet", local_in / "c.parquet")
    (local_in / "d.conll.gz").write_bytes(gzip.compress((SAMPLE / "dev.conll").read_bytes()))
    zstd = pytest.importorskip("zstandard")
    (local_in / "e.conll.zst").write_bytes(zstd.ZstdCompressor().compress((SAMPLE / "dev.conll").read_bytes()))
    for path in local_in.iterdir():
        MEM.pipe_file(f"{root}/in/{path.name}", path.read_bytes())
    options = TaggerOptions(device="cpu", precision="fp32", compile=False)
    tag_files([str(local_in)], str(tmp_path / "out"), model=tiny_model, tagger_options=options, checkpoint_every=11)

    src, dst = f"memory://{root}/in/", f"memory://{root}/out/"
    with pytest.raises(Interrupted) as stopped:
        tag_files([src], dst, tagger=stopping_tagger(tiny_model, options, stop=40), checkpoint_every=11, resume=True)
    assert stopped.value.kept[1] == 33  # three checkpoints of 11 before the stop at 40
    assert not [k for k in keys(root) if k.startswith("out/") and not k.startswith("out/.")]
    result = tag_files([src], dst, model=tiny_model, tagger_options=options, checkpoint_every=11, resume=True)
    assert result.summary.files == 5
    outputs = [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]
    assert len(outputs) == 5
    for path in outputs:
        assert MEM.cat_file(f"{root}/out/{path.name}") == path.read_bytes(), path.name
    assert not [k for k in keys(root) if ".part" in k or ".lock" in k]
