"""Raw text as input (issue #10): CoNLL-style tokens with character spans, layouts, records joined back."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.core.record import RecordParts
from nerbatch.io import ReadOptions, open_writer, read
from nerbatch.io.html import render_sentence

PROSE = (
    "Aino Virtanen of Finland won the Zürich Open on Sunday, beating Lucía Navarro 6-3, 7-5.  "
    "She lives in Turku, Finland.\nThe U.S. team (led by Anders Holm) lost to Norway on Tuesday!"
)


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def jsonl(path, objs) -> str:
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), encoding="utf-8")
    return str(path)


def lines_of(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def non_space(text: str) -> str:
    return "".join(c for c in text if not c.isspace())


def check_record(obj: dict) -> None:
    """Model-independent: tokens are slices of the text that cover its non-space characters,
    one tag each, and every entity's offsets give back its text with nothing around it."""
    text = obj["text"]
    tokens = obj.get("tokens") or text.split()
    assert len(obj["pred_tags"]) == len(tokens)
    assert "".join(tokens) == non_space(text)
    for e in obj["entities"]:
        assert text[e["char_start"] : e["char_end"]] == e["text"]
        assert e["text"] == e["text"].strip()
        assert e["char_start"] < e["char_end"]


def tag_by_hand(sentences, names=("Finland", "Turku", "Norway", "Aino", "Virtanen", "Holm")):
    for s in sentences:
        s.pred = ["B-LOC" if t in names else "O" for t in s.tokens]
        s.scores = [0.5] * len(s.tokens)
    return sentences


# --------------------------------------------------------------------------------------------- #
# JSONL / Parquet records
# --------------------------------------------------------------------------------------------- #


def test_jsonl_record_split_into_sentences_written_back_as_one_record(tmp_path, tiny_model):
    src = jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": PROSE}, {"id": "b", "text": "Finland."}, {"id": "c", "text": "  "}])
    sentences = list(read(src))
    a = [s for s in sentences if s.source["id"] == "a"]
    assert len(a) == 3 and [s.part for s in a] == [0, 1, 2] and [s.last for s in a] == [False, False, True]
    assert len({s.doc_id for s in a}) == 1 and a[0].doc_id is not None  # they share context
    assert a[0].text == PROSE and all(s.text is a[0].text for s in a)  # one string, shared
    out = tmp_path / "out.jsonl"
    res = run("tag", src, "-o", str(out), "--model", tiny_model, "-q")
    assert res.exit_code == 0, res.output
    got = lines_of(out)
    assert [g["id"] for g in got] == ["a", "b", "c"]
    assert got[0]["text"] == PROSE and "doc_id" not in got[0]  # the made-up document id is not written
    assert got[0]["tokens"][:6] == ["Aino", "Virtanen", "of", "Finland", "won", "the"]
    assert "Finland" in got[0]["tokens"] and "Finland." not in got[0]["tokens"] and "U.S." in got[0]["tokens"]
    assert got[1]["tokens"] == ["Finland", "."]
    assert got[2]["pred_tags"] == [] and got[2]["entities"] == []
    for obj in got:
        check_record(obj)


def test_entity_offsets_exclude_punctuation(tmp_path):
    text = "Finland. I moved to Turku, Finland, in 2001 and left for Norway"
    src = jsonl(tmp_path / "in.jsonl", [{"text": text}])
    sentences = tag_by_hand(list(read(src)))
    out = tmp_path / "out.jsonl"
    with open_writer(str(out), "jsonl") as w:
        for s in sentences:
            w.write(s)
    (obj,) = lines_of(out)
    ents = obj["entities"]
    assert [e["text"] for e in ents] == ["Finland", "Turku", "Finland", "Norway"]
    assert ents[0]["char_start"] == 0  # an entity at the very start ...
    assert ents[-1]["char_end"] == len(text)  # ... and at the very end
    check_record(obj)


def test_tags_with_text_keep_whitespace_words(tmp_path):
    src = jsonl(tmp_path / "in.jsonl", [{"text": "EU rejects Finland.", "tags": ["B-ORG", "O", "B-LOC"]}])
    (s,) = read(src)
    assert s.tokens == ["EU", "rejects", "Finland."] and s.last


def test_whitespace_tokenizer_option_is_the_old_behaviour(tmp_path, tiny_model):
    src = jsonl(tmp_path / "in.jsonl", [{"text": PROSE}])
    out = tmp_path / "out.jsonl"
    res = run("tag", src, "-o", str(out), "--model", tiny_model, "-q", "--tokenizer", "whitespace", "--layout", "line")
    assert res.exit_code == 0, res.output
    (obj,) = lines_of(out)
    assert "tokens" not in obj and len(obj["pred_tags"]) == len(PROSE.split())
    check_record(obj)


def test_parquet_text_row_split_into_sentences_is_one_output_row(tmp_path, tiny_model):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [PROSE, "Hello there"], "k": [1, 2]}), src)
    assert len(list(read(str(src)))) == 4
    out = tmp_path / "out.parquet"
    res = run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q")
    assert res.exit_code == 0, res.output
    got = pq.read_table(str(out)).to_pylist()
    assert [r["k"] for r in got] == [1, 2]
    for r in got:
        assert len(r["tokens"]) == len(r["pred_tags"]) == len(r["pred_scores"])
        assert "".join(r["tokens"]) == non_space(r["text"])


def test_record_parts_survive_a_checkpoint(tmp_path):
    src = jsonl(tmp_path / "in.jsonl", [{"text": PROSE}])
    first, second, third = tag_by_hand(list(read(src)))
    parts = RecordParts()
    assert parts.add(first) is None
    saved = json.loads(json.dumps(parts.state()))
    again = RecordParts()
    again.restore(saved)
    assert again.add(second) is None
    joined = again.add(third)
    assert joined.tokens == first.tokens + second.tokens + third.tokens
    assert joined.spans == first.spans + second.spans + third.spans
    assert joined.doc_id is None and joined.text == PROSE


# --------------------------------------------------------------------------------------------- #
# Text files and layouts
# --------------------------------------------------------------------------------------------- #

WRAPPED = (
    "Aino Virtanen of Finland won the\n"
    "Zurich Open on Sunday. She lives in\n"
    "Turku.\n"
    "\n"
    "   \n"
    "Norway lost\n"
    "again.\n"
)


def test_paragraph_layout_joins_hard_wrapped_lines(tmp_path):
    path = tmp_path / "w.txt"
    path.write_text(WRAPPED, encoding="utf-8")
    sents = list(read(str(path), options=ReadOptions(layout="paragraph")))
    assert [s.tokens for s in sents] == [
        ["Aino", "Virtanen", "of", "Finland", "won", "the", "Zurich", "Open", "on", "Sunday", "."],
        ["She", "lives", "in", "Turku", "."],
        ["Norway", "lost", "again", "."],
    ]
    assert [s.line for s in sents] == [1, 2, 6]
    assert [(s.part, s.last) for s in sents] == [(0, False), (1, True), (0, True)]
    assert {s.doc_id for s in sents} == {"0"}
    for s in sents:
        assert [s.text[a:b] for a, b in s.spans] == s.tokens
    assert sents[0].text == "Aino Virtanen of Finland won the\nZurich Open on Sunday. She lives in\nTurku."


def test_layout_line_keeps_one_sentence_a_line(tmp_path, tiny_model):
    path = tmp_path / "w.txt"
    path.write_text(WRAPPED, encoding="utf-8")
    line = list(read(str(path)))  # the default for text files
    assert len(line) == 5 and all(s.last for s in line)
    assert [s.tokens for s in read(str(path), options=ReadOptions(layout="line"))] == [s.tokens for s in line]
    assert line[2].tokens == ["Turku", "."] and line[0].tokens[-1] == "the"
    out = tmp_path / "out.conll"
    res = run("tag", str(path), "-o", str(out), "--model", tiny_model, "-q", "--layout", "line")
    assert res.exit_code == 0, res.output
    blocks = [b for b in out.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    assert len(blocks) == 5
    out2 = tmp_path / "out2.conll"
    assert run("tag", str(path), "-o", str(out2), "--model", tiny_model, "-q", "--layout", "paragraph").exit_code == 0
    assert len([b for b in out2.read_text(encoding="utf-8").split("\n\n") if b.strip()]) == 3


def test_document_layout_text_file_to_jsonl(tmp_path, tiny_model):
    path = tmp_path / "w.txt"
    path.write_text(WRAPPED, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    res = run("tag", str(path), "-o", str(out), "--model", tiny_model, "-q", "--layout", "document")
    assert res.exit_code == 0, res.output
    (obj,) = lines_of(out)  # the whole file is one record, offsets into its text
    assert obj["text"] == WRAPPED.rstrip("\n")
    check_record(obj)
    out = tmp_path / "para.jsonl"
    assert run("tag", str(path), "-o", str(out), "--model", tiny_model, "-q", "--layout", "paragraph").exit_code == 0
    got = lines_of(out)
    assert [g["text"] for g in got] == ["Aino Virtanen of Finland won the\nZurich Open on Sunday. She lives in\nTurku.", "Norway lost\nagain."]
    for obj in got:
        check_record(obj)


@pytest.mark.parametrize("layout", ["line", "paragraph", "document"])
def test_crlf(tmp_path, layout):
    path = tmp_path / "crlf.txt"
    path.write_bytes(WRAPPED.replace("\n", "\r\n").encode())
    lf = tmp_path / "lf.txt"
    lf.write_bytes(WRAPPED.encode())
    got = list(read(str(path), options=ReadOptions(layout=layout)))
    want = list(read(str(lf), options=ReadOptions(layout=layout)))
    assert [(s.tokens, s.spans, s.line) for s in got] == [(s.tokens, s.spans, s.line) for s in want]
    assert all("\r" not in s.text for s in got)
    src = jsonl(tmp_path / "in.jsonl", [{"text": PROSE.replace("\n", "\r\n")}])
    for s in read(src, options=ReadOptions(layout=layout)):
        assert [s.text[a:b] for a, b in s.spans] == s.tokens and not any("\r" in t for t in s.tokens)


def test_stdin_is_tokenised(tiny_model):
    res = run("tag", "-", "-o", "-", "--model", tiny_model, "-q", "--output-format", "jsonl", input="I live in Finland.\n")
    assert res.exit_code == 0, res.output
    obj = json.loads(res.output.strip().splitlines()[-1])
    assert obj["tokens"] == ["I", "live", "in", "Finland", "."] and obj["text"] == "I live in Finland."
    check_record(obj)


def test_one_megabyte_line_without_newline(tmp_path):
    words = ["Finland.", "U.S.", "e-mail", "(Turku)", "don't", "3,000", "x—y", "“quoted”"]
    text = " ".join(words[i % len(words)] for i in range(140_000))[:1_000_000].rstrip()
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")  # no newline at all
    t0 = time.perf_counter()
    (s,) = read(str(path), options=ReadOptions(max_sentence_tokens=None))  # ~250,000 tokens: over the default bound
    assert time.perf_counter() - t0 < 120
    assert [text[a:b] for a, b in s.spans] == s.tokens
    assert "".join(s.tokens) == non_space(text)


@pytest.mark.parametrize(
    "text",
    [
        "東京都に住んでいる。北京は中国の首都です。",
        "I ❤️ Helsinki 😀😀 and 👩‍👩‍👧 family 🇫🇮!",
        "Zoë Åkesson visited Cafe\u0301 Ame\u0301lie in São Paulo.",
        "e\u0301\u0301 \u0301x \u200b\u200d",
    ],
)
@pytest.mark.parametrize("layout", ["line", "document"])
def test_no_character_is_lost(tmp_path, text, layout):
    src = jsonl(tmp_path / "in.jsonl", [{"text": text}])
    sents = list(read(src, options=ReadOptions(layout=layout)))
    spans = [sp for s in sents for sp in s.spans]
    assert [text[a:b] for a, b in spans] == [t for s in sents for t in s.tokens]
    assert "".join(text[a:b] for a, b in spans) == non_space(text)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))


# --------------------------------------------------------------------------------------------- #
# HTML
# --------------------------------------------------------------------------------------------- #


def test_html_renders_the_original_text(tmp_path):
    text = "Finland. I moved to Turku,  Finland.\n\nNorway next"
    src = jsonl(tmp_path / "in.jsonl", [{"text": text}])
    sentences = tag_by_hand(list(read(src)))
    parts = RecordParts()
    (joined,) = [j for j in map(parts.add, sentences) if j is not None]
    html = render_sentence(joined)
    mark = '<mark class="entity" style="background: #ff9561" title="score 0.5">{}<span>LOC</span></mark>'  # (score: on hover)
    assert html.startswith("<p>" + mark.format("Finland") + ". I moved to " + mark.format("Turku") + ",  ")
    assert "</p>\n<p>" + mark.format("Norway") + " next</p>" in html
    out = tmp_path / "out.html"
    with open_writer(str(out), "html") as w:
        for s in sentences:
            w.write(s)
    assert out.read_text(encoding="utf-8").count(mark.format("Finland")) == 2
