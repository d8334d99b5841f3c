"""`nerbatch tag --workers N` (local engine): the tagger's work in worker processes, each with a model copy
or feeding the one model of the reading process (`--one-model`, the way a GPU runs), gives the same bytes
as one process in every format, with document context across blocks, `--min-score`, rejects; a killed
run (or a killed worker) resumes to the same bytes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nerbatch.run.service import tag_files
from nerbatch.tagging.tagger import Tagger, TaggerOptions

from ..conftest import SAMPLE

INPUTS = ["test.conll", "test.jsonl", "test.parquet", "sentences.txt"]
EXTENSIONS = {"test.conll": ".conll", "test.jsonl": ".jsonl", "test.parquet": ".parquet", "sentences.txt": ".html"}


def _outputs(folder: Path) -> dict[str, object]:
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        out[p.name] = pq.read_table(p).to_pylist() if p.suffix == ".parquet" else p.read_bytes()
    return out


def _tag_all(out: Path, model: str, workers: int | None, **kw):
    results = []
    out.mkdir()
    for name in INPUTS:
        target = out / (Path(name).stem + EXTENSIONS[name])
        options = kw.pop("options", None) or TaggerOptions(device="cpu", precision="fp32", block=8)
        results.append(tag_files([str(SAMPLE / name)], str(target), model=model, tagger_options=options,
                                 workers=workers, **kw))
        kw["options"] = options
    return results


@pytest.mark.parametrize("one_model", [False, True], ids=["model copies", "feeding workers"])
@pytest.mark.parametrize("which", ["plain", "context"])
def test_same_bytes_as_one_process_in_every_format(tiny_model, context_model, tmp_path, which, one_model):
    """Blocks of 8 sentences, so the blocks of a file go to both workers and come back out of order;
    with document context most sentences borrow context from a neighbour in another block."""
    model = context_model if which == "context" else tiny_model
    one = _tag_all(tmp_path / "one", model, None)
    two = _tag_all(tmp_path / "two", model, 2, one_model=one_model or None)
    assert _outputs(tmp_path / "one") == _outputs(tmp_path / "two")
    assert len(_outputs(tmp_path / "two")) == len(INPUTS)
    for a, b in zip(one, two, strict=True):
        sa, sb = a.summary, b.summary
        assert (sa.files, sa.sentences, sa.tokens, sa.entities, sa.tagged) == (sb.files, sb.sentences, sb.tokens, sb.entities, sb.tagged)
        assert sb.sentences > 0 and sb.stage_seconds["model"] > 0  # the workers' counters came back


def test_min_score_review_and_rejects_are_the_same(tiny_model, tmp_path):
    src = tmp_path / "in.conll"
    good = (SAMPLE / "test.conll").read_bytes()
    src.write_bytes(good + b"\nbad\xff O\n\n" + good)  # a sentence with undecodable bytes: rejected
    runs = {}
    for name, workers, one_model in (("one", None, None), ("copies", 2, None), ("feeding", 2, True)):
        out = tmp_path / name
        out.mkdir()
        options = TaggerOptions(device="cpu", precision="fp32", block=16)
        tag_files([str(src)], str(out / "o.conll"), model=tiny_model, tagger_options=options, workers=workers,
                  one_model=one_model, min_score=0.3, review=str(out / "review.jsonl"), on_error="skip")
        runs[name] = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if not p.name.startswith(".")}
    assert runs["one"] == runs["copies"] == runs["feeding"]
    assert "review.jsonl" in runs["one"] and runs["one"]["o.conll"]
    assert b"invalid utf-8" in runs["one"]["o.conll.rejects.jsonl"]


def test_a_loaded_tagger_in_this_process_does_not_hang_the_workers(tiny_model, tmp_path):
    """The workers are forked from a process that has run the model with two threads (OpenMP started):
    they run with one thread each, which is safe (more would hang in libgomp)."""
    import torch

    torch.set_num_threads(2)
    (torch.randn(512, 512) @ torch.randn(512, 512)).sum()  # a product large enough to start the thread team
    tagger = Tagger(tiny_model, TaggerOptions(device="cpu", precision="fp32", block=8))
    tagger.tag(["Anna lives in Berlin ."])
    out = tmp_path / "o.jsonl"
    from nerbatch.tagging.pool import TaggerPool

    with TaggerPool(tagger, 2, threads=1) as pool:  # what tag_files makes on 2 cores
        assert pool.method == "fork" and pool.threads == 1
    t0 = time.time()
    result = tag_files([str(SAMPLE / "test.conll")], str(out), tagger=tagger, workers=2)
    assert time.time() - t0 < 120
    ref = tmp_path / "ref.jsonl"
    tag_files([str(SAMPLE / "test.conll")], str(ref), tagger=tagger)
    assert out.read_bytes() == ref.read_bytes() and result.summary.sentences > 0


def nerbatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "nerbatch", *args]


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


KILL_BASE = ["-q", "--checkpoint-every", "97", "--precision", "fp32", "--batch-tokens", "512"]


@pytest.fixture(scope="module")
def one_process_output(tiny_model, tmp_path_factory):
    """``one_process_output(times)``: the bytes of one uninterrupted process (no --workers) tagging the sample
    test set ``times`` over, run once per ``times`` for the module (the killed-run tests share it)."""
    made: dict[int, bytes] = {}

    def get(times: int) -> bytes:
        if times not in made:
            folder = tmp_path_factory.mktemp(f"one-process-x{times}")
            src, ref = folder / "big.conll", folder / "ref.conll"
            src.write_text((SAMPLE / "test.conll").read_text(encoding="utf-8") * times, encoding="utf-8")
            done = subprocess.run(nerbatch("tag", str(src), "-o", str(ref), "--model", tiny_model, *KILL_BASE),
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            made[times] = ref.read_bytes()
        return made[times]

    return get


@pytest.mark.parametrize("kill", ["the run", "the workers", "the feeding workers"])
def test_killed_then_resumed_gives_the_same_bytes(tiny_model, tmp_path, kill, one_process_output):
    src = tmp_path / "big.conll"
    # (feeding workers are done with a block soon after the model is: a longer file, so the kill finds them busy)
    times = 40 if "feeding" in kill else 12
    src.write_text((SAMPLE / "test.conll").read_text(encoding="utf-8") * times, encoding="utf-8")
    ref = one_process_output(times)  # the same input tagged by one process (shared by the kills of the same input)
    base = ["--model", tiny_model, *KILL_BASE]
    out = tmp_path / "out.conll"
    args = nerbatch("tag", str(src), "-o", str(out), *base, "--workers", "2", *(["--one-model"] if "feeding" in kill else []))
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    manifest = tmp_path / ".out.conll.nerbatch.json"
    deadline = time.time() + 240
    killed = False
    while time.time() < deadline and proc.poll() is None:
        try:
            sentences = json.loads(manifest.read_text()).get("checkpoint", {}).get("sentences", 0)
        except (OSError, ValueError):
            sentences = 0
        if sentences >= 97 * 3:
            # the workers: children of the run, or of the zygote that forked them (their only parent then)
            victims = [proc.pid] if kill == "the run" else [w for c in _children(proc.pid) for w in (_children(c) or [c])]
            assert victims
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=120)
    assert killed, "the run ended before the kill point"
    assert not out.exists()  # never a partial output under the final name
    if kill == "the run":
        assert proc.returncode == -signal.SIGKILL
    else:  # the run notices, says so in one line and keeps the checkpoint
        assert proc.returncode == 1, err
        assert "tagging worker" in err and "ended" in err and "Traceback" not in err
    for pid in [w for c in _children(proc.pid) for w in (c, *_children(c))]:  # pragma: no cover - they follow their parent out
        os.kill(pid, signal.SIGKILL)
    log = tmp_path / "log.jsonl"
    resumed = subprocess.run(args + ["--resume", "--log-json", str(log)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == ref
    assert json.loads(log.read_text().splitlines()[-1])["status"].startswith("resumed after ")


def test_workers_on_a_gpu_feed_the_one_model_loaded_first(tiny_model, tmp_path):
    """A GPU runs one model, in the reading process, fed by the workers: the model loads before any
    worker starts, so a missing device is the one-line error one process gives, and nothing is written."""
    from nerbatch.errors import ModelError
    from nerbatch.tagging.pool import on_gpu

    options = TaggerOptions(device="cuda", precision="fp32")
    assert on_gpu(options) and not on_gpu(TaggerOptions(device="cpu"))
    if Tagger(tiny_model, options).compile_wanted(cuda=True):  # pragma: no cover - never, with fp32 eager asked
        pytest.skip("compiling")
    import torch

    if torch.cuda.is_available():  # pragma: no cover - a GPU machine runs the CUDA path instead
        pytest.skip("a GPU is here")
    messages = []
    for workers in (None, 2):
        with pytest.raises(ModelError, match="no CUDA device is available") as info:
            tag_files([str(SAMPLE / "test.conll")], str(tmp_path / f"o{workers}.conll"), model=tiny_model,
                      tagger_options=options, workers=workers)
        messages.append(str(info.value))
        assert not (tmp_path / f"o{workers}.conll").exists()
    assert messages[0] == messages[1]


def test_a_gpu_gets_feeding_workers_by_default_and_the_cpu_one_process(monkeypatch):
    from nerbatch.tagging import pool

    gpu, cpu = TaggerOptions(device="cuda"), TaggerOptions(device="cpu")
    for cores, want in ((1, 1), (2, 1), (3, 2), (5, 4), (64, pool.GPU_FEEDERS)):
        monkeypatch.setattr(pool, "usable_cores", lambda cores=cores: cores)
        assert (pool.default_workers(gpu), pool.default_workers(cpu)) == (want, 1)


def test_one_model_without_workers_is_a_usage_error(tiny_model, tmp_path):
    from nerbatch.errors import InputError

    for kw in ({}, {"workers": 1}, {"workers": 2, "engine": "ray"}):
        with pytest.raises(InputError, match="--one-model goes with the local engine's --workers"):
            tag_files([str(SAMPLE / "test.conll")], str(tmp_path / "o.conll"), model=tiny_model, one_model=True, **kw)
    done = subprocess.run(nerbatch("tag", str(SAMPLE / "test.conll"), "-o", str(tmp_path / "o.conll"), "--model", tiny_model,
                                   "--one-model"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--one-model goes with" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.conll").exists()


def test_a_model_the_workers_cannot_load_is_the_error_one_process_gives(tiny_model, tmp_path):
    from nerbatch.errors import ModelError

    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    messages = []
    for workers in (None, 2):
        with pytest.raises(ModelError) as info:
            tag_files([str(SAMPLE / "test.conll")], str(tmp_path / f"o{workers}.conll"), model=str(broken),
                      tagger_options=TaggerOptions(device="cpu", precision="fp32"), workers=workers)
        messages.append(str(info.value))
        assert not (tmp_path / f"o{workers}.conll").exists()
    assert messages[0] == messages[1]


def test_workers_with_two_threads_each_start_from_a_forkserver(tiny_model, tmp_path):
    """More than one thread per worker: the workers come from a clean forkserver process (a forked child
    of a process that ran OpenMP work would hang), with the same output."""
    from nerbatch.tagging.pool import TaggerPool

    options = TaggerOptions(device="cpu", precision="fp32", threads=2, block=8)
    tagger = Tagger(tiny_model, options)
    with TaggerPool(tagger, 2, threads=2) as pool:
        assert pool.method == "forkserver" and all(p.is_alive() for p in pool.procs)
    out, ref = tmp_path / "o.conll", tmp_path / "ref.conll"
    tag_files([str(SAMPLE / "test.conll")], str(out), model=tiny_model, tagger_options=options, workers=2)
    tag_files([str(SAMPLE / "test.conll")], str(ref), model=tiny_model, tagger_options=options)
    assert out.read_bytes() == ref.read_bytes()


def test_int8_workers_give_the_bytes_of_one_int8_process(tiny_model, tmp_path):
    """int8 quantises activations per batch, so the same bytes need the same batches: each block is tagged
    as in one process. The first worker quantises the model into the cache; the other loads that copy."""
    pytest.importorskip("onnxruntime", reason="int8 needs onnxruntime (pip install 'nerbatch[int8]')")
    pytest.importorskip("onnxscript", reason="the int8 export needs onnxscript")
    options = TaggerOptions(device="cpu", precision="int8", block=8, cache_dir=str(tmp_path / "cache"))
    out, ref = tmp_path / "o.jsonl", tmp_path / "ref.jsonl"
    tag_files([str(SAMPLE / "test.conll")], str(out), model=tiny_model, tagger_options=options, workers=2)
    tag_files([str(SAMPLE / "test.conll")], str(ref), model=tiny_model, tagger_options=options)
    assert out.read_bytes() == ref.read_bytes() and out.stat().st_size > 0
    assert len([p for p in (tmp_path / "cache").iterdir() if p.name.startswith("int8-")]) == 1
    # with the copy cached, this process imports neither transformers nor torch before the workers fork
    again = tmp_path / "again.jsonl"
    code = (
        "import sys; from nerbatch.run.service import tag_files; from nerbatch.tagging.tagger import TaggerOptions\n"
        f"o = TaggerOptions(device='cpu', precision='int8', block=8, cache_dir={str(tmp_path / 'cache')!r})\n"
        f"tag_files([{str(SAMPLE / 'test.conll')!r}], {str(again)!r}, model={tiny_model!r}, tagger_options=o, workers=2)\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]" and again.read_bytes() == ref.read_bytes()


@pytest.mark.parametrize("one_model", [False, True], ids=["model copies", "feeding workers"])
def test_a_stream_given_up_on_leaves_nothing_for_the_next(tiny_model, one_model):
    """A file that fails after a few sentences leaves blocks in flight; the next file's sentences get their
    own tags, not the late results of those blocks."""
    from nerbatch.io import read
    from nerbatch.tagging.pool import TaggerPool

    options = TaggerOptions(device="cpu", precision="fp32", block=4)
    tagger = Tagger(tiny_model, options)
    first = [s for s in read(str(SAMPLE / "test.conll")) if s.tokens]
    second = [s for s in read(str(SAMPLE / "dev.conll")) if s.tokens]
    want = [(s.pred, s.scores) for s in tagger.tag_sentences([s for s in read(str(SAMPLE / "dev.conll")) if s.tokens])]
    with TaggerPool(tagger, 2, threads=1, feed=one_model) as pool:
        assert pool.feed == one_model
        stream = pool.tag_sentences(first)
        next(stream)
        stream.close()  # given up on with blocks still in flight
        start = pool.next
        got = [(s.pred, s.scores) for s in pool.tag_sentences(second)]
        assert all(k < start for k in pool.held)  # (feeding) every block of the second let go
    assert got == want and len(got) == len(second)
