"""`--engine ray` with big inputs: the workers read, tag and write, the driver moves no data; a big input
is cut into parts whose files, concatenated, are the local engine's output; a killed run resumes; a
parts folder is one input to `tag` and `evaluate`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'nerbatch[ray]')")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from nerbatch.errors import InputError, LockedError  # noqa: E402
from nerbatch.io import read  # noqa: E402
from nerbatch.io.parts import is_parts_folder, part_paths  # noqa: E402
from nerbatch.run import plan_jobs  # noqa: E402
from nerbatch.run.ray import run_ray  # noqa: E402
from nerbatch.run.service import tag_files as tag_service  # noqa: E402
from nerbatch.tagging.tagger import Tagger, TaggerOptions  # noqa: E402

from ..conftest import ROOT, SAMPLE  # noqa: E402
from . import test_ray  # noqa: E402

ray_local = test_ray.ray_local  # the module's local Ray with 2 CPUs, as in test_ray.py
tag_files = test_ray.tag_files

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OPTIONS = TaggerOptions(device="cpu", precision="fp32")
PART = 48 << 10  # bytes per part: the big inputs here make 8 to 12 parts


def _io() -> dict[str, int]:
    """This process's I/O counters (/proc/self/io: rchar/wchar count every read/write call's bytes)."""
    lines = Path("/proc/self/io").read_text().splitlines()
    return {k: int(v) for k, v in (line.split(": ") for line in lines)}


def _records(times: int) -> list[dict]:
    """JSON records of the sample CoNLL sentences, ``times`` over, seven to a document."""
    sents = [s for s in read(str(SAMPLE / "train.conll")) if s.tokens]
    out = []
    for k in range(times):
        for i, s in enumerate(sents):
            n = k * len(sents) + i
            out.append({"id": f"r{n}", "tokens": s.tokens, "tags": s.tags, "doc_id": f"d{n // 7}", "year": 1990 + n % 30})
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A folder with three big inputs (CoNLL with -DOCSTART- lines, JSONL and Parquet with document ids)
    and a small one."""
    folder = tmp_path_factory.mktemp("corpus") / "in"
    folder.mkdir()
    (folder / "big.conll").write_text((SAMPLE / "train.conll").read_text(encoding="utf-8") * 10, encoding="utf-8")
    (folder / "small.conll").write_text((SAMPLE / "test.conll").read_text(encoding="utf-8"), encoding="utf-8")
    records = _records(8)
    (folder / "big.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(records), folder / "big.parquet", row_group_size=150)
    return folder


def joined(output: str, fmt: str):
    """An output as one thing: the bytes of a file or of a parts folder's parts in order (Parquet: the table)."""
    paths = part_paths(output) if os.path.isdir(output) else [output]
    if fmt == "parquet":
        return pa.concat_tables([pq.read_table(p) for p in paths])
    return b"".join(Path(p).read_bytes() for p in paths)


def assert_same(local_jobs, ray_jobs, *, split: set[str]) -> None:
    for a, b in zip(local_jobs, ray_jobs, strict=True):
        name = os.path.basename(a.output)
        assert is_parts_folder(b.output) == (name in split), name
        if name in split:
            assert len(part_paths(b.output)) > 2, name
        got, want = joined(b.output, b.output_format), joined(a.output, a.output_format)
        if b.output_format == "parquet":
            assert got.schema == want.schema and got.num_rows == want.num_rows > 0
            assert got.to_pylist() == want.to_pylist(), name
        else:
            assert want and got == want, name  # byte for byte


@pytest.fixture(scope="module")
def ray_outputs(ray_local, tiny_model, corpus, tmp_path_factory):
    """The corpus tagged by both engines (Ray: big inputs in parts), and the Ray driver's I/O counters."""
    out = tmp_path_factory.mktemp("outputs")
    local_jobs = plan_jobs([str(corpus)], str(out / "local") + os.sep)
    local = tag_files(local_jobs, Tagger(tiny_model, OPTIONS), progress=False)
    warm = plan_jobs([str(corpus / "small.conll")], str(out / "warm") + os.sep)
    run_ray(warm, Tagger(tiny_model, OPTIONS), progress=False, workers=2, part_size=4 << 10)  # imports, first actors
    ray_jobs = plan_jobs([str(corpus)], str(out / "ray") + os.sep)
    tagger = Tagger(tiny_model, OPTIONS)
    before = _io()
    summary = run_ray(ray_jobs, tagger, progress=False, workers=2, part_size=PART)
    after = _io()
    moved = {k: after[k] - before[k] for k in ("rchar", "wchar")}
    return local_jobs, local, ray_jobs, summary, moved, warm


def test_big_inputs_go_in_parts_that_concatenate_to_the_local_output(ray_outputs, corpus):
    local_jobs, local, ray_jobs, summary, _, warm = ray_outputs
    assert_same(local_jobs, ray_jobs, split={"big.conll", "big.jsonl", "big.parquet"})
    assert is_parts_folder(warm[0].output) and joined(warm[0].output, "conll") == Path(local_jobs[-1].output).read_bytes()
    assert (summary.files, summary.sentences, summary.tokens, summary.entities) == (local.files, local.sentences, local.tokens, local.entities)
    assert [(f["input"], os.path.basename(f["output"]), f["sentences"], f["entities"]) for f in summary.per_file] == [
        (f["input"], os.path.basename(f["output"]), f["sentences"], f["entities"]) for f in local.per_file
    ]
    assert summary.tagged >= summary.sentences > 3000
    manifest = json.loads((Path(ray_jobs[0].output) / "parts.json").read_text(encoding="utf-8"))
    assert manifest["complete"] is True and manifest["format"] == "conll" and manifest["parts"][0] == "part-00000.conll"


def test_the_driver_reads_no_input_and_writes_no_output(ray_outputs, corpus):
    """/proc/self/io of the driver around the run: its reads and writes (Ray's sockets, the parts
    manifests and locks included) are a small fraction of the inputs and outputs the run moved."""
    _, _, ray_jobs, _, moved, _ = ray_outputs
    inputs = sum(p.stat().st_size for p in corpus.iterdir())
    outputs = sum(os.path.getsize(p) for j in ray_jobs for p in (part_paths(j.output) if os.path.isdir(j.output) else [j.output]))
    assert inputs > 500_000 and outputs > 500_000
    assert moved["rchar"] < inputs / 20, moved
    assert moved["wchar"] < outputs / 20, moved


def test_with_document_context_the_cuts_fall_between_documents(ray_local, context_model, tmp_path):
    """A model with document context: CoNLL cut at -DOCSTART- lines, JSONL where the doc_id changes,
    into JSONL output too (sentences numbered within each document, as by the local engine)."""
    # half the corpus's big inputs (about 240 kB each: five parts of PART bytes, cut at documents)
    news = tmp_path / "news.conll"
    news.write_text((SAMPLE / "train.conll").read_text(encoding="utf-8") * 5, encoding="utf-8")
    records = tmp_path / "big.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in _records(4)), encoding="utf-8")
    inputs = [str(news), str(records)]
    local_jobs = plan_jobs(inputs, str(tmp_path / "local") + os.sep, output_fmt="jsonl")
    tag_files(local_jobs, Tagger(context_model, OPTIONS), progress=False)
    ray_jobs = plan_jobs(inputs, str(tmp_path / "ray") + os.sep, output_fmt="jsonl")
    run_ray(ray_jobs, Tagger(context_model, OPTIONS), progress=False, workers=2, part_size=PART)
    assert_same(local_jobs, ray_jobs, split={"news.jsonl", "big.jsonl"})
    starts = [json.loads(Path(p).read_text(encoding="utf-8").splitlines()[0]) for p in part_paths(ray_jobs[1].output)]
    ends = [json.loads(Path(p).read_text(encoding="utf-8").splitlines()[-1]) for p in part_paths(ray_jobs[1].output)]
    assert all(a["doc_id"] != b["doc_id"] for a, b in zip(ends, starts[1:]))  # no document across a cut


def test_a_parts_folder_is_one_input_to_tag_and_evaluate(ray_outputs, tiny_model, tmp_path):
    from nerbatch.evaluation.evaluate import evaluate

    local_jobs, _, ray_jobs, _, _, _ = ray_outputs
    for local_job, ray_job in zip(local_jobs, ray_jobs):
        if not os.path.isdir(ray_job.output) or ray_job.output_format == "parquet":
            continue
        parts, single = ray_job.output, local_job.output
        # evaluate: the same scores, documents and examples (lines numbered across the parts)
        a, b = evaluate([parts]), evaluate([single])
        for result in (a, b):
            for ex in result.get("analysis", {}).get("examples", []):
                ex["path"] = os.path.basename(ex["path"])
            for doc in result.get("analysis", {}).get("documents", []):
                doc["path"] = os.path.basename(doc["path"])
        assert {k: v for k, v in a.items() if k != "files"} == {k: v for k, v in b.items() if k != "files"}
        assert a["sentences"] > 500
        # tag: the parts folder in, one output file out, as tagging the single file
        outs = []
        for name, source in (("a", parts), ("b", single)):
            target = tmp_path / name / f"again.{ray_job.output_format}"
            target.parent.mkdir()
            tag_service([source], str(target), model=tiny_model, tagger_options=OPTIONS)
            outs.append(target.read_bytes())
        assert outs[0] == outs[1] and outs[0]
        # the local engine never replaces a parts folder with a file
        with pytest.raises(InputError, match="is a parts folder"):
            tag_service([single], parts, model=tiny_model, tagger_options=OPTIONS)
        assert is_parts_folder(parts)
        # a folder walk finds the parts folder as one input, not its part files
        walked = plan_jobs([str(Path(parts).parent)], str(tmp_path / "walk") + os.sep)
        assert parts in [j.input for j in walked] and not any("part-0" in j.input for j in walked)
        break
    else:
        pytest.fail("no parts folder to read")


def test_a_report_and_rejects_with_parts_are_those_of_the_local_engine(ray_local, tiny_model, tmp_path):
    """--report (each worker's scores merged in job order), --on-error skip (the rejects of each part
    beside it, concatenated: the local rejects file) and --log-json, on a big input with bad lines."""
    text = ((SAMPLE / "train.conll").read_text(encoding="utf-8") * 5).split("\n\n")  # half of big.conll: five parts
    for k in (5, 90, 170):
        text[k] = text[k].replace("\n", "\nBROKEN LINE\n", 1)
    src = tmp_path / "in"
    src.mkdir()
    (src / "bad.conll").write_text("\n\n".join(text), encoding="utf-8")
    (src / "small.conll").write_text((SAMPLE / "dev.conll").read_text(encoding="utf-8"), encoding="utf-8")
    results = {}
    for engine in ("local", "ray"):
        kw = {"engine": "ray", "workers": 2, "part_size": PART} if engine == "ray" else {}
        results[engine] = tag_service([str(src)], str(tmp_path / engine) + os.sep, model=tiny_model, tagger_options=OPTIONS,
                                      report_json=str(tmp_path / f"{engine}.json"), on_error="skip",
                                      log_json=str(tmp_path / f"{engine}.log"), **kw)
    a, b = results["local"], results["ray"]
    same = json.loads(json.dumps(b.report).replace(str(tmp_path / "ray"), str(tmp_path / "local")))
    assert same == a.report and a.report["sentences"] > 500
    assert a.summary.skipped == b.summary.skipped == 3
    out = tmp_path / "ray" / "bad.conll"
    assert is_parts_folder(str(out))
    assert joined(str(out), "conll") == (tmp_path / "local" / "bad.conll").read_bytes()
    rejects = b"".join(Path(p + ".rejects.jsonl").read_bytes() for p in part_paths(str(out)) if Path(p + ".rejects.jsonl").exists())
    assert rejects == (tmp_path / "local" / "bad.conll.rejects.jsonl").read_bytes()
    logs = {e: [json.loads(x) for x in (tmp_path / f"{e}.log").read_text(encoding="utf-8").splitlines()] for e in results}
    assert [(r["input"], r["sentences"], r["skipped"]) for r in logs["ray"]] == [(r["input"], r["sentences"], r["skipped"]) for r in logs["local"]]
    assert logs["ray"][0]["parts"] > 2


def test_a_killed_run_resumes_from_its_parts_and_checkpoints(ray_local, tiny_model, corpus, tmp_path):
    """SIGKILL the driver mid-run (its workers die with it), then --resume: the parts that were
    complete are left alone, the others are tagged (from their checkpoints), the result is the local output."""
    big = tmp_path / "big.conll"
    big.write_bytes((corpus / "big.conll").read_bytes())  # ten parts, tagged one at a time by one worker
    out = tmp_path / "out.conll"
    args = [sys.executable, "-m", "nerbatch", "tag", str(big), "-o", str(out), "--model", tiny_model, "--device", "cpu",
            "--precision", "fp32", "--engine", "ray", "--address", ray.get_runtime_context().gcs_address,
            "--workers", "1", "--part-size", str(PART), "--checkpoint-every", "40", "-q"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(out.glob("part-*.conll"))) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    manifest = json.loads((out / "parts.json").read_text(encoding="utf-8"))
    assert manifest["complete"] is False and len(manifest["parts"]) > 4
    done = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("part-*.conll")}
    assert 2 <= len(done) < len(manifest["parts"])
    for _ in range(60):  # until the dead driver's workers are gone (their locks with them)
        try:
            result = tag_service([str(big)], str(out), model=tiny_model, tagger_options=OPTIONS, engine="ray", workers=2,
                                 part_size=PART, resume=True, checkpoint_every=40)
            break
        except LockedError:
            time.sleep(1)
    for name, stamp in done.items():
        assert ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns) == stamp, f"{name} was written again"
    assert result.summary.tagged < result.summary.sentences  # the complete parts were not tagged again
    ref = tmp_path / "ref.conll"
    tag_files(plan_jobs([str(big)], str(ref)), Tagger(tiny_model, OPTIONS), progress=False)
    assert joined(str(out), "conll") == ref.read_bytes()


def test_the_ray_engine_writes_no_stdout(tiny_model):
    with pytest.raises(InputError, match="not to stdout"):
        run_ray(plan_jobs([str(SAMPLE / "test.conll")], None), Tagger(tiny_model, OPTIONS))
