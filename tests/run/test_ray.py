"""`--engine ray` writes the same outputs as the local engine, also with document context and a dying actor
(the parts of big inputs: tests/run/test_ray_io.py)."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'nerbatch[ray]')")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'nerbatch[ray]')")

import pyarrow.parquet as pq  # noqa: E402

from nerbatch.core.record import Sentence  # noqa: E402
from nerbatch.errors import InputError, ModelError  # noqa: E402
from nerbatch.io import ReadOptions  # noqa: E402
from nerbatch.run import plan_jobs  # noqa: E402
from nerbatch.run.local import RunOptions, plan  # noqa: E402
from nerbatch.run.local import run_local as local_engine  # noqa: E402
from nerbatch.run.ray import TagWorker, context_need  # noqa: E402
from nerbatch.run.ray import run_ray as ray_engine  # noqa: E402
from nerbatch.tagging.align import split_blocks  # noqa: E402
from nerbatch.tagging.tagger import Tagger, TaggerOptions  # noqa: E402

from ..conftest import SAMPLE, stopping_tagger  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own, on every run

INPUTS = ["test.conll", "test.jsonl", "test.parquet", "sentences.txt"]


CRASH_ENV = "NERBATCH_RAY_TEST_CRASH"


class CrashingWorker(TagWorker):
    """A tagging worker that dies once: the path in $NERBATCH_RAY_TEST_CRASH holds a number N; the
    first worker that has run N units while the file exists renames it away and exits, so Ray
    must restart it and retry the unit."""

    def run(self, job, scored):
        path = os.environ.get(CRASH_ENV)
        if path:
            try:
                with open(path, encoding="utf-8") as fh:
                    after = int(fh.read().strip() or 0)
            except (OSError, ValueError):
                after = None
            if after is not None and self.done >= after:
                try:
                    os.rename(path, path + ".fired")  # only one worker wins
                    os._exit(1)
                except OSError:
                    pass
        return super().run(job, scored)


def tag_files(jobs, tagger, *, options=ReadOptions(), run=RunOptions(), **kw):
    """The local engine over the plan of ``jobs`` (what ``nerbatch tag`` runs)."""
    return local_engine(plan(jobs, tagger, options, run), tagger, options=options, run=run, **kw)


def tag_files_ray(jobs, model, tagger_options, *, options=ReadOptions(), run=RunOptions(), **kw):
    """The Ray engine with a Tagger for ``model`` (and the crash-hook worker of these tests)."""
    tagger = Tagger(model, tagger_options)
    return ray_engine(jobs, tagger, options=options, run=run, worker=CrashingWorker, **kw)


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """A local Ray with 2 CPUs for the whole module; its workers see the crash-hook variable."""
    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need not import tests/
    crash = tmp_path_factory.mktemp("ray-crash") / "crash-after"
    old = os.environ.get(CRASH_ENV)
    os.environ[CRASH_ENV] = str(crash)  # inherited by the workers; armed only when the file exists
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        yield crash
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop(CRASH_ENV, None)
        else:
            os.environ[CRASH_ENV] = old


def _inputs(names=INPUTS) -> list[str]:
    return [str(SAMPLE / n) for n in names]


def run_local(out: Path, model: str, options: TaggerOptions, names=INPUTS):
    jobs = plan_jobs(_inputs(names), str(out) + os.sep)
    return jobs, tag_files(jobs, Tagger(model, options), progress=False)


def run_ray(out: Path, model: str, options: TaggerOptions, names=INPUTS, **kw):
    jobs = plan_jobs(_inputs(names), str(out) + os.sep)
    return jobs, tag_files_ray(jobs, model, options, progress=False, workers=2, **kw)


def assert_same_outputs(a_jobs, b_jobs) -> None:
    for a, b in zip(a_jobs, b_jobs, strict=True):
        fmt = a.output_format
        if fmt == "parquet":
            ta, tb = pq.read_table(a.output), pq.read_table(b.output)
            assert ta.schema == tb.schema
            assert ta.num_rows == tb.num_rows > 0
            assert ta.to_pylist() == tb.to_pylist(), a.output  # row for row
        else:
            da, db = Path(a.output).read_bytes(), Path(b.output).read_bytes()
            assert da and da == db, a.output  # byte for byte
            if fmt == "jsonl":
                assert [json.loads(x) for x in da.splitlines()] == [json.loads(x) for x in db.splitlines()]


def assert_same_summary(a, b) -> None:
    assert (a.files, a.sentences, a.tokens, a.entities) == (b.files, b.sentences, b.tokens, b.entities)
    assert [(f["input"], f["sentences"], f["tokens"], f["entities"]) for f in a.per_file] == [
        (f["input"], f["sentences"], f["tokens"], f["entities"]) for f in b.per_file
    ]


def test_same_outputs_as_local_engine(ray_local, tiny_model, tmp_path):
    options = TaggerOptions(device="cpu")
    a_jobs, a = run_local(tmp_path / "local", tiny_model, options)
    b_jobs, b = run_ray(tmp_path / "ray", tiny_model, options)
    assert [j.output_format for j in b_jobs] == ["conll", "jsonl", "parquet", "conll"]
    assert_same_outputs(a_jobs, b_jobs)
    assert_same_summary(a, b)
    assert b.sentences > 100 and b.seconds > 0


def test_a_label_map_travels_to_the_actors(ray_local, tiny_model, tmp_path):
    """Issue #26: the actors apply --label-map as the local engine does (the map goes with TaggerOptions)."""
    from nerbatch.core.labelmap import load_label_map

    lm = tmp_path / "m.tsv"
    lm.write_text("PER\tPERSON\nLOC\tORG\nMISC\tO\n", encoding="utf-8")
    options = TaggerOptions(device="cpu", label_map=load_label_map(str(lm)))
    a_jobs, _ = run_local(tmp_path / "local", tiny_model, options, names=["test.conll"])
    b_jobs, _ = run_ray(tmp_path / "ray", tiny_model, options, names=["test.conll"])
    assert_same_outputs(a_jobs, b_jobs)
    text = Path(b_jobs[0].output).read_text(encoding="utf-8")
    assert "-PERSON\n" in text and "-MISC\n" not in text and "-LOC\n" not in text


def test_same_outputs_with_document_context_across_many_blocks(ray_local, context_model, tmp_path):
    """Blocks of 8 sentences: most sentences take context from a neighbour in another block."""
    options = TaggerOptions(device="cpu", block=8)
    a_jobs, a = run_local(tmp_path / "local", context_model, options)
    b_jobs, b = run_ray(tmp_path / "ray", context_model, options)
    assert_same_outputs(a_jobs, b_jobs)
    assert_same_summary(a, b)
    # and the context is really used: without it the scores differ
    c_jobs, _ = run_local(tmp_path / "plain", context_model, TaggerOptions(device="cpu", block=8, context=False))
    assert pq.read_table(c_jobs[2].output).column("pred_scores") != pq.read_table(b_jobs[2].output).column("pred_scores")


def test_a_dying_actor_is_replaced_and_nothing_is_lost_or_repeated(ray_local, context_model, tmp_path):
    ray_local.write_text("1", encoding="utf-8")  # the first actor to finish a block dies at its next one
    options = TaggerOptions(device="cpu", block=8)
    b_jobs, b = run_ray(tmp_path / "ray", context_model, options)
    assert not ray_local.exists() and Path(str(ray_local) + ".fired").exists(), "no actor was killed"
    a_jobs, a = run_local(tmp_path / "local", context_model, options)
    assert_same_outputs(a_jobs, b_jobs)
    assert_same_summary(a, b)


def test_bad_input_fails_like_the_local_engine(ray_local, tiny_model, tmp_path):
    missing = str(tmp_path / "missing.conll")
    options = TaggerOptions(device="cpu")
    errors = []
    for name, engine in (("local", lambda jobs: tag_files(jobs, Tagger(tiny_model, options), progress=False)),
                         ("ray", lambda jobs: tag_files_ray(jobs, tiny_model, options, progress=False, workers=1))):
        jobs = plan_jobs([str(SAMPLE / "test.conll"), missing], str(tmp_path / name) + os.sep)
        with pytest.raises(InputError) as info:
            engine(jobs)
        errors.append(str(info.value))
        assert Path(jobs[0].output).exists() and not Path(jobs[1].output).exists()
    assert errors[0] == errors[1] and missing in errors[0]
    with pytest.raises(InputError, match="stdin"):
        tag_files_ray(plan_jobs(["-"], None), tiny_model, options)


def test_a_model_that_cannot_be_used_fails_with_the_local_message(ray_local, tiny_encoder, tmp_path):
    options = TaggerOptions(device="cpu")
    with pytest.raises(ModelError) as local:
        Tagger(tiny_encoder, options)
    jobs = plan_jobs([str(SAMPLE / "test.conll")], str(tmp_path / "out.conll"))
    with pytest.raises(ModelError) as remote:
        tag_files_ray(jobs, tiny_encoder, options, progress=False, workers=1)
    assert str(remote.value) == str(local.value)
    assert not Path(jobs[0].output).exists()


def test_without_ray_the_error_says_what_to_install(monkeypatch, tiny_model, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    jobs = plan_jobs([str(SAMPLE / "test.conll")], str(tmp_path / "out.conll"))
    with pytest.raises(InputError, match=r"nerbatch\[ray\]"):
        tag_files_ray(jobs, tiny_model, TaggerOptions(device="cpu"))


def _stream(seed: int) -> list[Sentence]:
    """Documents that interleave, sentences without a document or without tokens, long sentences."""
    rng = random.Random(seed)
    words = ["Turku", "is", "the", "oldest", "city", "in", "Finland", ".", "Aino", "\u200b", "xylophone", "-"]
    out = []
    for i in range(150):
        r = rng.random()
        doc = None if r < 0.1 else str(rng.randrange(3) if r < 0.3 else i // 15)
        n = 0 if rng.random() < 0.08 else rng.randrange(1, 40 if rng.random() < 0.9 else 90)
        out.append(Sentence(tokens=[rng.choice(words) for _ in range(n)], doc_id=doc, line=i + 1))
    return out


@pytest.mark.parametrize("tagger_block,size", [(4, 4), (4, 12), (2048, 2048)])
def test_blocks_with_their_neighbours_tag_like_the_whole_stream(context_model, tagger_block, size):
    """The worker-side pieces alone (no Ray): split_blocks + tag_block == Tagger.tag, scores included."""
    options = TaggerOptions(device="cpu", block=tagger_block)
    tagger = Tagger(context_model, options)
    need = context_need(tagger)
    assert need == 64
    whole = list(tagger.tag_sentences(_stream(7)))
    for carried in (need, tagger.max_length - len(tagger.specials)):  # the bound, and exactly the budget
        pieces = []
        for left, core, right, left_cut, right_cut in split_blocks(_stream(7), size, carried):
            pieces.extend(tagger.tag_block(core, left, right, left_cut=left_cut, right_cut=right_cut, carried=carried))
        assert [s.pred for s in pieces] == [s.pred for s in whole]
        assert [s.scores for s in pieces] == [s.scores for s in whole]
    with pytest.raises(Exception, match="document context"):
        left, core, right, lc, rc = next(iter(split_blocks(_stream(7), size, 8)))
        tagger.tag_block(core, left, right, left_cut=lc, right_cut=rc, carried=8)


def test_on_error_skip_rejects_and_resume_like_the_local_engine(ray_local, tiny_model, tmp_path):
    """The driver runs the local engine's job loop, so reject files and --resume behave the same."""
    from nerbatch.io import ReadOptions
    from nerbatch.run.local import RunOptions

    parts = (SAMPLE / "dev.conll").read_text(encoding="utf-8").split("\n\n")
    parts[3] = parts[3].replace("\n", "\nBROKEN LINE\n", 1)
    (tmp_path / "broken.conll").write_text("\n\n".join(parts), encoding="utf-8")
    lines = (SAMPLE / "test.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "broken.jsonl").write_text("\n".join(lines[:5] + ["{not json"] + lines[5:]) + "\n", encoding="utf-8")
    inputs = [str(tmp_path / "broken.conll"), str(tmp_path / "missing.conll"), str(tmp_path / "broken.jsonl")]
    read_options = ReadOptions(on_error="skip")
    options = TaggerOptions(device="cpu", block=16)
    jobs = {}
    summaries = {}
    for name in ("local", "ray"):
        jobs[name] = plan_jobs(inputs, str(tmp_path / name) + os.sep)
        if name == "local":
            summaries[name] = tag_files(jobs[name], Tagger(tiny_model, options), options=read_options, progress=False, run=RunOptions())
        else:
            summaries[name] = tag_files_ray(jobs[name], tiny_model, options, options=read_options, progress=False,
                                            workers=2, run=RunOptions())
    a, b = summaries["local"], summaries["ray"]
    assert a.skipped == b.skipped == 3  # one line, one file, one JSON record
    assert_same_summary(a, b)
    done = (0, 2)
    assert_same_outputs([jobs["local"][i] for i in done], [jobs["ray"][i] for i in done])
    for i in done:
        rejects = jobs["local"][i].output + ".rejects.jsonl"
        assert Path(rejects).read_bytes() == Path(jobs["ray"][i].output + ".rejects.jsonl").read_bytes()
    # a second run with --resume: the complete outputs are left alone, as by the local engine
    before = Path(jobs["ray"][0].output).stat().st_mtime_ns
    a2 = tag_files(jobs["local"], Tagger(tiny_model, options), options=read_options, progress=False, run=RunOptions(resume=True))
    b2 = tag_files_ray(jobs["ray"], tiny_model, options, options=read_options, progress=False, workers=2,
                       run=RunOptions(resume=True))
    assert b2.up_to_date == 2
    assert (a2.files, a2.up_to_date, a2.skipped, a2.sentences) == (b2.files, b2.up_to_date, b2.skipped, b2.sentences)
    assert Path(jobs["ray"][0].output).stat().st_mtime_ns == before


def test_only_the_remaining_work_is_sent_to_ray(ray_local, tiny_model, tmp_path):
    """Half the outputs complete, one interrupted after a checkpoint: Ray tags only what is left."""
    from nerbatch.errors import Interrupted
    from nerbatch.io import read
    from nerbatch.run.local import RunOptions

    src = tmp_path / "in"
    src.mkdir()
    text = (SAMPLE / "test.conll").read_text(encoding="utf-8")
    for name in "abcd":
        (src / f"{name}.conll").write_text(text, encoding="utf-8")
    inputs = [str(src / f"{n}.conll") for n in "abcd"]
    records = {p: len(list(read(p))) for p in inputs}
    options = TaggerOptions(device="cpu", block=16)
    out = tmp_path / "out"
    run = RunOptions(resume=True, checkpoint_every=20)
    jobs = plan_jobs(inputs, str(out) + os.sep)
    tag_files(jobs[:2], Tagger(tiny_model, options), progress=False, run=run)  # a, b complete
    with pytest.raises(Interrupted) as info:  # c: interrupted after 50, checkpointed at 40
        tag_files(jobs[2:3], stopping_tagger(tiny_model, options, 50), progress=False, run=run)
    assert info.value.kept and info.value.kept[1] == 40
    summary = tag_files_ray(jobs, tiny_model, options, progress=False, workers=2, run=run)
    assert summary.up_to_date == 2
    assert summary.tagged == records[inputs[2]] - 40 + records[inputs[3]]
    ref = tmp_path / "ref"
    ref_jobs = plan_jobs(inputs, str(ref) + os.sep)
    tag_files(ref_jobs, Tagger(tiny_model, options), progress=False)
    assert_same_outputs(ref_jobs, jobs)


def test_calibration_min_score_and_review_as_the_local_engine(ray_local, tiny_model, tmp_path):
    """A model with a calibration map: the Ray actors apply it as the local tagger does, and
    --min-score/--review (on the driver) give the same outputs and the same review file."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    mapping = {"raw": [0.0, 0.1, 0.2, 1.0], "calibrated": [0.0, 0.3, 0.8, 0.95]}
    (folder / "nerbatch.json").write_text(json.dumps({"calibration": mapping}), encoding="utf-8")
    options = TaggerOptions(device="cpu")
    names = ["test.conll", "test.jsonl"]
    results = []
    for engine in ("local", "ray"):
        run = RunOptions(min_score=0.5, review=str(tmp_path / f"{engine}.review.jsonl"), scores=True)
        jobs = plan_jobs(_inputs(names), str(tmp_path / engine) + os.sep)
        if engine == "local":
            summary = tag_files(jobs, Tagger(str(folder), options), progress=False, run=run)
        else:
            summary = tag_files_ray(jobs, str(folder), options, progress=False, workers=2, run=run)
        results.append((jobs, summary, Path(run.review).read_bytes()))
    (a_jobs, a, a_review), (b_jobs, b, b_review) = results
    assert_same_outputs(a_jobs, b_jobs)
    assert_same_summary(a, b)
    assert a.dropped == b.dropped > 0 and a_review == b_review and a_review
    # the scores the actors sent are the map of the uncalibrated ones
    from nerbatch.core.calibration import Calibration, entity_scores
    from nerbatch.io import read

    cal = Calibration.from_json(mapping)
    raw = Tagger(str(folder), TaggerOptions(device="cpu", raw_scores=True)).tag_sentences(read(_inputs(["test.jsonl"])[0]))
    got = [json.loads(line)["entities"] for line in Path(b_jobs[1].output).read_text(encoding="utf-8").splitlines()]
    for sent, entities in zip(raw, got, strict=True):
        want = [(lab, a, b, round(cal(s), 4)) for lab, a, b, s in entity_scores(sent.pred, sent.scores)]
        assert [(e["label"], e["start"], e["end"], e["score"]) for e in entities] == [w for w in want if w[3] >= 0.5]
