"""Calibrated entity scores: the map in nerbatch.json applied after decoding, the same way by every
back-end; `calibrate` on an existing folder; `tag --min-score/--review/--scores`; the notice for
models without a map."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.core.calibration import Calibration, entity_scores
from nerbatch.core.schemes import allowed_transitions, conll_chunks, is_well_formed
from nerbatch.io import read
from nerbatch.tagging.tagger import Tagger, TaggerOptions

from ..conftest import LABELS, SAMPLE

# the tiny random model's entity scores lie around 0.1-0.2: a map that moves them a lot
MAP = {"raw": [0.0, 0.1, 0.2, 1.0], "calibrated": [0.0, 0.3, 0.8, 0.95]}
NOTICE = "has no calibration map"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def calibrated_model(tiny_model, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("calibrated") / "model"
    shutil.copytree(tiny_model, folder)
    (folder / "nerbatch.json").write_text(json.dumps({"calibration": MAP}), encoding="utf-8")
    return str(folder)


def sentences():
    return list(read(str(SAMPLE / "test.conll")))


def assert_calibrated(raw, calibrated, cal: Calibration) -> None:
    """Same tags; each entity's words all carry the map of the entity's uncalibrated score; other
    words keep their scores."""
    entities = 0
    for r, c in zip(raw, calibrated, strict=True):
        assert r.pred == c.pred
        inside = set()
        for _label, a, b, score in entity_scores(r.pred, r.scores):
            assert c.scores[a:b] == [round(cal(score), 4)] * (b - a)
            inside.update(range(a, b))
            entities += 1
        assert [s for i, s in enumerate(c.scores) if i not in inside] == [s for i, s in enumerate(r.scores) if i not in inside]
    assert entities > 50


BACKENDS = {
    "eager": ({"compile": False, "precision": "fp32"}, "eager"),
    "compiled": ({"compile": True, "precision": "fp32"}, "compiled"),
    "int8": ({"precision": "int8"}, "int8"),
}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_backend_applies_the_stored_map(backend, calibrated_model, tmp_path, monkeypatch):
    if backend == "compiled":
        from nerbatch.tagging.compiled import compiler_available

        if not compiler_available():
            pytest.skip("no C++ compiler: the compiled path cannot build")
        monkeypatch.delenv("NERBATCH_COMPILE", raising=False)
    if backend == "int8":
        pytest.importorskip("onnxruntime", reason="int8 needs the 'int8' extra (onnxruntime)")
    monkeypatch.setenv("NERBATCH_CACHE_DIR", str(tmp_path / "cache"))  # one build, shared by both taggers
    options, kind = BACKENDS[backend]
    tagger = Tagger(calibrated_model, TaggerOptions(device="cpu", **options))
    calibrated = list(tagger.tag_sentences(sentences()))
    assert tagger.backend.kind == kind
    raw = list(Tagger(calibrated_model, TaggerOptions(device="cpu", raw_scores=True, **options)).tag_sentences(sentences()))
    assert_calibrated(raw, calibrated, Calibration.from_json(MAP))


def test_a_model_without_a_map_keeps_the_mean_of_word_probabilities(tiny_model, tmp_path):
    """No nerbatch.json: JSONL entity scores are the mean of the words' probabilities, as before."""
    out = tmp_path / "out.jsonl"
    res = run("tag", str(SAMPLE / "test.jsonl"), "-o", str(out), "--model", tiny_model, "-q")
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    tagged = list(Tagger(tiny_model, TaggerOptions(device="cpu")).tag_sentences(read(str(SAMPLE / "test.jsonl"))))
    seen = 0
    for row, sent in zip(rows, tagged, strict=True):
        assert row["pred_tags"] == sent.pred
        for ent in row["entities"]:
            words = sent.scores[ent["start"] : ent["end"]]
            assert ent["score"] == round(sum(words) / len(words), 4)
            seen += 1
    assert seen > 50


def test_the_notice_comes_once_for_a_model_without_a_map_and_never_for_a_calibrated_one(
        tiny_model, calibrated_model, tmp_path):
    inputs = [str(SAMPLE / "test.conll"), str(SAMPLE / "test.jsonl")]
    res = run("tag", *inputs, "-o", str(tmp_path / "a") + "/", "--model", tiny_model)
    assert res.exit_code == 0, res.output
    assert res.stderr.count(NOTICE) == 1
    assert [line for line in res.stderr.splitlines() if NOTICE in line][0].startswith("nerbatch: ")
    res = run("tag", *inputs, "-o", str(tmp_path / "b") + "/", "--model", tiny_model, "-q")
    assert res.exit_code == 0 and NOTICE not in res.stderr
    res = run("tag", *inputs, "-o", str(tmp_path / "c") + "/", "--model", calibrated_model)
    assert res.exit_code == 0 and NOTICE not in res.stderr


def test_outputs_carry_the_calibrated_score(calibrated_model, tmp_path):
    """JSONL entities, Parquet pred_scores, the HTML marks and CoNLL --scores agree on each entity's score."""
    base = ["--model", calibrated_model, "-q"]
    jsonl, parquet, html, conll = (tmp_path / f"out.{x}" for x in ("jsonl", "parquet", "html", "conll"))
    for out in (jsonl, parquet, html):
        assert run("tag", str(SAMPLE / "test.jsonl"), "-o", str(out), *base).exit_code == 0
    assert run("tag", str(SAMPLE / "test.jsonl"), "-o", str(conll), "--scores", *base).exit_code == 0
    rows = [json.loads(x) for x in jsonl.read_text(encoding="utf-8").splitlines()]
    want = [[(e["label"], e["start"], e["end"], e["score"]) for e in r["entities"]] for r in rows]
    assert {s for ents in want for *_, s in ents} <= {round(x, 4) for x in _mapped_range()}
    import pyarrow.parquet as pq

    table = pq.read_table(parquet).to_pylist()
    assert [entity_scores(r["pred_tags"], [round(s, 4) for s in r["pred_scores"]]) for r in table] == want
    conll_rows = [s for s in read(str(conll), "conll") if s.tokens]  # word gold? pred score: read the columns
    lines = [ln.split() for ln in conll.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("-DOCSTART-")]
    tags, scores = [ln[-2] for ln in lines], [float(ln[-1]) for ln in lines]
    pos, got = 0, []
    for sent in conll_rows:
        n = len(sent.tokens)
        got.append(entity_scores(tags[pos : pos + n], scores[pos : pos + n]))
        pos += n
    assert got == want
    page = html.read_text(encoding="utf-8")
    assert page.count(' title="score ') == sum(map(len, want)) > 0


def _mapped_range():
    cal = Calibration.from_json(MAP)
    return [cal(k / 10_000) for k in range(10_001)]


def test_conll_scores_column_keeps_the_default_output_unchanged(tiny_model, tmp_path):
    plain, scored = tmp_path / "plain.conll", tmp_path / "scored.conll"
    assert run("tag", str(SAMPLE / "test.conll"), "-o", str(plain), "--model", tiny_model, "-q").exit_code == 0
    assert run("tag", str(SAMPLE / "test.conll"), "-o", str(scored), "--model", tiny_model, "-q", "--scores").exit_code == 0
    for a, b in zip(plain.read_text().splitlines(), scored.read_text().splitlines(), strict=True):
        if not a:
            assert b == ""
            continue
        head, score = b.rsplit(" ", 1)
        assert head == a and 0 <= float(score) <= 1 and len(score.split(".")[1]) == 4


def test_min_score_drops_entities_keeps_iob2_and_the_review_file_trains(calibrated_model, tiny_encoder, tmp_path):
    """--min-score 0.5: entities scored below become O; the output is well-formed IOB2; --review
    lists each sentence with a dropped or borderline entity, with all its predicted entities, in
    the span format `train` reads back as these very tags."""
    src = str(SAMPLE / "test.jsonl")
    full, cut, review = tmp_path / "full.jsonl", tmp_path / "cut.jsonl", tmp_path / "review.jsonl"
    assert run("tag", src, "-o", str(full), "--model", calibrated_model, "-q").exit_code == 0
    res = run("tag", src, "-o", str(cut), "--model", calibrated_model, "--min-score", "0.5", "--review", str(review))
    assert res.exit_code == 0, res.output
    before = [json.loads(x) for x in full.read_text(encoding="utf-8").splitlines()]
    after = [json.loads(x) for x in cut.read_text(encoding="utf-8").splitlines()]
    allowed, start, end = allowed_transitions(LABELS)
    dropped = 0
    for b, a in zip(before, after, strict=True):
        kept = [e for e in b["entities"] if e["score"] >= 0.5]
        assert a["entities"] == kept
        assert is_well_formed([LABELS.index(t) for t in a["pred_tags"]], allowed, start, end)
        dropped += len(b["entities"]) - len(kept)
    assert dropped > 0 and any(a["entities"] for a in after)
    assert f"{dropped:,} entities below --min-score dropped" in res.stderr
    rows = [json.loads(x) for x in review.read_text(encoding="utf-8").splitlines()]
    flagged = [b for b in before if any(e["score"] < 0.6 for e in b["entities"])]
    assert len(rows) == len(flagged) > 0
    for row, b in zip(rows, flagged, strict=True):
        assert row["text"] == " ".join(b["tokens"]) and row["file"] == src
        assert [(e["label"], e["text"], e["score"]) for e in row["entities"]] == [
            (e["label"], e["text"], e["score"]) for e in b["entities"]]
        assert [e["status"] for e in row["entities"]] == [
            "dropped" if e["score"] < 0.5 else "borderline" if e["score"] < 0.6 else "kept" for e in b["entities"]]
    # read as training data: the predicted tags (before the threshold) come back as gold
    gold = [s.tags for s in read(str(review))]
    assert gold == [b["pred_tags"] for b in flagged]
    # and `train` takes it; with --dev it fits the entity-score map after selection (nerbatch.json)
    model = tmp_path / "retrained"
    res = run("train", "--train", str(review), "--dev", str(review), "-o", str(model), "--base-model", tiny_encoder,
              "--epochs", "1", "--no-precision-check")
    assert res.exit_code == 0, res.output
    labels = json.loads((model / "config.json").read_text())["id2label"].values()
    assert {t[2:] for t in labels if t != "O"} == {e["label"] for r in rows for e in r["entities"]}
    assert "entity scores calibrated on" in res.stderr
    calibration = json.loads((model / "nerbatch.json").read_text())["calibration"]
    assert calibration["method"] == "isotonic" and calibration["dev"] == str(review) and calibration["entities"] > 0
    Calibration.from_json(calibration)
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["calibration"] == {k: v for k, v in calibration.items() if k not in ("raw", "calibrated")}
    assert "entity scores: calibrated on" in (model / "README.md").read_text()


@pytest.mark.parametrize("args, expect", [
    (["--min-score", "nan"], "nan"),
    (["--min-score", "-0.1"], "-0.1"),
    (["--min-score", "1.5"], "1.5"),
    (["--review", "r.jsonl"], "--review needs --min-score"),
    (["--min-score", "0.5", "--review", "-"], "--review needs a file name"),
])
def test_bad_min_score_or_review_exit_2(tiny_model, tmp_path, args, expect):
    res = run("tag", str(SAMPLE / "test.conll"), "-o", str(tmp_path / "out.conll"), "--model", tiny_model, *args)
    assert res.exit_code == 2 and expect in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out.conll").exists()


def test_calibrate_an_existing_folder(tiny_model, tmp_path):
    """`nerbatch calibrate` fits the map on the dev set and records it in nerbatch.json, every other
    member kept; tagging then gives each entity the map of its uncalibrated score."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    (folder / "nerbatch.json").write_text(json.dumps({"context": False, "note": "kept"}), encoding="utf-8")
    dev = str(SAMPLE / "dev.conll")
    res = run("calibrate", "--model", str(folder), "--dev", dev, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "entity scores calibrated on" in res.stderr
    saved = json.loads((folder / "nerbatch.json").read_text(encoding="utf-8"))
    assert saved["context"] is False and saved["note"] == "kept"
    record = saved["calibration"]
    assert record["method"] == "isotonic" and record["dev"] == dev and record["entities"] > 0
    cal = Calibration.from_json(record)
    # the fitted map gives the dev entities their fraction correct (in-sample: isotonic is exact on its steps)
    raw = list(Tagger(str(folder), TaggerOptions(device="cpu", raw_scores=True)).tag_sentences(read(dev)))
    pairs = [(s, (lab, a, b) in set(conll_chunks(r.tags)))
             for r in raw for lab, a, b, s in entity_scores(r.pred, r.scores)]
    assert len(pairs) == record["entities"]
    assert sum(cal(s) for s, _ in pairs) == pytest.approx(sum(c for _, c in pairs), abs=0.01 * len(pairs))
    calibrated = list(Tagger(str(folder), TaggerOptions(device="cpu")).tag_sentences(read(dev)))
    assert_calibrated(raw, calibrated, cal)
    # a second run replaces the map; a hub id or a file that is not a folder is refused
    assert run("calibrate", "--model", str(folder), "--dev", dev, "-q").exit_code == 0
    res = run("calibrate", "--model", str(tmp_path / "nowhere"), "--dev", dev)
    assert res.exit_code == 2 and "not a model folder" in res.stderr


def test_a_damaged_map_is_a_clear_error_and_calibrate_repairs_it(tiny_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    (folder / "nerbatch.json").write_text(json.dumps({"calibration": {"raw": [0.5, 0.1], "calibrated": [0, 1]}}))
    res = run("tag", str(SAMPLE / "test.conll"), "-o", str(tmp_path / "out.conll"), "--model", str(folder))
    assert res.exit_code == 2 and "calibration is not a valid map" in res.stderr and "nerbatch calibrate" in res.stderr
    assert run("calibrate", "--model", str(folder), "--dev", str(SAMPLE / "dev.conll"), "-q").exit_code == 0
    assert run("tag", str(SAMPLE / "test.conll"), "-o", str(tmp_path / "out.conll"), "--model", str(folder), "-q").exit_code == 0


def test_review_rows_of_raw_text_are_the_sentence_with_its_offsets(calibrated_model, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "Turku is old. Aino Virtanen lives in Finland now."}) + "\n", encoding="utf-8")
    review = tmp_path / "review.jsonl"
    res = run("tag", str(src), "-o", str(tmp_path / "out.jsonl"), "--model", calibrated_model, "-q",
              "--min-score", "1", "--review", str(review))
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in review.read_text(encoding="utf-8").splitlines()]
    assert rows and {r["text"] for r in rows} <= {"Turku is old.", "Aino Virtanen lives in Finland now."}
    for row in rows:
        assert row["entities"] and row["line"] == 1
        for e in row["entities"]:
            assert row["text"][e["char_start"] : e["char_end"]] == e["text"] and e["status"] == "dropped"
    out = json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))
    assert out["entities"] == [] and set(out["pred_tags"]) == {"O"}


def test_report_reads_back_a_conll_output_with_scores(tiny_model, tmp_path):
    """`tag --report` scores a CoNLL output by reading it back: the score column is skipped."""
    reports = []
    for name, extra in (("plain", []), ("scored", ["--scores"])):
        report = tmp_path / f"{name}.json"
        res = run("tag", str(SAMPLE / "test.conll"), "-o", str(tmp_path / f"{name}.conll"), "--model", tiny_model,
                  "-q", "--report-json", str(report), *extra)
        assert res.exit_code == 0, res.output
        reports.append(json.loads(report.read_text(encoding="utf-8"))["overall"])
    assert reports[0] == reports[1]


def test_another_min_score_makes_a_resumed_output_stale(calibrated_model, tmp_path):
    out = tmp_path / "out.jsonl"
    args = ["tag", str(SAMPLE / "test.jsonl"), "-o", str(out), "--model", calibrated_model, "--resume"]
    assert run(*args, "--min-score", "0.5").exit_code == 0
    res = run(*args, "--min-score", "0.5")
    assert res.exit_code == 0 and "1 output(s) already complete" in res.stderr
    before = out.read_text(encoding="utf-8")
    res = run(*args, "--min-score", "0")
    assert res.exit_code == 0 and "already complete" not in res.stderr

    def count(text):
        return sum(len(json.loads(line)["entities"]) for line in text.splitlines())

    assert count(out.read_text(encoding="utf-8")) > count(before)
