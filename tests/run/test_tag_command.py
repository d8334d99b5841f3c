"""End to end `nerbatch tag` with a tiny random model: every token gets one tag, formats round-trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerbatch.cli import cli
from nerbatch.core.record import Sentence
from nerbatch.io import read

from ..conftest import SAMPLE

LABELS = {"O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"}


def run(*args: str, input: str | None = None):
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result


def test_conll_output_mirrors_input_line_for_line(tiny_model, tmp_path):
    src = SAMPLE / "test.conll"
    out = tmp_path / "out.conll"
    res = run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q")
    assert res.exit_code == 0, res.output
    a = src.read_text(encoding="utf-8").splitlines()
    b = out.read_text(encoding="utf-8").splitlines()
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if not x.strip():
            assert y == ""
        elif x.startswith("-DOCSTART-"):
            assert y == x.rstrip() + " O"  # every non-blank line gets the column (conlleval needs it)
        else:
            head, tag = y.rsplit(" ", 1)
            assert head == x.rstrip() and tag in LABELS


def test_jsonl_round_trip_keeps_passthrough_keys(tiny_model, tmp_path):
    out = tmp_path / "out.jsonl"
    res = run("tag", str(SAMPLE / "test.jsonl"), "-o", str(out), "--model", tiny_model, "-q")
    assert res.exit_code == 0, res.output
    src = [json.loads(x) for x in (SAMPLE / "test.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    got = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(src) == len(got)
    for a, b in zip(src, got):
        assert {k: b[k] for k in a} == a
        assert len(b["pred_tags"]) == len(a["tokens"])
        for ent in b["entities"]:
            assert ent["text"] == " ".join(a["tokens"][ent["start"] : ent["end"]])


def test_jsonl_text_input_gets_character_offsets(tiny_model, tmp_path):
    out = tmp_path / "text.out.jsonl"
    # whitespace words, as raw text was split before the tokenizer (tests/io/test_raw_text.py has the new default)
    args = ["--tokenizer", "whitespace"]
    assert run("tag", str(SAMPLE / "text.jsonl"), "-o", str(out), "--model", tiny_model, "-q", *args).exit_code == 0
    for line in out.read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        assert len(obj["pred_tags"]) == len(obj["text"].split())
        for ent in obj["entities"]:
            assert obj["text"][ent["char_start"] : ent["char_end"]] == ent["text"]


def test_parquet_round_trip_row_for_row(tiny_model, tmp_path):
    out = tmp_path / "out.parquet"
    assert run("tag", str(SAMPLE / "test.parquet"), "-o", str(out), "--model", tiny_model, "-q").exit_code == 0
    src = pq.read_table(SAMPLE / "test.parquet")
    got = pq.read_table(out)
    assert got.num_rows == src.num_rows
    for name in src.column_names:
        assert got.column(name).to_pylist() == src.column(name).to_pylist()
    for toks, tags, scores in zip(src.column("tokens").to_pylist(), got.column("pred_tags").to_pylist(), got.column("pred_scores").to_pylist()):
        assert len(tags) == len(toks) == len(scores)


def test_formats_agree_on_predictions(tiny_model, tmp_path):
    """The same sentences in CoNLL, JSONL and Parquet get the same tags (documents give the same context)."""
    outs = {}
    for name in ("test.conll", "test.jsonl", "test.parquet"):
        out = tmp_path / ("o-" + name.replace(".", "-") + ".jsonl")
        assert run("tag", str(SAMPLE / name), "-o", str(out), "--model", tiny_model, "-q", "--no-context").exit_code == 0
        outs[name] = [json.loads(x)["pred_tags"] for x in out.read_text(encoding="utf-8").splitlines()]
    assert outs["test.conll"] == outs["test.jsonl"] == outs["test.parquet"]


def test_stdin_to_stdout_text(tiny_model):
    res = run("tag", "-", "--model", tiny_model, "-q", input="Turku is the oldest city in Finland\n\nA second line here\n")
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    words = "Turku is the oldest city in Finland".split() + [""] + "A second line here".split()
    assert len(lines) == len(words)
    for line, word in zip(lines, words):
        if word:
            w, tag = line.split(" ")
            assert w == word and tag in LABELS
        else:
            assert line == ""


def test_real_pipe_through_the_console_script(tiny_model):
    proc = subprocess.run(
        [sys.executable, "-m", "nerbatch", "tag", "-", "--model", tiny_model, "--output-format", "jsonl"],
        input="Turku is the oldest city in Finland\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["tokens"] == "Turku is the oldest city in Finland".split()
    assert len(obj["pred_tags"]) == 7
    assert "sentences" in proc.stderr  # the summary line


def test_many_files_into_a_folder(tiny_model, tmp_path):
    outdir = tmp_path / "tagged"
    res = run(
        "tag", str(SAMPLE / "test.conll"), str(SAMPLE / "test.jsonl"), str(SAMPLE / "sentences.txt"),
        "-o", str(outdir), "--model", tiny_model, "-q",
    )
    assert res.exit_code == 0, res.output
    names = sorted(os.listdir(outdir))
    assert [n for n in names if not n.startswith(".")] == ["sentences.conll", "test.conll", "test.jsonl"]
    # beside each output: its run manifest (for --resume), and no partial file or lock is left
    assert [n for n in names if n.startswith(".")] == [f".{n}.nerbatch.json" for n in ("sentences.conll", "test.conll", "test.jsonl")]
    n_in = sum(1 for line in open(SAMPLE / "sentences.txt", encoding="utf-8") if line.strip())
    assert len(list(read(str(outdir / "sentences.conll")))) == n_in


def test_html_output(tiny_model, tmp_path):
    out = tmp_path / "x.html"
    assert run("tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model, "-q").exit_code == 0
    body = out.read_text(encoding="utf-8")
    assert body.startswith("<!DOCTYPE html>") and body.rstrip().endswith("</html>")
    assert body.count("<p>") == sum(1 for s in read(str(SAMPLE / "test.conll")) if s.tokens)


def test_3000_word_sentence_is_windowed_not_truncated(tagger):
    words = [f"w{i % 97}ord" if i % 5 else "Finland" for i in range(3000)]
    [sent] = list(tagger.tag_sentences([Sentence(tokens=words, doc_id=None)]))
    assert len(sent.pred) == 3000 and len(sent.scores) == 3000
    assert set(sent.pred) <= LABELS
    assert tagger.max_length == 64


def test_zero_subword_words_keep_alignment(tagger):
    weird = ["Turku", "\u200b", "is", "\x07", "the", "\u0301", "city", "\ufeff", "Finland"]
    plain = ["Turku", "is", "the", "city", "Finland"]
    [a] = list(tagger.tag_sentences([Sentence(tokens=weird)]))
    [b] = list(tagger.tag_sentences([Sentence(tokens=plain)]))
    assert len(a.pred) == len(weird)
    assert [a.pred[i] for i in (0, 2, 4, 6, 8)] == b.pred
    assert [a.pred[i] for i in (1, 3, 5, 7)] == ["O"] * 4


def test_output_is_identical_whatever_the_batching(tiny_model, tmp_path):
    outs = []
    for extra in ([], ["--batch-tokens", "64", "--max-batch", "1"], ["--batch-tokens", "100000", "--max-batch", "1000"]):
        out = tmp_path / f"o{len(outs)}.conll"
        assert run("tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model, "-q", *extra).exit_code == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_report_from_tag_equals_evaluate(tiny_model, tmp_path):
    out, rep = tmp_path / "o.conll", tmp_path / "rep.json"
    assert run("tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model, "-q", "--report-json", str(rep)).exit_code == 0
    ev = tmp_path / "ev.json"
    assert run("evaluate", str(out), "--json", str(ev)).exit_code == 0
    a, b = json.loads(rep.read_text()), json.loads(ev.read_text())
    for key in ("overall", "per_type", "accuracy", "tokens", "sentences"):
        assert a[key] == b[key]


@pytest.mark.parametrize(
    "name,content,expect",
    [
        ("bad.conll", "EU NNP B-ORG\nrejects VBZ\n", "bad.conll:2: expected 3 columns"),
        ("bad.jsonl", '{"tokens": ["a"]}\n{"tokens": ["b"\n', "bad.jsonl:2: invalid JSON"),
        ("bad2.jsonl", '["a", "b"]\n', "bad2.jsonl:1: expected a JSON object"),
        ("latin.conll", b"caf\xe9 O\n".decode("latin-1"), "latin.conll:1: invalid utf-8 at byte offset 3"),
    ],
)
def test_bad_input_exit_2_one_line_no_output(tiny_model, tmp_path, name, content, expect):
    src = tmp_path / name
    if name.startswith("latin"):
        src.write_bytes(content.encode("latin-1"))
    else:
        src.write_text(content, encoding="utf-8")
    out = tmp_path / "out" / ("result" + Path(name).suffix)
    out.parent.mkdir()
    res = run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q")
    assert res.exit_code == 2
    assert expect in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert os.listdir(out.parent) == []


def test_parquet_without_token_column(tiny_model, tmp_path):
    import pyarrow as pa

    src = tmp_path / "x.parquet"
    pq.write_table(pa.table({"words": [["a", "b"]]}), src)
    res = run("tag", str(src), "-o", str(tmp_path / "y.parquet"), "--model", tiny_model, "-q")
    assert res.exit_code == 2 and "no 'tokens' column" in res.stderr
    assert not (tmp_path / "y.parquet").exists()


def test_missing_model_and_unlabelled_model(tiny_encoder, tmp_path):
    res = run("tag", str(SAMPLE / "test.conll"), "--model", str(tmp_path / "nope"))
    assert res.exit_code == 2 and "not found" in res.stderr
    res = run("tag", str(SAMPLE / "test.conll"), "--model", tiny_encoder)
    assert res.exit_code == 2 and "no NER labels" in res.stderr


def test_help_does_not_import_torch():
    code = "import sys; from nerbatch.cli import cli\ntry:\n    cli(['--help'])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules, 'transformers' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip().splitlines()[-1] == "False False"


_token = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=8
) | st.sampled_from(["\u200b", "\x07", "\u0301", "\ufeff", " ", "", "Turku", "x" * 300])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sentences=st.lists(st.lists(_token, min_size=0, max_size=40), min_size=1, max_size=6))
def test_any_unicode_tokens_get_exactly_one_tag_each(tagger, sentences):
    """Arbitrary tokens, including ones the tokenizer drops entirely, through the real tokenizer and model."""
    records = [Sentence(tokens=list(toks), doc_id="d", index=i) for i, toks in enumerate(sentences)]
    out = list(tagger.tag_sentences(records))
    assert [s.tokens for s in out] == sentences  # order and tokens unchanged
    for s in out:
        assert len(s.pred) == len(s.tokens) == len(s.scores)
        assert set(s.pred) <= LABELS


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries({"tokens": st.lists(_token, max_size=12), "extra": st.text(max_size=5), "n": st.integers()}), min_size=1, max_size=5))
def test_jsonl_passthrough_survives_any_tokens(tiny_model, tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("jl")
    src = folder / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = folder / "out.jsonl"
    assert run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q").exit_code == 0
    lines = out.read_text(encoding="utf-8").splitlines()  # also splits on U+0085/U+2028: the writer escapes them
    got = [json.loads(x) for x in lines]
    assert [{k: g[k] for k in r} for g, r in zip(got, rows)] == rows
    assert all(len(g["pred_tags"]) == len(g["tokens"]) for g in got)


def test_log_json_and_summary_say_where_the_time_went(tiny_model, tmp_path):
    """Each --log-json record has the seconds of every stage (read, prepare, model, decode, write),
    none negative, and the stages of the main thread fit in the file's seconds; the summary line ends
    with the same split and the stage that bounds the run."""
    out, log = tmp_path / "out.conll", tmp_path / "log.jsonl"
    res = CliRunner().invoke(cli, ["tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model, "--log-json", str(log)])
    assert res.exit_code == 0, res.output
    record = json.loads(log.read_text().splitlines()[-1])
    stages = record["stage_seconds"]
    assert list(stages) == ["read", "prepare", "model", "decode", "write"]
    assert all(v >= 0 for v in stages.values())
    assert stages["model"] > 0 and stages["model"] == pytest.approx(record["forward_seconds"], abs=0.002)
    # model, decode and write run in this thread one after another; read and prepare beside them
    assert stages["model"] + stages["decode"] + stages["write"] <= record["seconds"] + 0.01
    assert stages["read"] + stages["prepare"] <= record["seconds"] + 0.01
    line = res.output.strip().splitlines()[-1]
    assert "time: read " in line and ", write " in line and "; bound by " in line
    assert line.rsplit("bound by ", 1)[1] == max(stages, key=stages.get)
