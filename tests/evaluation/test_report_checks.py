"""Hardening of the scores (issue #16): reports of resumed runs, wrong columns, IOB1 under --strict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nerbatch.cli import cli

from ..conftest import SAMPLE, build_tiny_model

KEYS = ("overall", "per_type", "accuracy", "tokens", "sentences")


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def numbers(path: Path) -> dict:
    report = json.loads(path.read_text())
    return {key: report[key] for key in KEYS}


def evaluated(tmp_path: Path, output: Path) -> dict:
    ev = tmp_path / f"{output.name}.evaluate.json"
    res = run("evaluate", output, "--json", ev)
    assert res.exit_code == 0, res.output
    return numbers(ev)


def one_error_line(res, *needles: str) -> str:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- #
# item 6: tag --resume --report scores the whole output
# --------------------------------------------------------------------------- #


@pytest.fixture
def gold_corpus(tmp_path) -> Path:
    """A CoNLL gold file of about 180 sentences with -DOCSTART- lines."""
    src = tmp_path / "gold.conll"
    src.write_text((SAMPLE / "test.conll").read_text(encoding="utf-8") * 4, encoding="utf-8")
    return src


def test_report_of_an_interrupted_then_resumed_run_covers_the_whole_output(tiny_model, gold_corpus, tmp_path, monkeypatch):
    from nerbatch.io.conll import ConllWriter

    ref_out, ref_rep = tmp_path / "ref.conll", tmp_path / "ref.json"
    res = run("tag", gold_corpus, "-o", ref_out, "--model", tiny_model, "-q", "--report-json", ref_rep)
    assert res.exit_code == 0, res.output
    reference = numbers(ref_rep)
    assert reference == evaluated(tmp_path, ref_out)

    out, rep, log = tmp_path / "out.conll", tmp_path / "rep.json", tmp_path / "log.jsonl"
    args = ["tag", gold_corpus, "-o", out, "--model", tiny_model, "-q", "--checkpoint-every", "7", "--report-json", rep, "--log-json", log]
    write = ConllWriter.write
    written = {"n": 0}

    def killed_after_100(self, sentence):  # a run stopped (Ctrl-C, SIGTERM) part-way through the file
        if written["n"] == 100:
            raise KeyboardInterrupt
        written["n"] += 1
        return write(self, sentence)

    with monkeypatch.context() as m:
        m.setattr(ConllWriter, "write", killed_after_100)
        res = run(*args)
    assert res.exit_code == 130, res.output
    assert not out.exists() and not rep.exists()

    res = run(*args, "--resume")
    assert res.exit_code == 0, res.output
    assert json.loads(log.read_text().splitlines()[-1])["status"].startswith("resumed after ")
    assert out.read_bytes() == ref_out.read_bytes()
    assert numbers(rep) == reference  # not just the sentences of the resumed part

    # and once more on the complete output: the same report, not one of zeros
    rep.unlink()
    res = run(*args, "--resume")
    assert res.exit_code == 0, res.output
    assert json.loads(log.read_text().splitlines()[-1])["status"] == "up to date"
    assert numbers(rep) == reference


@pytest.mark.parametrize(
    ("name", "extra", "suffix"),
    [
        ("test.conll", [], ".conll"),
        ("test.jsonl", [], ".jsonl"),
        ("test.parquet", [], ".parquet"),
        ("test.conll", ["--output-format", "jsonl"], ".jsonl"),
        ("test.jsonl", ["--output-format", "conll"], ".conll"),
    ],
)
def test_report_of_a_complete_output_under_resume_equals_evaluate(tiny_model, tmp_path, name, extra, suffix):
    out, rep = tmp_path / f"out{suffix}", tmp_path / "rep.json"
    args = ["tag", SAMPLE / name, "-o", out, "--model", tiny_model, "--resume", "--report-json", rep, *extra]
    assert run(*args).exit_code == 0
    first = numbers(rep)
    assert first["tokens"] > 0 and first["overall"]["support"] > 0
    assert first == evaluated(tmp_path, out)
    rep.unlink()
    res = run(*args)
    assert res.exit_code == 0 and "already complete" in res.stderr
    assert numbers(rep) == first


def test_report_of_stdout_output_is_scored_on_the_way(tiny_model, tmp_path):
    rep, ref = tmp_path / "rep.json", tmp_path / "ref.json"
    res = run("tag", SAMPLE / "test.conll", "--model", tiny_model, "-q", "--report-json", rep)
    assert res.exit_code == 0, res.output
    assert run("tag", SAMPLE / "test.conll", "-o", tmp_path / "o.conll", "--model", tiny_model, "-q", "--report-json", ref).exit_code == 0
    assert numbers(rep) == numbers(ref)


def test_resumed_html_output_with_a_report_is_refused(tiny_model, tmp_path):
    out = tmp_path / "o.html"
    res = run("tag", SAMPLE / "test.conll", "-o", out, "--model", tiny_model, "-q", "--resume", "--report", tmp_path / "r.txt")
    one_error_line(res, "o.html", "cannot be read back", "--resume")
    assert not out.exists()


# --------------------------------------------------------------------------- #
# item 9: columns that hold no NER tags, inputs without gold
# --------------------------------------------------------------------------- #


def test_evaluate_refuses_an_untagged_gold_file(tmp_path):
    # word POS chunk NER: the chunk column would be scored as gold against the NER column
    line = one_error_line(run("evaluate", SAMPLE / "test.conll"), "test.conll:3:", "chunk tags", "evaluate --model")
    assert "NP" in line


def test_evaluate_refuses_a_column_that_holds_no_tags(tmp_path):
    src = tmp_path / "pos.conll"
    src.write_text("EU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\n", encoding="utf-8")
    one_error_line(run("evaluate", src), "pos.conll:1:", "column 2 of 3", "'NNP'", "not a NER tag")
    src.write_text("EU B-ORG B-ORG\nrejects O something\n", encoding="utf-8")
    one_error_line(run("evaluate", src), "pos.conll:2:", "predicted column (column 3 of 3)", "'something'")


def test_evaluate_refuses_chunk_predictions_against_ner_gold(tmp_path):
    src = tmp_path / "mixed.conll"
    src.write_text("EU B-ORG B-NP\nrejects O B-VP\n", encoding="utf-8")
    one_error_line(run("evaluate", src), "mixed.conll:1:", "predicted tags are chunk tags")


def test_evaluate_still_scores_chunk_against_chunk(tmp_path):
    src = tmp_path / "chunks.conll"
    src.write_text("He B-NP B-NP\nreckons B-VP B-VP\nthe B-NP B-NP\ndeficit I-NP O\n", encoding="utf-8")
    res = run("evaluate", src)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("processed 4 tokens with 3 phrases; found: 3 phrases; correct: 2.")


@pytest.mark.parametrize(
    ("name", "content", "extra", "needles"),
    [
        ("plain.txt", "Turku is a city\n", [], ["plain.txt:", "no gold tags"]),
        ("words.conll", "Turku\nis\n\nHelsinki\n", [], ["words.conll:1:", "no gold tags"]),
        ("gold.conll", "Turku B-LOC\nis O\n", ["--tag-column", "none"], ["gold.conll:1:", "no gold tags"]),
        ("text.jsonl", '{"text": "Turku is a city"}\n', [], ["text.jsonl:1:", "no gold tags"]),
        ("pos.conll", "Turku NNP\nis VBZ\n", [], ["pos.conll:1:", "'NNP'", "not a NER tag", "--tag-column"]),
        ("chunk.conll", "Turku NNP B-NP\nis VBZ B-VP\n", [], ["chunk.conll:1:", "chunk tags (NP, VP)", "--tag-column"]),
    ],
)
def test_tag_report_refuses_inputs_without_gold_ner_tags(tiny_model, tmp_path, name, content, extra, needles):
    src = tmp_path / name
    src.write_text(content, encoding="utf-8")
    out, rep = tmp_path / "out.conll", tmp_path / "rep.txt"
    res = run("tag", src, "-o", out, "--model", tiny_model, "-q", "--report", rep, *extra)
    one_error_line(res, *needles)
    assert not rep.exists() and not out.exists()


def test_tag_report_on_stdin_without_gold_writes_no_report(tiny_model, tmp_path):
    rep = tmp_path / "rep.txt"
    res = run("tag", "-", "--input-format", "conll", "--model", tiny_model, "-q", "--report", rep, input="Turku\nis\n")
    assert res.exit_code == 2 and "no gold tags" in res.stderr
    assert not rep.exists()


def test_tag_report_with_a_chunking_model_on_chunk_gold(tmp_path):
    model = build_tiny_model(tmp_path / "chunker", labels=["O", "B-NP", "I-NP", "B-VP", "I-VP"])
    src = tmp_path / "chunk.conll"
    src.write_text("Turku NNP B-NP\nis VBZ B-VP\n", encoding="utf-8")
    rep, out = tmp_path / "rep.json", tmp_path / "out.conll"
    res = run("tag", src, "-o", out, "--model", model, "-q", "--report-json", rep)
    assert res.exit_code == 0, res.output
    assert numbers(rep)["overall"]["support"] == 2


def test_tag_report_on_empty_input_says_so(tiny_model, tmp_path):
    src = tmp_path / "empty.conll"
    src.write_text("", encoding="utf-8")
    rep = tmp_path / "rep.txt"
    res = run("tag", src, "-o", tmp_path / "o.conll", "--model", tiny_model, "-q", "--report", rep)
    assert res.exit_code == 0, res.output
    assert "no sentences" in res.stderr


# --------------------------------------------------------------------------- #
# item 10: --strict with IOB1 gold
# --------------------------------------------------------------------------- #


IOB1_FILE = (
    "-DOCSTART- O O\n\n"
    "Peter I-PER B-PER\nBlackburn I-PER I-PER\nvisited O O\nHamburg I-LOC B-LOC\n\n"
    "EU I-ORG B-ORG\nrejects O O\nGerman I-MISC B-MISC\ncall O O\nAnna I-PER B-PER\nBob B-PER B-PER\n"
)


def test_strict_converts_iob1_gold_and_says_so(tmp_path):
    src = tmp_path / "iob1.conll"
    src.write_text(IOB1_FILE, encoding="utf-8")
    js = tmp_path / "s.json"
    res = run("evaluate", "--strict", src, "--json", js)
    assert res.exit_code == 0, res.output
    result = json.loads(js.read_text())
    o = result["overall"]
    assert (o["support"], o["predicted"], o["correct"]) == (6, 6, 6)  # no gold entity lost
    assert "IOB1" in res.output and "converted" in res.output
    assert any("IOB1" in note for note in result["notes"])
    # the conlleval numbers are those of the file as it is (conlleval reads IOB1 itself)
    default = run("evaluate", src)
    assert "processed 11 tokens with 6 phrases; found: 6 phrases; correct: 6." in default.output
    assert "note:" not in default.output


def test_strict_on_iob2_is_unchanged(tmp_path):
    src = tmp_path / "iob2.conll"
    src.write_text("Peter B-PER O\nBlackburn I-PER I-PER\nvisited O O\n", encoding="utf-8")
    js = tmp_path / "s.json"
    res = run("evaluate", "--strict", src, "--json", js)
    assert res.exit_code == 0, res.output
    result = json.loads(js.read_text())
    o = result["overall"]
    # the ill-formed prediction (I- after O) is still no entity in strict IOB2 mode
    assert (o["support"], o["predicted"], o["correct"]) == (1, 0, 0)
    assert "notes" not in result and "note:" not in res.output


def test_strict_evaluate_model_on_iob1_gold_keeps_every_gold_entity(tiny_model, tmp_path):
    src = SAMPLE / "train_iob1.conll"
    strict, default = tmp_path / "s.json", tmp_path / "d.json"
    assert run("evaluate", "--model", tiny_model, "--device", "cpu", "--strict", src, "--json", strict).exit_code == 0
    assert run("evaluate", "--model", tiny_model, "--device", "cpu", src, "--json", default).exit_code == 0
    s, d = json.loads(strict.read_text()), json.loads(default.read_text())
    assert s["overall"]["support"] == d["overall"]["support"] > 0
    assert {t: r["support"] for t, r in s["per_type"].items()} == {t: r["support"] for t, r in d["per_type"].items()}
    assert s["notes"]
